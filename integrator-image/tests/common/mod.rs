//! Test helpers: bare repositories built with libgit2, a real `git daemon` on
//! 127.0.0.1, plan documents and the integrator binary.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature, Time};
use lapidary_api::contract::{PlanDocument, ResultDocument};
use lapidary_api::crd::IntegrationRunSpec;

pub const BIN: &str = env!("CARGO_BIN_EXE_lapidary-integrator");

/// A `git daemon` serving `root` on a free loopback port; killed on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
}

impl Daemon {
    pub fn start(root: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `git daemon` runs git-daemon as a child that killing `git` would orphan:
        // start git-daemon itself.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", root.display()),
                &root.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "git daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            port,
            root: root.to_path_buf(),
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What to put in a test repository.
pub enum Item<'a> {
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
}

/// Creates a bare repository at `path` with one commit on `main` holding `items`.
pub fn bare_repo(path: &Path, items: &[Item<'_>]) -> Oid {
    let repo = Repository::init_bare(path).unwrap();
    let mut index = git2::Index::new().unwrap();
    for item in items {
        let (p, content, mode) = match item {
            Item::File(p, c) => (*p, *c, 0o100644),
            Item::Link(p, t) => (*p, t.as_bytes(), 0o120000),
        };
        let oid = repo.blob(content).unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode,
                uid: 0,
                gid: 0,
                file_size: 0,
                id: oid,
                flags: 0,
                flags_extended: 0,
                path: p.as_bytes().to_vec(),
            })
            .unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
    let sig = Signature::new("test", "test@example.com", &Time::new(1_700_000_000, 0)).unwrap();
    let commit = repo
        .commit(Some("refs/heads/main"), &sig, &sig, "initial", &tree, &[])
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
    commit
}

/// The commit a branch of the bare repository at `path` points at.
pub fn branch(path: &Path, name: &str) -> Option<Oid> {
    let repo = Repository::open_bare(path).unwrap();
    let r = repo.find_reference(&format!("refs/heads/{name}")).ok()?;
    r.target()
}

/// The file paths of a commit's tree.
pub fn tree_paths(path: &Path, commit: Oid) -> Vec<String> {
    let repo = Repository::open_bare(path).unwrap();
    let tree = repo.find_commit(commit).unwrap().tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(git2::ObjectType::Tree) {
            out.push(format!("{dir}{}", entry.name().unwrap()));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// The content of `file` in `commit`.
pub fn file_at(path: &Path, commit: Oid, file: &str) -> Option<Vec<u8>> {
    let repo = Repository::open_bare(path).unwrap();
    let tree = repo.find_commit(commit).unwrap().tree().unwrap();
    let entry = tree.get_path(Path::new(file)).ok()?;
    let content = repo.find_blob(entry.id()).ok()?.content().to_vec();
    Some(content)
}

/// The blob id of `file` in `commit`.
pub fn blob_id(path: &Path, commit: Oid, file: &str) -> Option<Oid> {
    let repo = Repository::open_bare(path).unwrap();
    let tree = repo.find_commit(commit).unwrap().tree().unwrap();
    Some(tree.get_path(Path::new(file)).ok()?.id())
}

/// A plan for `yaml` (an IntegrationRun spec) written to `dir/plan.json`.
pub fn write_plan(dir: &Path, run: &str, yaml: &str) -> (PathBuf, PlanDocument) {
    let spec: IntegrationRunSpec = serde_yaml::from_str(yaml).unwrap();
    let plan = PlanDocument::from_spec(run, &spec).unwrap();
    let path = dir.join("plan.json");
    std::fs::write(&path, serde_json::to_string(&plan).unwrap()).unwrap();
    (path, plan)
}

/// Runs the integrator with `args` and extra environment; returns the exit code,
/// the result document (if any) and the output.
pub fn run(
    args: &[&str],
    env: &[(&str, &str)],
    result: &Path,
) -> (i32, Option<ResultDocument>, Output) {
    let _ = std::fs::remove_file(result);
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--result-file")
        .arg(result)
        .env(
            "LAPIDARY_CREDENTIALS_DIR",
            "/nonexistent/lapidary-test-creds",
        )
        .env_remove("LAPIDARY_MODULE_INDEXES")
        .env_remove("JOB_COMPLETION_INDEX");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let doc = std::fs::read_to_string(result)
        .ok()
        .map(|t| ResultDocument::parse(&t).unwrap());
    (out.status.code().unwrap_or(-1), doc, out)
}
