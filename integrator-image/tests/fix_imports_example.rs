//! fixImports and the analysis steps against real Python: generate the example
//! repository, check its tests pass, move modules on disk, rewrite every file with
//! `fix_moved_files`, and check the tests (and the generated smoke tests) still pass
//! under python3.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use lapidary_api::crd::IntegrationRun;
use lapidary_integrator::example_repo::{generate, init_git, ExampleOptions, ExampleRepo};
use lapidary_integrator::python::{
    analyze_module, fix_moved_files, schema_document, schema_json_schema, test_stub, MoveMap,
    MovedFile,
};

fn python_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "__pycache__" && name != ".git" {
                    stack.push(path);
                }
            } else if name.ends_with(".py") {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// Runs `python3 -m unittest` at the repository root; returns (passed, output).
fn unittest(root: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-B", "-m", "unittest"])
        .current_dir(root)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), text)
}

fn ran(output: &str) -> usize {
    output
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Moves the given modules on disk and rewrites every .py file for those moves.
/// Returns (files changed, warnings).
fn integrate(example: &ExampleRepo, which: &[usize]) -> (usize, Vec<String>) {
    let root = &example.root;
    let moves: Vec<(&str, &str)> = which
        .iter()
        .map(|&i| {
            let m = &example.modules[i];
            (m.path.as_str(), m.target.as_str())
        })
        .collect();
    for (from, to) in &moves {
        fs::rename(root.join(from), root.join(to)).unwrap();
    }
    let map = MoveMap::from_paths(moves.iter().copied()).unwrap();
    // Old path of each file now on disk.
    let new_paths = python_files(root);
    let mut old_of: HashMap<String, String> = HashMap::new();
    for p in &new_paths {
        let old = moves
            .iter()
            .find_map(|(from, to)| {
                if p == to {
                    Some(from.to_string())
                } else {
                    p.strip_prefix(&format!("{to}/"))
                        .map(|rest| format!("{from}/{rest}"))
                }
            })
            .unwrap_or_else(|| p.clone());
        old_of.insert(p.clone(), old);
    }
    let texts: Vec<String> = new_paths
        .iter()
        .map(|p| fs::read_to_string(root.join(p)).unwrap())
        .collect();
    let files: Vec<MovedFile<'_>> = new_paths
        .iter()
        .zip(&texts)
        .map(|(p, t)| MovedFile {
            old_path: &old_of[p],
            new_path: p,
            text: t,
        })
        .collect();
    let (changes, warnings) = fix_moved_files(&files, &map).unwrap();
    for c in &changes {
        fs::write(root.join(&c.path), &c.text).unwrap();
    }
    (changes.len(), warnings)
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn example_repository_survives_full_integration() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExampleOptions {
        modules: 30,
        levels: 4,
        seed: 7,
    };
    let example = generate(dir.path(), &opts).unwrap();

    // The run is a valid IntegrationRun whose plan has exactly 4 levels.
    let run: IntegrationRun = serde_yaml::from_str(&example.run_yaml).unwrap();
    assert_eq!(run.spec.modules.len(), 30);
    let plan = lapidary_api::planner::plan(&run.spec.modules).unwrap();
    assert_eq!(plan.levels.len(), 4);
    assert_eq!(
        fs::read_to_string(&example.run_yaml_path).unwrap(),
        example.run_yaml
    );
    assert!(example.modules.iter().any(|m| m.package));
    assert!(example.modules.iter().any(|m| !m.package));

    let (ok, out) = unittest(&example.root);
    assert!(ok, "tests fail before integration:\n{out}");
    let before = ran(&out);
    assert!(before >= 1, "no test ran:\n{out}");

    let all: Vec<usize> = (0..example.modules.len()).collect();
    let (changed, warnings) = integrate(&example, &all);
    assert!(changed > 10, "only {changed} files changed");
    assert!(warnings.is_empty(), "{warnings:?}");
    // Nothing under candidate/ but the area packages is left, and nothing imports it.
    for p in python_files(&example.root) {
        let text = fs::read_to_string(example.root.join(&p)).unwrap();
        for m in &example.modules {
            let old = format!("candidate.{}.{}", m.area, m.ident);
            assert!(
                !text
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                    .any(|w| w == old || w.starts_with(&format!("{old}."))),
                "{p} still names {old}"
            );
        }
    }
    let (ok, out) = unittest(&example.root);
    assert!(ok, "tests fail after integration:\n{out}");
    assert_eq!(ran(&out), before);

    // The smoke tests generated for every moved module pass against the moved code,
    // and every schema document follows the published schema.
    let schema = schema_json_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for m in &example.modules {
        let files: Vec<(String, String)> = python_files(&example.root)
            .into_iter()
            .filter(|p| p == &m.target || p.starts_with(&format!("{}/", m.target)))
            .map(|p| {
                let t = fs::read_to_string(example.root.join(&p)).unwrap();
                (p, t)
            })
            .collect();
        assert!(!files.is_empty(), "{} has no files", m.name);
        let info = analyze_module(&m.target, &files).unwrap();
        assert!(info.symbols.len() >= 3, "{}: {:?}", m.name, info.symbols);
        assert!(!info.symbols.iter().any(|s| s.name.starts_with('_')));
        let deps = m.depends_on(&example.modules);
        let doc = schema_document(&m.name, &m.path, &m.target, &info, &deps);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", m.name);
        let dotted = format!("lukhas.{}.{}", m.area, m.ident);
        let stub = test_stub(&m.name, &dotted, &info);
        for (path, text) in &stub.package_files {
            let full = example.root.join(path);
            if !full.exists() {
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(full, text).unwrap();
            }
        }
        fs::write(example.root.join(&stub.path), &stub.text).unwrap();
    }
    let (ok, out) = unittest(&example.root);
    assert!(ok, "smoke tests fail:\n{out}");
    assert_eq!(ran(&out), before + 2 * example.modules.len());
}

#[test]
fn example_repository_survives_integration_level_by_level() {
    let dir = tempfile::tempdir().unwrap();
    let example = generate(
        dir.path(),
        &ExampleOptions {
            modules: 24,
            levels: 3,
            seed: 11,
        },
    )
    .unwrap();
    // Like the merges: after each level, the modules of that level move and the
    // whole repository is rewritten for them only.
    for level in 0..3 {
        let which: Vec<usize> = (0..example.modules.len())
            .filter(|&i| example.modules[i].level == level)
            .collect();
        integrate(&example, &which);
        let (ok, out) = unittest(&example.root);
        assert!(ok, "tests fail after level {level}:\n{out}");
    }
}

#[test]
fn a_smoke_test_fails_when_a_public_name_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let example = generate(
        dir.path(),
        &ExampleOptions {
            modules: 3,
            levels: 1,
            seed: 3,
        },
    )
    .unwrap();
    let m = &example.modules[0];
    let files: Vec<(String, String)> = python_files(&example.root)
        .into_iter()
        .filter(|p| p == &m.path || p.starts_with(&format!("{}/", m.path)))
        .map(|p| {
            let t = fs::read_to_string(example.root.join(&p)).unwrap();
            (p, t)
        })
        .collect();
    let mut info = analyze_module(&m.path, &files).unwrap();
    info.symbols[0].name = "no_such_name".to_owned();
    let stub = test_stub(&m.name, &format!("candidate.{}.{}", m.area, m.ident), &info);
    fs::create_dir_all(example.root.join("tests/lapidary")).unwrap();
    fs::write(example.root.join("tests/lapidary/__init__.py"), "").unwrap();
    fs::write(example.root.join(&stub.path), &stub.text).unwrap();
    let (ok, out) = unittest(&example.root);
    assert!(!ok, "the smoke test should fail:\n{out}");
    assert!(out.contains("no_such_name"), "{out}");
}

