//! prepare, integrate and merge against a real `git daemon` on 127.0.0.1.

mod common;

use std::path::Path;

use common::*;
use lapidary_api::contract::{Outcome, EXIT_PERMANENT};

const SPEC: &str = r#"
repository: {url: "URL", revision: main}
integrationBranch: integrate/t
modules:
  - {name: fold, path: candidate/memory/fold, target: lukhas/memory/fold}
  - {name: api, path: candidate/bridge/api.py, target: lukhas/bridge/api.py, dependsOn: [fold]}
"#;

fn fixture(root: &Path) -> git2::Oid {
    bare_repo(
        &root.join("r.git"),
        &[
            Item::File("candidate/__init__.py", b""),
            Item::File("candidate/memory/__init__.py", b""),
            Item::File(
                "candidate/memory/fold/__init__.py",
                b"\"\"\"Folds.\"\"\"\nfrom .core import fold\n",
            ),
            Item::File(
                "candidate/memory/fold/core.py",
                b"def fold(x):\n    \"\"\"Fold x.\"\"\"\n    return x\n",
            ),
            Item::File("candidate/bridge/__init__.py", b""),
            Item::File(
                "candidate/bridge/api.py",
                b"from candidate.memory.fold import fold\n\n\ndef call():\n    return fold(1)\n",
            ),
            Item::File("lukhas/__init__.py", b""),
            Item::File(
                "app.py",
                b"import candidate.bridge.api\nfrom candidate.memory.fold import fold  # keep\n",
            ),
            Item::File("README.md", b"hello\n"),
        ],
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    _daemon: Daemon,
    plan: std::path::PathBuf,
    repo: std::path::PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("served");
    std::fs::create_dir_all(&root).unwrap();
    fixture(&root);
    let daemon = Daemon::start(&root);
    let yaml = SPEC.replace("URL", &daemon.url("r.git"));
    let (plan, _) = write_plan(tmp.path(), "t", &yaml);
    Setup {
        repo: root.join("r.git"),
        root: tmp.path().to_path_buf(),
        _tmp: tmp,
        _daemon: daemon,
        plan,
    }
}

impl Setup {
    fn cmd(
        &self,
        role: &str,
        level: Option<usize>,
        base: Option<&str>,
        workdir: &str,
        env: &[(&str, &str)],
    ) -> (
        i32,
        Option<lapidary_api::ResultDocument>,
        std::process::Output,
    ) {
        let wd = self.root.join(workdir);
        let result = self.root.join(format!("{workdir}.json"));
        let level = level.map(|l| l.to_string());
        let mut args = vec![
            role,
            "--plan",
            self.plan.to_str().unwrap(),
            "--workdir",
            wd.to_str().unwrap(),
        ];
        if let Some(l) = &level {
            args.extend(["--level", l.as_str()]);
        }
        if let Some(b) = base {
            args.extend(["--base", b]);
        }
        run(&args, env, &result)
    }
}

#[test]
fn prepare_integrate_and_merge_through_git_daemon() {
    let s = setup();
    let pinned = branch(&s.repo, "main").unwrap();

    // prepare: the integration branch at the schema commit on top of main.
    let (code, doc, out) = s.cmd("prepare", None, None, "p1", &[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let doc = doc.unwrap();
    let head = branch(&s.repo, "integrate/t").unwrap();
    assert_eq!(doc.commit.as_deref(), Some(head.to_string().as_str()));
    assert!(doc.warnings[0].contains(&pinned.to_string()));
    assert!(file_at(&s.repo, head, "schemas/module.schema.json").is_some());
    // Idempotent: a second attempt finds the branch where it would put it.
    let (code, doc2, _) = s.cmd("prepare", None, None, "p2", &[]);
    assert_eq!(code, 0);
    assert_eq!(doc2.unwrap().commit, doc.commit);

    // integrate level 0: the directory module.
    let base0 = head.to_string();
    let (code, doc, out) = s.cmd(
        "integrate",
        Some(0),
        Some(&base0),
        "i0",
        &[("JOB_COMPLETION_INDEX", "0")],
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let doc = doc.unwrap();
    assert_eq!(doc.outcome, Outcome::Succeeded);
    assert_eq!(doc.module.as_deref(), Some("fold"));
    let fold = branch(&s.repo, "integrate/t-modules/fold").unwrap();
    assert_eq!(doc.commit.as_deref(), Some(fold.to_string().as_str()));
    let names: Vec<&str> = doc.steps.iter().map(|st| st.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fetch",
            "check",
            "move",
            "fixImports",
            "schema",
            "testStub",
            "docs",
            "commit",
            "push"
        ]
    );
    // A rename: same blob at the new place, nothing left at the old one, a new
    // package __init__.py for lukhas/memory.
    assert_eq!(
        blob_id(&s.repo, fold, "lukhas/memory/fold/core.py"),
        blob_id(&s.repo, head, "candidate/memory/fold/core.py")
    );
    assert!(blob_id(&s.repo, fold, "candidate/memory/fold/core.py").is_none());
    assert!(file_at(&s.repo, fold, "lukhas/memory/__init__.py").is_some());
    assert!(file_at(&s.repo, fold, "schemas/modules/fold.json").is_some());
    assert!(file_at(&s.repo, fold, "tests/lapidary/test_fold.py").is_some());
    let r = git2::Repository::open_bare(&s.repo).unwrap();
    let c = r.find_commit(fold).unwrap();
    assert_eq!(c.parent_id(0).unwrap(), head);
    assert_eq!(
        c.message().unwrap(),
        "lapidary: integrate fold (candidate/memory/fold -> lukhas/memory/fold)"
    );
    assert_eq!(c.author().name(), Some("lapidary"));
    assert_eq!(
        c.committer().when().seconds(),
        r.find_commit(head).unwrap().committer().when().seconds()
    );

    // A retried attempt, in a fresh work directory, replaces its branch with the same commit.
    let (code, retry, _) = s.cmd(
        "integrate",
        Some(0),
        Some(&base0),
        "i0b",
        &[("JOB_COMPLETION_INDEX", "0")],
    );
    assert_eq!(code, 0);
    assert_eq!(retry.unwrap().commit, doc.commit);

    // merge level 0: the module and the repository-wide rewrite.
    let (code, merged, out) = s.cmd("merge", Some(0), Some(&base0), "m0", &[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let merged = merged.unwrap();
    assert!(merged.conflicts.is_empty());
    let m0 = branch(&s.repo, "integrate/t").unwrap();
    assert_eq!(merged.commit.as_deref(), Some(m0.to_string().as_str()));
    let app = String::from_utf8(file_at(&s.repo, m0, "app.py").unwrap()).unwrap();
    assert_eq!(
        app,
        "import candidate.bridge.api\nfrom lukhas.memory.fold import fold  # keep\n"
    );
    let api = String::from_utf8(file_at(&s.repo, m0, "candidate/bridge/api.py").unwrap()).unwrap();
    assert!(
        api.starts_with("from lukhas.memory.fold import fold\n"),
        "{api}"
    );
    // The merge is idempotent.
    let (code, again, _) = s.cmd("merge", Some(0), Some(&base0), "m0b", &[]);
    assert_eq!(code, 0);
    assert_eq!(again.unwrap().commit, merged.commit);

    // level 1: the file module, from the merged head.
    let base1 = m0.to_string();
    let (code, doc, out) = s.cmd(
        "integrate",
        Some(1),
        Some(&base1),
        "i1",
        &[("JOB_COMPLETION_INDEX", "0")],
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(doc.unwrap().module.as_deref(), Some("api"));
    let (code, merged, _) = s.cmd("merge", Some(1), Some(&base1), "m1", &[]);
    assert_eq!(code, 0);
    let m1 = branch(&s.repo, "integrate/t").unwrap();
    assert_eq!(merged.unwrap().commit, Some(m1.to_string()));
    let paths = tree_paths(&s.repo, m1);
    assert!(paths.contains(&"lukhas/bridge/api.py".to_owned()));
    assert!(paths.contains(&"lukhas/bridge/__init__.py".to_owned()));
    assert!(!paths.iter().any(|p| p.starts_with("candidate/memory/fold")));
    let app = String::from_utf8(file_at(&s.repo, m1, "app.py").unwrap()).unwrap();
    assert_eq!(
        app,
        "import lukhas.bridge.api\nfrom lukhas.memory.fold import fold  # keep\n"
    );
}

#[test]
fn prepare_refuses_an_integration_branch_elsewhere() {
    let s = setup();
    let r = git2::Repository::open_bare(&s.repo).unwrap();
    let main = r.find_commit(branch(&s.repo, "main").unwrap()).unwrap();
    let sig = git2::Signature::now("x", "x@example.com").unwrap();
    let other = r
        .commit(
            None,
            &sig,
            &sig,
            "elsewhere",
            &main.tree().unwrap(),
            &[&main],
        )
        .unwrap();
    r.reference("refs/heads/integrate/t", other, true, "test")
        .unwrap();
    let (code, doc, _) = s.cmd("prepare", None, None, "p", &[]);
    assert_eq!(code, EXIT_PERMANENT);
    let doc = doc.unwrap();
    assert_eq!(doc.outcome, Outcome::Failed);
    let error = doc.error.unwrap();
    assert!(
        error.contains("already exists") && error.contains(&other.to_string()),
        "{error}"
    );
    assert_eq!(branch(&s.repo, "integrate/t"), Some(other));
}

#[test]
fn a_missing_plan_still_writes_a_failed_result() {
    let tmp = tempfile::tempdir().unwrap();
    let result = tmp.path().join("out/result.json");
    let (code, doc, _) = run(
        &[
            "integrate",
            "--plan",
            "/nonexistent/plan.json",
            "--level",
            "0",
            "--base",
            &"a".repeat(40),
            "--workdir",
            tmp.path().to_str().unwrap(),
        ],
        &[],
        &result,
    );
    assert_eq!(code, EXIT_PERMANENT);
    let doc = doc.expect("a result document");
    assert_eq!(doc.outcome, Outcome::Failed);
    assert!(doc.error.unwrap().contains("/nonexistent/plan.json"));
}
