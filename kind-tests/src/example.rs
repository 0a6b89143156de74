//! Example repositories from `lapidary-integrator example-repo DIR`, which writes the
//! work tree (committed on `main`) to `DIR/repo` and the IntegrationRun that moves
//! every module to `DIR/run.yaml`. The tests publish the tree as a bare repository in
//! the git servers' directory and point the run at it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::env::E2e;
use crate::git::git;

/// One generated example.
#[derive(Debug, Clone)]
pub struct Example {
    /// `DIR`.
    pub dir: PathBuf,
    /// `DIR/repo`: the work tree, a git repository on `main`.
    pub work_tree: PathBuf,
    /// `DIR/run.yaml` as JSON.
    pub run: Value,
}

/// A module of a run's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub path: String,
    /// Where it goes.
    pub target: String,
    /// Modules it depends on.
    pub depends_on: Vec<String>,
}

impl Example {
    /// Generates `modules` modules in `levels` levels into `E2E.work_dir/NAME`
    /// (removed first).
    pub fn generate(e2e: &E2e, name: &str, modules: usize, levels: usize) -> Example {
        let dir = e2e.work_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
        }
        let o = Command::new(&e2e.integrator)
            .arg("example-repo")
            .arg(&dir)
            .args([
                "--modules",
                &modules.to_string(),
                "--levels",
                &levels.to_string(),
                "--seed",
                "1",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", e2e.integrator.display()));
        assert!(
            o.status.success(),
            "lapidary-integrator example-repo failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let run_yaml = dir.join("run.yaml");
        let text = std::fs::read_to_string(&run_yaml)
            .unwrap_or_else(|e| panic!("example-repo wrote no {}: {e}", run_yaml.display()));
        let run: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", run_yaml.display()));
        let example = Example {
            work_tree: dir.join("repo"),
            dir,
            run,
        };
        assert_eq!(
            example.modules().len(),
            modules,
            "run.yaml does not hold the asked number of modules"
        );
        example
    }

    /// Publishes the work tree's `main` as the bare repository `E2E.git_root/REPO.git`
    /// (replacing it) and returns its path.
    pub fn publish(&self, e2e: &E2e, repo: &str) -> PathBuf {
        let bare = e2e.git_root.join(format!("{repo}.git"));
        if bare.exists() {
            std::fs::remove_dir_all(&bare)
                .unwrap_or_else(|e| panic!("cannot remove {}: {e}", bare.display()));
        }
        git(
            &e2e.git_root,
            &[
                "clone",
                "--quiet",
                "--bare",
                &self.work_tree.to_string_lossy(),
                &bare.to_string_lossy(),
            ],
        );
        bare
    }

    /// Commits every change of the work tree on `main`.
    pub fn commit_all(&self, message: &str) {
        git(&self.work_tree, &["add", "-A"]);
        git(
            &self.work_tree,
            &[
                "-c",
                "user.name=e2e",
                "-c",
                "user.email=e2e@lapidary.dev",
                "commit",
                "--quiet",
                "-m",
                message,
            ],
        );
    }

    /// The run's modules, in spec order.
    pub fn modules(&self) -> Vec<ModuleRef> {
        modules_of(&self.run)
    }

    /// The run `run.yaml` describes, renamed to `name` in `namespace`, with its
    /// repository at `url`.
    pub fn run_object(&self, name: &str, namespace: &str, url: &str) -> Value {
        let mut run = self.run.clone();
        run["metadata"] = json!({"name": name, "namespace": namespace});
        run["spec"]["repository"]["url"] = json!(url);
        run
    }

    /// The integration branch of `run.yaml`.
    pub fn integration_branch(&self) -> String {
        self.run["spec"]["integrationBranch"]
            .as_str()
            .unwrap_or("integrate/example")
            .to_owned()
    }

    /// Path of a file in `DIR`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

/// The modules of a run object's spec.
pub fn modules_of(run: &Value) -> Vec<ModuleRef> {
    run["spec"]["modules"]
        .as_array()
        .unwrap_or_else(|| panic!("the run has no spec.modules"))
        .iter()
        .map(|m| ModuleRef {
            name: m["name"].as_str().unwrap_or_default().to_owned(),
            path: m["path"].as_str().unwrap_or_default().to_owned(),
            target: m["target"].as_str().unwrap_or_default().to_owned(),
            depends_on: m["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect(),
        })
        .collect()
}

/// Every module that depends on `root`, directly or through others.
pub fn dependents(modules: &[ModuleRef], root: &str) -> BTreeSet<String> {
    let mut by_dep: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in modules {
        for d in &m.depends_on {
            by_dep.entry(d.as_str()).or_default().push(m.name.as_str());
        }
    }
    let mut out = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(n) = todo.pop() {
        for &d in by_dep.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if out.insert(d.to_owned()) {
                todo.push(d);
            }
        }
    }
    out
}

/// Writes `text` to `root/rel`, creating directories.
pub fn write_file(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