#[test]
fn generation_is_deterministic_and_commits_on_main() {
    let opts = ExampleOptions {
        modules: 12,
        levels: 3,
        seed: 42,
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = generate(a.path(), &opts).unwrap();
    let eb = generate(b.path(), &opts).unwrap();
    assert_eq!(ea.modules, eb.modules);
    for p in python_files(&ea.root) {
        assert_eq!(
            fs::read(ea.root.join(&p)).unwrap(),
            fs::read(eb.root.join(&p)).unwrap(),
            "{p}"
        );
    }
    let ca = init_git(&ea.root).unwrap();
    let cb = init_git(&eb.root).unwrap();
    assert_eq!(ca, cb, "same content, same commit");
    let repo = git2::Repository::open(&ea.root).unwrap();
    assert_eq!(repo.head().unwrap().shorthand(), Some("main"));
    let other = generate(
        tempfile::tempdir().unwrap().path(),
        &ExampleOptions { seed: 43, ..opts },
    )
    .unwrap();
    assert_ne!(other.modules, ea.modules);
    // A copy of the tree is what the integration tests work on.
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&ea.root, copy.path());
    assert!(copy.path().join("tests/__init__.py").exists());
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(generate(
        dir.path(),
        &ExampleOptions {
            modules: 2,
            levels: 3,
            seed: 1
        }
    )
    .is_err());
    assert!(generate(
        dir.path(),
        &ExampleOptions {
            modules: 2,
            levels: 0,
            seed: 1
        }
    )
    .is_err());
}
