//! Local mode end to end: the example repository integrated by worker processes,
//! its own tests passing afterwards, the same commit ids on a second run, and
//! dependents of a failed module skipped.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use lapidary_integrator::example_repo::{self, ExampleOptions};

fn local(
    run_yaml: &Path,
    workdir: &Path,
    workers: &str,
    repo: Option<&Path>,
) -> (i32, serde_json::Value, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "local",
        run_yaml.to_str().unwrap(),
        "--workers",
        workers,
        "--json",
        "--workdir",
    ])
    .arg(workdir);
    if let Some(repo) = repo {
        cmd.arg("--repo").arg(repo);
    }
    let out = cmd
        .env(
            "LAPIDARY_CREDENTIALS_DIR",
            "/nonexistent/lapidary-test-creds",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out.status.code().unwrap_or(-1), summary, stderr)
}

fn checkout(repo: &Path, branch: &str, dir: &Path) {
    let r = git2::Repository::open(repo).unwrap();
    let commit = r
        .find_reference(&format!("refs/heads/{branch}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut opts = git2::build::CheckoutBuilder::new();
    opts.force().target_dir(dir);
    r.checkout_tree(commit.as_object(), Some(&mut opts))
        .unwrap();
}

#[test]
fn thirty_modules_integrate_deterministically_and_their_tests_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExampleOptions {
        modules: 30,
        levels: 4,
        seed: 11,
    };
    let mut heads = Vec::new();
    for run in ["one", "two"] {
        let dir = tmp.path().join(run);
        let example = example_repo::generate(&dir, &opts).unwrap();
        example_repo::init_git(&example.root).unwrap();
        let bare = dir.join("bare.git");
        git2::build::RepoBuilder::new()
            .bare(true)
            .clone(example.root.to_str().unwrap(), &bare)
            .unwrap();
        let (code, summary, stderr) =
            local(&example.run_yaml_path, &dir.join("work"), "2", Some(&bare));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(summary["total"], 30);
        assert_eq!(summary["succeeded"], 30, "{summary}");
        assert_eq!(summary["levels"].as_array().unwrap().len(), 4);
        let head = summary["headCommit"].as_str().unwrap().to_owned();
        assert_eq!(branch_of(&bare, "integrate/example"), head);
        heads.push((head, bare));
    }
    assert_eq!(
        heads[0].0, heads[1].0,
        "two runs gave different integration heads"
    );

    let (_, root) = &heads[0];
    let wt = tmp.path().join("checkout");
    std::fs::create_dir_all(&wt).unwrap();
    checkout(root, "integrate/example", &wt);
    assert!(
        !wt.join("candidate/memory").exists()
            || std::fs::read_dir(wt.join("candidate/memory"))
                .unwrap()
                .count()
                <= 1
    );
    let out = Command::new("python3")
        .args(["-m", "unittest", "-q"])
        .current_dir(&wt)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK"), "{text}");
}

fn branch_of(repo: &Path, name: &str) -> String {
    let r = git2::Repository::open(repo).unwrap();
    let oid = r
        .find_reference(&format!("refs/heads/{name}"))
        .unwrap()
        .target()
        .unwrap();
    oid.to_string()
}

#[test]
fn dependents_of_a_failed_module_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r.git");
    bare_repo(
        &repo,
        &[
            Item::File("candidate/__init__.py", b""),
            Item::File("candidate/b.py", b"B = 1\n"),
            Item::File("candidate/c.py", b"C = 1\n"),
            Item::File("lukhas/__init__.py", b""),
        ],
    );
    let run_yaml = tmp.path().join("run.yaml");
    std::fs::write(
        &run_yaml,
        format!(
            r#"apiVersion: lapidary.dev/v1alpha1
kind: IntegrationRun
metadata: {{name: deps}}
spec:
  repository: {{url: "{}"}}
  steps: [move, fixImports]
  retries: 0
  modules:
    - {{name: a, path: candidate/a.py, target: lukhas/a.py}}
    - {{name: b, path: candidate/b.py, target: lukhas/b.py, dependsOn: [a]}}
    - {{name: c, path: candidate/c.py, target: lukhas/c.py}}
"#,
            repo.display()
        ),
    )
    .unwrap();
    let (code, summary, stderr) = local(&run_yaml, &tmp.path().join("work"), "2", None);
    assert_eq!(code, 1, "{stderr}");
    let outcome = |name: &str| {
        summary["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(outcome("a")["outcome"], "failed");
    assert!(outcome("a")["message"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    assert_eq!(outcome("b")["outcome"], "skipped");
    assert!(outcome("b")["message"].as_str().unwrap().contains("a"));
    assert_eq!(outcome("c")["outcome"], "succeeded");
    let head = branch(&repo, "integrate/deps").unwrap();
    assert_eq!(summary["headCommit"], head.to_string());
    let paths = tree_paths(&repo, head);
    assert!(paths.contains(&"lukhas/c.py".to_owned()));
    assert!(paths.contains(&"candidate/b.py".to_owned()));
    // The summary table names every module.
    assert!(
        stderr.contains("MODULE") && stderr.contains("skipped"),
        "{stderr}"
    );
}

#[test]
fn the_network_path_and_the_local_path_give_the_same_commits() {
    // Over git:// every command fetches (shallow) and pushes through libgit2's
    // transport, as the cluster's pods do; over a path the objects are shared.
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExampleOptions {
        modules: 12,
        levels: 3,
        seed: 5,
    };
    let example = example_repo::generate(&tmp.path().join("ex"), &opts).unwrap();
    example_repo::init_git(&example.root).unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let mut heads = Vec::new();
    for name in ["net.git", "path.git"] {
        git2::build::RepoBuilder::new()
            .bare(true)
            .clone(example.root.to_str().unwrap(), &served.join(name))
            .unwrap();
    }
    let daemon = Daemon::start(&served);
    let url = daemon.url("net.git");
    let mut cmd = Command::new(BIN);
    let out = cmd
        .args([
            "local",
            example.run_yaml_path.to_str().unwrap(),
            "--workers",
            "2",
            "--json",
        ])
        .args(["--repo", &url, "--workdir"])
        .arg(tmp.path().join("w-net"))
        .env(
            "LAPIDARY_CREDENTIALS_DIR",
            "/nonexistent/lapidary-test-creds",
        )
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        summary["succeeded"],
        12,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    heads.push(summary["headCommit"].as_str().unwrap().to_owned());
    let (code, summary, stderr) = local(
        &example.run_yaml_path,
        &tmp.path().join("w-path"),
        "2",
        Some(&served.join("path.git")),
    );
    assert_eq!(code, 0, "{stderr}");
    heads.push(summary["headCommit"].as_str().unwrap().to_owned());
    assert_eq!(heads[0], heads[1]);
    assert_eq!(
        branch_of(&served.join("net.git"), "integrate/example"),
        heads[0]
    );
}
