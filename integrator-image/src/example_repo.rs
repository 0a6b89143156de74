//! The example repository: a synthetic Python code base shaped like the seed's
//! (modules under `candidate/<area>/<name>` to integrate into `lukhas/<area>/<name>`),
//! with real behaviour, imports along a random dependency DAG of exactly the asked
//! number of levels, its own `unittest` tests, and the IntegrationRun that moves
//! every module.
//!
//! Layout of the output directory `DIR`:
//! - `DIR/repo/` — the repository's working tree (a git repository on `main` once
//!   [`init_git`] ran);
//! - `DIR/run.yaml` — the IntegrationRun, outside the tree so that it is not part
//!   of the code being integrated; its repository URL is `file://DIR/repo`.
//!
//! Everything is a function of the options: the same seed gives the same bytes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Values are reduced modulo this prime so Python and Rust agree on every value.
const MODULUS: u64 = 1_000_003;
/// Author of the example repository's commit.
pub const AUTHOR_NAME: &str = "lapidary example";
/// E-mail of the example repository's author.
pub const AUTHOR_EMAIL: &str = "example@lapidary.dev";
/// Commit time of the example repository's commit (seconds since the epoch).
pub const COMMIT_TIME: i64 = 1_767_225_600;
/// Name of the IntegrationRun in `run.yaml`.
pub const RUN_NAME: &str = "example";

const AREAS: [&str; 6] = [
    "memory",
    "identity",
    "consciousness",
    "bridge",
    "governance",
    "emotion",
];
const WORDS: [&str; 12] = [
    "fold", "trace", "glyph", "dream", "pulse", "spark", "orbit", "prism", "vault", "relay",
    "quill", "ember",
];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleOptions {
    /// Number of modules (at least `levels`).
    pub modules: usize,
    /// Number of dependency levels (at least 1).
    pub levels: usize,
    /// Seed of the generator.
    pub seed: u64,
}

/// How a module imports one of its dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStyle {
    /// `import candidate.a.d as d_mod`
    AliasedModule,
    /// `from candidate.a import d`
    FromPackage,
    /// `from candidate.a.d import d_value`
    FromModule,
    /// `import candidate.a.d`, used as `candidate.a.d.d_value()`
    DottedUse,
    /// `from . import d` / `from ..a.d import d_value`
    Relative,
    /// `from candidate.a.d import d_value as _d` inside `try:`
    Conditional,
}

const STYLES: [ImportStyle; 6] = [
    ImportStyle::AliasedModule,
    ImportStyle::FromPackage,
    ImportStyle::FromModule,
    ImportStyle::DottedUse,
    ImportStyle::Relative,
    ImportStyle::Conditional,
];

/// One generated module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleModule {
    /// Module name in the run (`memory_fold3`).
    pub name: String,
    /// Area (`memory`).
    pub area: String,
    /// Python name of the module (`fold3`).
    pub ident: String,
    /// Current path (`candidate/memory/fold3` or `candidate/memory/fold3.py`).
    pub path: String,
    /// Target path (`lukhas/memory/fold3` or `lukhas/memory/fold3.py`).
    pub target: String,
    /// A package directory (`__init__.py` + `core.py`) rather than one file.
    pub package: bool,
    /// Dependency level, from 0.
    pub level: usize,
    /// Indexes (into the module list) of its dependencies, with the import style
    /// of each.
    pub deps: Vec<(usize, ImportStyle)>,
    factor: u64,
    offset: u64,
}

impl ExampleModule {
    /// Names of the modules it depends on.
    pub fn depends_on(&self, all: &[ExampleModule]) -> Vec<String> {
        self.deps
            .iter()
            .map(|(d, _)| all[*d].name.clone())
            .collect()
    }

    fn function(&self) -> String {
        format!("{}_value", self.ident)
    }

    fn class(&self) -> String {
        let mut c = self.ident.chars();
        match c.next() {
            Some(f) => format!("{}{}Model", f.to_ascii_uppercase(), c.as_str()),
            None => "Model".to_owned(),
        }
    }

    fn constant(&self) -> String {
        format!("{}_FACTOR", self.ident.to_ascii_uppercase())
    }

    fn dotted(&self) -> String {
        format!("candidate.{}.{}", self.area, self.ident)
    }
}

/// A generated example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleRepo {
    /// The repository's working tree (`DIR/repo`).
    pub root: PathBuf,
    /// Where the IntegrationRun was written (`DIR/run.yaml`).
    pub run_yaml_path: PathBuf,
    /// The IntegrationRun.
    pub run_yaml: String,
    /// The modules, in run order.
    pub modules: Vec<ExampleModule>,
    /// Number of files written into the tree.
    pub files: usize,
}

