//! Bad input is refused with a clear error, exit code 3 and no commit anywhere;
//! merge conflicts are reported and the other modules merged; validate failures carry
//! the command's output.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lapidary_api::contract::{Outcome, PlanDocument, EXIT_PERMANENT};

const SPEC: &str = r#"
repository: {url: "URL", revision: main}
integrationBranch: integrate/t
modules:
  - {name: good, path: candidate/ok, target: lukhas/ok}
  - {name: missing, path: candidate/nothere, target: lukhas/nothere}
  - {name: exists, path: candidate/ok2, target: lukhas/taken.py}
  - {name: latin, path: candidate/latin1.py, target: lukhas/latin1.py}
  - {name: binary, path: candidate/blob.py, target: lukhas/blob.py}
  - {name: linky, path: candidate/linky, target: lukhas/linky}
  - {name: escape, path: candidate/escape, target: lukhas/escape}
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    _daemon: Daemon,
    plan: PathBuf,
    base: String,
}

fn fixture(spec: &str, edit: impl FnOnce(&mut PlanDocument)) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let repo = served.join("r.git");
    let base = bare_repo(
        &repo,
        &[
            Item::File("candidate/__init__.py", b""),
            Item::File("candidate/ok/__init__.py", b"VALUE = 1\n"),
            Item::Link("candidate/ok/alias.py", "__init__.py"),
            Item::File("candidate/ok2/__init__.py", b""),
            Item::File("candidate/latin1.py", b"# caf\xe9\nX = 1\n"),
            Item::File("candidate/blob.py", b"\x00\x01\x02binary"),
            Item::File("candidate/linky/__init__.py", b""),
            Item::Link("candidate/linky/secrets", "../../../etc/passwd"),
            Item::File("candidate/escape/__init__.py", b""),
            Item::File("candidate/a/__init__.py", b"A = 1\n"),
            Item::File("candidate/b/__init__.py", b"B = 1\n"),
            Item::File("candidate/c/__init__.py", b"C = 1\n"),
            Item::File("lukhas/__init__.py", b""),
            Item::File("lukhas/taken.py", b""),
            Item::File(
                "use.py",
                b"import candidate.a\nimport candidate.b\nimport candidate.c\n",
            ),
        ],
    );
    let daemon = Daemon::start(&served);
    let (plan_path, mut plan) =
        write_plan(tmp.path(), "t", &spec.replace("URL", &daemon.url("r.git")));
    edit(&mut plan);
    std::fs::write(&plan_path, serde_json::to_string(&plan).unwrap()).unwrap();
    // The integration branch at main, as prepare leaves it for a run without schema.
    let r = git2::Repository::open_bare(&repo).unwrap();
    r.reference("refs/heads/integrate/t", base, true, "test")
        .unwrap();
    Fixture {
        root: tmp.path().to_path_buf(),
        _tmp: tmp,
        repo,
        _daemon: daemon,
        plan: plan_path,
        base: base.to_string(),
    }
}

