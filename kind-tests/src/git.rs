//! The git command line, for checking what the runs pushed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Runs `git ARGS` in `dir` (a work tree or a bare repository); panics unless it
/// succeeds; returns stdout without the trailing newline.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        o.status.success(),
        "git {} in {} failed: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim_end().to_owned()
}

/// The commit a revision names.
pub fn rev_parse(dir: &Path, rev: &str) -> String {
    git(
        dir,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
}

/// The tree of a revision.
pub fn tree_of(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", "--verify", &format!("{rev}^{{tree}}")])
}

/// Every file path of a revision's tree.
pub fn files(dir: &Path, rev: &str) -> BTreeSet<String> {
    git(dir, &["ls-tree", "-r", "--name-only", rev])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// True when `path` is a file of `files` or a directory holding one.
pub fn has_path(files: &BTreeSet<String>, path: &str) -> bool {
    let dir = format!("{}/", path.trim_end_matches('/'));
    files.contains(path)
        || files
            .range(dir.clone()..)
            .next()
            .is_some_and(|f| f.starts_with(&dir))
}

/// `(commit, parents)` of every merge commit reachable from `rev`.
pub fn merges(dir: &Path, rev: &str) -> Vec<(String, Vec<String>)> {
    git(dir, &["rev-list", "--merges", "--parents", rev])
        .lines()
        .filter_map(|line| {
            let mut ids = line.split_whitespace().map(str::to_owned);
            let commit = ids.next()?;
            Some((commit, ids.collect()))
        })
        .collect()
}