impl ExampleRepo {
    /// The IntegrationRun with another repository URL.
    pub fn run_yaml_with_url(&self, url: &str) -> String {
        render_run(&self.modules, url)
    }

    /// The value `module.<ident>_value(x)` computes (what the repository's tests check).
    pub fn value(&self, module: usize, x: u64) -> u64 {
        value(&self.modules, module, x)
    }
}

/// Errors of the example generator.
#[derive(Debug, Error)]
pub enum ExampleError {
    /// Options that cannot be met.
    #[error("bad example options: {0}")]
    BadOptions(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// git failed.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// splitmix64: small, fast and good enough to draw a code base from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Draws the modules and their DAG.
fn draw(opts: &ExampleOptions) -> Result<Vec<ExampleModule>, ExampleError> {
    if opts.levels == 0 || opts.modules < opts.levels {
        return Err(ExampleError::BadOptions(format!(
            "need at least one level and at least as many modules as levels (modules {}, levels {})",
            opts.modules, opts.levels
        )));
    }
    if opts.modules > 5000 {
        return Err(ExampleError::BadOptions("at most 5000 modules".to_owned()));
    }
    let mut rng = Rng(opts.seed ^ 0x6C61_7069_6461_7279);
    let areas = 1 + opts.modules.div_ceil(12).min(AREAS.len() - 1);
    let mut modules: Vec<ExampleModule> = Vec::with_capacity(opts.modules);
    for i in 0..opts.modules {
        let area = AREAS[rng.below(areas)].to_owned();
        let ident = format!("{}{i}", WORDS[rng.below(WORDS.len())]);
        let package = rng.below(2) == 0;
        // The first `levels` modules fix one module per level, so every level exists.
        let level = if i < opts.levels {
            i
        } else {
            rng.below(opts.levels)
        };
        let (path, target) = if package {
            (
                format!("candidate/{area}/{ident}"),
                format!("lukhas/{area}/{ident}"),
            )
        } else {
            (
                format!("candidate/{area}/{ident}.py"),
                format!("lukhas/{area}/{ident}.py"),
            )
        };
        modules.push(ExampleModule {
            name: format!("{area}_{ident}"),
            area,
            ident,
            path,
            target,
            package,
            level,
            deps: Vec::new(),
            factor: 2 + rng.below(8) as u64,
            offset: 1 + rng.below(99) as u64,
        });
    }
    let by_level: Vec<Vec<usize>> = (0..opts.levels)
        .map(|l| {
            (0..modules.len())
                .filter(|&i| modules[i].level == l)
                .collect()
        })
        .collect();
    for module in modules.iter_mut() {
        let level = module.level;
        if level == 0 {
            continue;
        }
        let mut deps = BTreeSet::new();
        // One dependency on the level just below fixes the module's level.
        let below = &by_level[level - 1];
        deps.insert(below[rng.below(below.len())]);
        let extra = rng.below(3);
        for _ in 0..extra {
            let l = rng.below(level);
            let pool = &by_level[l];
            deps.insert(pool[rng.below(pool.len())]);
        }
        module.deps = deps
            .into_iter()
            .map(|d| (d, STYLES[rng.below(STYLES.len())]))
            .collect();
    }
    Ok(modules)
}

fn value(modules: &[ExampleModule], m: usize, x: u64) -> u64 {
    value_memo(modules, m, x, &mut HashMap::new())
}

// Memoized: without it a deep DAG costs exponential time.
fn value_memo(
    modules: &[ExampleModule],
    m: usize,
    x: u64,
    memo: &mut HashMap<(usize, u64), u64>,
) -> u64 {
    if let Some(v) = memo.get(&(m, x)) {
        return *v;
    }
    let module = &modules[m];
    let mut v = (x * module.factor + module.offset) % MODULUS;
    for (j, (d, _)) in module.deps.iter().enumerate() {
        v = (v + value_memo(modules, *d, x + j as u64 + 1, memo)) % MODULUS;
    }
    memo.insert((m, x), v);
    v
}

/// The import lines and call expression for dependency `dep` of `module`, written
/// in the file `module` keeps its code in.
fn import_of(module: &ExampleModule, dep: &ExampleModule, style: ImportStyle) -> (String, String) {
    let f = dep.function();
    let d = &dep.ident;
    let dotted = dep.dotted();
    match style {
        ImportStyle::AliasedModule => (
            format!("import {dotted} as {d}_mod"),
            format!("{d}_mod.{f}"),
        ),
        ImportStyle::FromPackage => (
            format!("from candidate.{} import {d}", dep.area),
            format!("{d}.{f}"),
        ),
        ImportStyle::FromModule => (format!("from {dotted} import {f}"), f.clone()),
        ImportStyle::DottedUse => (format!("import {dotted}"), format!("{dotted}.{f}")),
        ImportStyle::Relative => {
            // The code of a package lives in `<name>/core.py`, one level deeper.
            let up = if module.package { "." } else { "" };
            if dep.area == module.area {
                (format!("from .{up} import {d}"), format!("{d}.{f}"))
            } else {
                (
                    format!("from ..{up}{}.{d} import {f}", dep.area),
                    f.clone(),
                )
            }
        }
        ImportStyle::Conditional => (
            format!(
                "try:\n    from {dotted} import {f} as _{d}\nexcept ImportError:  # optional dependency\n    _{d} = None"
            ),
            format!("_{d}"),
        ),
    }
}

/// The module's code (the whole file, or `core.py` of a package).
fn module_code(modules: &[ExampleModule], m: usize) -> String {
    let module = &modules[m];
    let mut imports = Vec::new();
    let mut calls = Vec::new();
    for (j, (d, style)) in module.deps.iter().enumerate() {
        let (import, call) = import_of(module, &modules[*d], *style);
        imports.push(import);
        calls.push(format!("{call}(x + {})", j + 1));
    }
    let mut s = String::new();
    if module.package {
        let _ = writeln!(s, "\"\"\"Implementation of `{}`.\"\"\"\n", module.ident);
    } else {
        let _ = writeln!(
            s,
            "\"\"\"The {} module of the {} area.\n\nComputes its value from {} dependencies.\n\"\"\"\n",
            module.ident,
            module.area,
            module.deps.len()
        );
    }
    for import in &imports {
        let _ = writeln!(s, "{import}");
    }
    if !imports.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "{} = {}", module.constant(), module.factor);
    let _ = writeln!(s, "_MODULUS = {MODULUS}\n\n");
    let _ = writeln!(s, "def {}(x):", module.function());
    let _ = writeln!(
        s,
        "    \"\"\"Value of `{}` at `x`.\n\n    Depends on its dependencies' values.\n    \"\"\"",
        module.ident
    );
    let _ = writeln!(
        s,
        "    total = (x * {} + {}) % _MODULUS",
        module.constant(),
        module.offset
    );
    for call in &calls {
        let _ = writeln!(s, "    total = (total + {call}) % _MODULUS");
    }
    let _ = writeln!(s, "    return total\n\n");
    let _ = writeln!(s, "class {}:", module.class());
    let _ = writeln!(s, "    \"\"\"Object view of `{}`.\"\"\"\n", module.ident);
    let _ = writeln!(s, "    def value(self, x):");
    let _ = writeln!(s, "        return {}(x)\n\n", module.function());
    let _ = writeln!(s, "def _helper():");
    let _ = writeln!(s, "    return None");
    s
}

fn package_init(module: &ExampleModule) -> String {
    format!(
        "\"\"\"The {ident} package of the {area} area.\n\nRe-exports its implementation from `core`.\n\"\"\"\n\n\
         from .core import {f}, {c}, {k}  # re-exports\n\n__all__ = [\"{f}\", \"{c}\", \"{k}\"]\n",
        ident = module.ident,
        area = module.area,
        f = module.function(),
        c = module.class(),
        k = module.constant(),
    )
}

/// The tests of one area: import every module by its old path and check values.
fn area_tests(modules: &[ExampleModule], area: &str) -> String {
    let members: Vec<usize> = (0..modules.len())
        .filter(|&i| modules[i].area == area)
        .collect();
    let mut imports = String::new();
    let mut body = String::new();
    for (k, &i) in members.iter().enumerate() {
        let m = &modules[i];
        let f = m.function();
        let expected: Vec<u64> = (0..3).map(|x| value(modules, i, x)).collect();
        let (import, call, class) = match k % 3 {
            0 => (
                format!("from {} import {f}, {}", m.dotted(), m.class()),
                f.clone(),
                m.class(),
            ),
            1 => (
                format!("import {}", m.dotted()),
                format!("{}.{f}", m.dotted()),
                format!("{}.{}", m.dotted(), m.class()),
            ),
            _ => (
                format!("import {} as {}_mod", m.dotted(), m.ident),
                format!("{}_mod.{f}", m.ident),
                format!("{}_mod.{}", m.ident, m.class()),
            ),
        };
        let _ = writeln!(imports, "{import}");
        let _ = writeln!(body, "    def test_{}(self):", m.ident);
        for (x, e) in expected.iter().enumerate() {
            let _ = writeln!(body, "        self.assertEqual({call}({x}), {e})");
        }
        let _ = writeln!(
            body,
            "        self.assertEqual({class}().value(2), {})\n",
            expected[2]
        );
    }
    let class: String = area
        .split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!(
        "\"\"\"Tests of the {area} area's modules.\"\"\"\n\nimport unittest\n\n{imports}\n\nclass Test{class}(unittest.TestCase):\n{body}\nif __name__ == \"__main__\":\n    unittest.main()\n"
    )
}

fn render_run(modules: &[ExampleModule], url: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "apiVersion: lapidary.dev/v1alpha1");
    let _ = writeln!(s, "kind: IntegrationRun");
    let _ = writeln!(s, "metadata:\n  name: {RUN_NAME}");
    let _ = writeln!(s, "spec:");
    let _ = writeln!(
        s,
        "  repository:\n    url: {}\n    revision: main",
        yaml_str(url)
    );
    let _ = writeln!(s, "  integrationBranch: integrate/{RUN_NAME}");
    let _ = writeln!(s, "  steps: [move, fixImports, schema, testStub, docs]");
    let _ = writeln!(s, "  parallelism: 8");
    let _ = writeln!(s, "  modules:");
    for m in modules {
        let _ = writeln!(s, "    - name: {}", m.name);
        let _ = writeln!(s, "      path: {}", m.path);
        let _ = writeln!(s, "      target: {}", m.target);
        let deps = m.depends_on(modules);
        if !deps.is_empty() {
            let _ = writeln!(s, "      dependsOn: [{}]", deps.join(", "));
        }
    }
    s
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn write(root: &Path, rel: &str, text: &str, count: &mut usize) -> Result<(), ExampleError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| ExampleError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    fs::write(&path, text).map_err(|source| ExampleError::Io { path, source })?;
    *count += 1;
    Ok(())
}