impl Fixture {
    fn integrate(&self, completion: usize) -> (i32, lapidary_api::ResultDocument, String) {
        let wd = self.root.join(format!("wd-{completion}"));
        let result = self.root.join(format!("r-{completion}.json"));
        let c = completion.to_string();
        let (code, doc, out) = run(
            &[
                "integrate",
                "--plan",
                self.plan.to_str().unwrap(),
                "--level",
                "0",
                "--base",
                &self.base,
                "--workdir",
                wd.to_str().unwrap(),
            ],
            &[("JOB_COMPLETION_INDEX", c.as_str())],
            &result,
        );
        (
            code,
            doc.expect("a result document"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn module_branch(&self, name: &str) -> Option<git2::Oid> {
        branch(&self.repo, &format!("integrate/t-modules/{name}"))
    }
}

fn position(plan: &Path, name: &str) -> usize {
    let plan = PlanDocument::parse(&std::fs::read_to_string(plan).unwrap()).unwrap();
    plan.plan.levels[0]
        .iter()
        .position(|&p| plan.plan.modules[p].name == name)
        .unwrap()
}

fn assert_refused(f: &Fixture, name: &str, needles: &[&str]) {
    let (code, doc, stderr) = f.integrate(position(&f.plan, name));
    assert_eq!(code, EXIT_PERMANENT, "{name}: {stderr}");
    assert_eq!(doc.outcome, Outcome::Failed);
    assert_eq!(doc.module.as_deref(), Some(name));
    assert!(doc.commit.is_none());
    let error = doc.error.unwrap();
    for needle in needles {
        assert!(error.contains(needle), "{name}: {error:?} lacks {needle:?}");
    }
    assert!(f.module_branch(name).is_none(), "{name} left a branch");
    assert!(!doc
        .steps
        .iter()
        .any(|s| s.name == "commit" || s.name == "push"));
}

#[test]
fn bad_inputs_are_refused_without_a_commit() {
    let f = fixture(SPEC, |plan| {
        // A hand-written plan can carry what the planner refuses.
        let m = plan
            .plan
            .modules
            .iter_mut()
            .find(|m| m.name == "escape")
            .unwrap();
        m.path = "../outside".to_owned();
    });
    assert_refused(&f, "missing", &["candidate/nothere", "does not exist"]);
    assert_refused(&f, "exists", &["lukhas/taken.py", "already exists"]);
    assert_refused(&f, "latin", &["candidate/latin1.py", "UTF-8"]);
    assert_refused(&f, "binary", &["candidate/blob.py", "binary"]);
    assert_refused(
        &f,
        "linky",
        &["candidate/linky/secrets", "outside the repository"],
    );
    assert_refused(&f, "escape", &["../outside", "inside the repository"]);
    // The checks do not refuse what is fine: a symlink inside the module moves along.
    let (code, doc, stderr) = f.integrate(position(&f.plan, "good"));
    assert_eq!(code, 0, "{stderr}");
    let commit = f.module_branch("good").unwrap();
    assert_eq!(doc.commit, Some(commit.to_string()));
    assert!(tree_paths(&f.repo, commit).contains(&"lukhas/ok/alias.py".to_owned()));
}

const ABC: &str = r#"
repository: {url: "URL", revision: main}
integrationBranch: integrate/t
steps: [move, fixImports]
modules:
  - {name: a, path: candidate/a, target: lukhas/a}
  - {name: b, path: candidate/b, target: lukhas/b}
  - {name: c, path: candidate/c, target: lukhas/c}
"#;

#[test]
fn a_conflicting_module_is_left_out_and_the_rest_merged() {
    let f = fixture(ABC, |_| {});
    for i in 0..3 {
        let (code, _, stderr) = f.integrate(i);
        assert_eq!(code, 0, "{stderr}");
    }
    // b's branch is replaced by a commit on the base that adds a's target with other
    // content: an add/add conflict with a.
    let r = git2::Repository::open_bare(&f.repo).unwrap();
    let base = r
        .find_commit(git2::Oid::from_str(&f.base).unwrap())
        .unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&base.tree().unwrap()).unwrap();
    let blob = r.blob(b"CONFLICT = True\n").unwrap();
    let mut entry = index
        .get_path(Path::new("candidate/a/__init__.py"), 0)
        .unwrap();
    entry.id = blob;
    entry.path = b"lukhas/a/__init__.py".to_vec();
    index.add(&entry).unwrap();
    let tree = r.find_tree(index.write_tree_to(&r).unwrap()).unwrap();
    let sig = git2::Signature::now("x", "x@example.com").unwrap();
    let bad = r
        .commit(None, &sig, &sig, "conflicting b", &tree, &[&base])
        .unwrap();
    r.reference("refs/heads/integrate/t-modules/b", bad, true, "test")
        .unwrap();

    let result = f.root.join("merge.json");
    let wd = f.root.join("wd-merge");
    let (code, doc, out) = run(
        &[
            "merge",
            "--plan",
            f.plan.to_str().unwrap(),
            "--level",
            "0",
            "--base",
            &f.base,
            "--workdir",
            wd.to_str().unwrap(),
        ],
        &[],
        &result,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let doc = doc.unwrap();
    assert_eq!(doc.outcome, Outcome::Succeeded);
    assert_eq!(doc.conflicts, vec!["b".to_owned()]);
    let head = branch(&f.repo, "integrate/t").unwrap();
    assert_eq!(doc.commit, Some(head.to_string()));
    let paths = tree_paths(&f.repo, head);
    assert!(paths.contains(&"lukhas/a/__init__.py".to_owned()));
    assert!(paths.contains(&"lukhas/c/__init__.py".to_owned()));
    assert!(paths.contains(&"candidate/b/__init__.py".to_owned()));
    assert!(!paths.contains(&"lukhas/b/__init__.py".to_owned()));
    assert_eq!(
        file_at(&f.repo, head, "lukhas/a/__init__.py").unwrap(),
        b"A = 1\n"
    );
    // References are rewritten for the merged modules only.
    assert_eq!(
        file_at(&f.repo, head, "use.py").unwrap(),
        b"import lukhas.a\nimport candidate.b\nimport lukhas.c\n"
    );
}

#[test]
fn a_failing_validate_command_reports_its_output() {
    let spec = ABC.replace(
        "steps: [move, fixImports]",
        "steps: [move, fixImports]\nvalidate: {command: [\"python3\", \"-c\", \"import os, sys; print('saw', sorted(os.listdir('lukhas'))); sys.exit(4)\"]}",
    );
    let f = fixture(&spec, |_| {});
    let (code, doc, stderr) = f.integrate(0);
    assert_eq!(code, EXIT_PERMANENT, "{stderr}");
    let error = doc.error.unwrap();
    assert!(error.contains("code 4"), "{error}");
    // The command ran in a checkout of the module's tree: lukhas/a is there.
    assert!(
        error.contains("saw ['__init__.py', 'a', 'taken.py']"),
        "{error}"
    );
    assert!(f.module_branch("a").is_none());
}

#[test]
fn a_passing_validate_command_lets_the_module_through() {
    let spec = ABC.replace(
        "steps: [move, fixImports]",
        "steps: [move, fixImports]\nvalidate: {command: [\"python3\", \"-c\", \"import lukhas.a\"]}",
    );
    let f = fixture(&spec, |_| {});
    let (code, doc, stderr) = f.integrate(0);
    assert_eq!(code, 0, "{stderr}");
    assert!(doc
        .steps
        .iter()
        .any(|s| s.name == "validate" && s.outcome == Outcome::Succeeded));
    assert!(f.module_branch("a").is_some());
}