/// Generates the example into `dir` (`dir/repo/` and `dir/run.yaml`). `dir/repo`
/// must not exist yet or be empty.
pub fn generate(dir: &Path, opts: &ExampleOptions) -> Result<ExampleRepo, ExampleError> {
    let modules = draw(opts)?;
    let root = dir.join("repo");
    if root.exists()
        && fs::read_dir(&root)
            .map_err(|source| ExampleError::Io {
                path: root.clone(),
                source,
            })?
            .next()
            .is_some()
    {
        return Err(ExampleError::BadOptions(format!(
            "{} exists and is not empty",
            root.display()
        )));
    }
    fs::create_dir_all(&root).map_err(|source| ExampleError::Io {
        path: root.clone(),
        source,
    })?;
    let mut files = 0;
    let used_areas: BTreeSet<&str> = modules.iter().map(|m| m.area.as_str()).collect();
    write(
        &root,
        "README.md",
        &format!(
            "# lapidary example repository\n\n{} modules under `candidate/` to integrate into \
             `lukhas/` (seed {}, {} levels). Run the tests with `python3 -m unittest`.\n",
            modules.len(),
            opts.seed,
            opts.levels
        ),
        &mut files,
    )?;
    write(&root, ".gitignore", "__pycache__/\n*.pyc\n", &mut files)?;
    write(
        &root,
        "candidate/__init__.py",
        "\"\"\"Candidate modules waiting for integration.\"\"\"\n",
        &mut files,
    )?;
    write(
        &root,
        "lukhas/__init__.py",
        "\"\"\"The integrated code base.\"\"\"\n",
        &mut files,
    )?;
    write(&root, "tests/__init__.py", "", &mut files)?;
    for area in &used_areas {
        write(
            &root,
            &format!("candidate/{area}/__init__.py"),
            &format!("\"\"\"Candidate modules of the {area} area.\"\"\"\n"),
            &mut files,
        )?;
        write(
            &root,
            &format!("lukhas/{area}/__init__.py"),
            &format!("\"\"\"The {area} area.\"\"\"\n"),
            &mut files,
        )?;
        write(
            &root,
            &format!("tests/test_{area}.py"),
            &area_tests(&modules, area),
            &mut files,
        )?;
    }
    for (i, m) in modules.iter().enumerate() {
        if m.package {
            write(
                &root,
                &format!("{}/__init__.py", m.path),
                &package_init(m),
                &mut files,
            )?;
            write(
                &root,
                &format!("{}/core.py", m.path),
                &module_code(&modules, i),
                &mut files,
            )?;
        } else {
            write(&root, &m.path, &module_code(&modules, i), &mut files)?;
        }
    }
    let absolute = fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    let url = format!("file://{}", absolute.display());
    let run_yaml = render_run(&modules, &url);
    let run_yaml_path = dir.join("run.yaml");
    fs::write(&run_yaml_path, &run_yaml).map_err(|source| ExampleError::Io {
        path: run_yaml_path.clone(),
        source,
    })?;
    Ok(ExampleRepo {
        root,
        run_yaml_path,
        run_yaml,
        modules,
        files,
    })
}

/// Makes `repo_dir` a git repository with everything in it committed on `main`
/// (fixed author and time, so the commit id depends only on the content).
pub fn init_git(repo_dir: &Path) -> Result<git2::Oid, ExampleError> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = git2::Repository::init_opts(repo_dir, &opts)?;
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree_id = index.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let sig = git2::Signature::new(AUTHOR_NAME, AUTHOR_EMAIL, &git2::Time::new(COMMIT_TIME, 0))?;
    let oid = repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "Example code base: candidate modules to integrate\n",
        &tree,
        &[],
    )?;
    Ok(oid)
}

/// Generates the example into `dir` and commits its tree on `main`: a ready
/// repository at `dir/repo` and the run at `dir/run.yaml`.
pub fn generate_and_commit(
    dir: &Path,
    opts: &ExampleOptions,
) -> Result<(ExampleRepo, git2::Oid), ExampleError> {
    let example = generate(dir, opts)?;
    let commit = init_git(&example.root)?;
    Ok((example, commit))
}

/// `lapidary-integrator example-repo DIR --modules N --levels L --seed S`: generates
/// the example into `DIR` and commits the tree on `main`.
pub fn generate_cli(args: &crate::cli::ExampleArgs) -> Result<(), ExampleError> {
    let (example, commit) = generate_and_commit(
        &args.dir,
        &ExampleOptions {
            modules: args.modules,
            levels: args.levels,
            seed: args.seed,
        },
    )?;
    tracing::info!(
        repo = %example.root.display(),
        run = %example.run_yaml_path.display(),
        modules = example.modules.len(),
        files = example.files,
        %commit,
        "example repository generated"
    );
    println!(
        "example repository: {} ({} modules, {} files, commit {commit})\nIntegrationRun: {}",
        example.root.display(),
        example.modules.len(),
        example.files,
        example.run_yaml_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_is_reached_by_a_chain_of_dependencies() {
        let modules = draw(&ExampleOptions {
            modules: 40,
            levels: 5,
            seed: 9,
        })
        .unwrap();
        for m in &modules {
            if m.level == 0 {
                assert!(m.deps.is_empty());
            } else {
                assert!(m.deps.iter().all(|(d, _)| modules[*d].level < m.level));
                assert!(m.deps.iter().any(|(d, _)| modules[*d].level == m.level - 1));
            }
        }
        for level in 0..5 {
            assert!(modules.iter().any(|m| m.level == level));
        }
    }

    #[test]
    fn values_follow_the_dependencies() {
        let modules = draw(&ExampleOptions {
            modules: 10,
            levels: 3,
            seed: 5,
        })
        .unwrap();
        let m = modules
            .iter()
            .position(|m| m.level == 2)
            .expect("a level-2 module");
        let module = &modules[m];
        let mut want = (4 * module.factor + module.offset) % MODULUS;
        for (j, (d, _)) in module.deps.iter().enumerate() {
            want = (want + value(&modules, *d, 4 + j as u64 + 1)) % MODULUS;
        }
        assert_eq!(value(&modules, m, 4), want);
    }

    #[test]
    fn generate_and_commit_writes_a_committed_repository() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ExampleOptions {
            modules: 6,
            levels: 2,
            seed: 1,
        };
        let (example, oid) = generate_and_commit(&dir.path().join("ex"), &opts).unwrap();
        let repo = git2::Repository::open(&example.root).unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.shorthand(), Some("main"));
        let commit = head.peel_to_commit().unwrap();
        assert_eq!(commit.id(), oid);
        assert_eq!(commit.time().seconds(), COMMIT_TIME);
        assert_eq!(commit.author().name(), Some(AUTHOR_NAME));
        assert!(commit
            .tree()
            .unwrap()
            .get_path(Path::new("tests/__init__.py"))
            .is_ok());
        assert!(dir.path().join("ex/run.yaml").exists());
        // A second run into the same place is refused.
        assert!(generate_and_commit(&dir.path().join("ex"), &opts).is_err());
    }
}
