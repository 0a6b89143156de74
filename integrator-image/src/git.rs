//! Git through libgit2: a bare work repository, remote listing, fetch and push with
//! credentials, in-memory tree edits (renames keep blob ids), path checks that never
//! follow symlinks, deterministic commits, and checkout for the validate command.
//! Nothing here shells out to `git`.

use std::path::{Path, PathBuf};

use git2::{
    AutotagOption, Commit, Direction, ErrorClass, ErrorCode, FetchOptions, Index, IndexEntry,
    IndexTime, ObjectType, Oid, PushOptions, Repository, Signature, Time, Tree,
};
use lapidary_api::crd::AuthorSpec;

use crate::credentials::{redact_url, Credentials};
use crate::error::{Error, Result};

/// File mode of a regular file in a tree.
pub const MODE_FILE: u32 = 0o100644;
/// File mode of an executable file.
pub const MODE_EXEC: u32 = 0o100755;
/// File mode of a symlink.
pub const MODE_LINK: u32 = 0o120000;
/// File mode of a submodule (gitlink).
pub const MODE_GITLINK: u32 = 0o160000;
/// File mode of a directory.
pub const MODE_TREE: u32 = 0o040000;

/// Name of the bare work repository inside a work directory.
pub const WORK_REPO: &str = "repo.git";

/// Where fetched remote branches are kept in the work repository.
pub fn remote_ref(branch: &str) -> String {
    format!("refs/lapidary/remote/{branch}")
}

/// A remote repository and the credentials to reach it.
#[derive(Debug, Clone)]
pub struct RemoteRepo {
    url: String,
    creds: Credentials,
}

impl RemoteRepo {
    /// The repository at `url` (https, ssh, git, file URL or a local path).
    pub fn new(url: &str, creds: Credentials) -> Self {
        RemoteRepo {
            url: url.to_owned(),
            creds,
        }
    }

    /// The URL with any password removed, for messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// True for `file://` URLs and plain paths, which libgit2 serves through its
    /// local transport (no shallow fetches there).
    pub fn is_local(&self) -> bool {
        is_local_url(&self.url)
    }

    /// The repository behind a local URL, opened directly.
    ///
    /// Local remotes skip the transport: the work repository reads the remote's
    /// objects through an in-memory alternate (no fetch), and a push copies only the
    /// objects the remote lacks, then updates the reference with a compare-and-swap.
    /// The commits are the same as over the network; only the copying differs.
    fn local_repo(&self) -> Result<Option<Repository>> {
        if !self.is_local() {
            return Ok(None);
        }
        let path = self.url.strip_prefix("file://").unwrap_or(&self.url);
        Repository::open(path)
            .map(Some)
            .map_err(|e| self.remote_error("open", &e))
    }

    /// Opens the work repository in `workdir` (see [`open_work_repo`]): reused for a
    /// local remote, whose objects become readable through an alternate; new for any
    /// other remote.
    pub fn open_work_repo(&self, workdir: &Path) -> Result<Repository> {
        if !self.is_local() {
            // A shallow repository left by an earlier command knows its shallow
            // boundary only in the process that fetched it (libgit2 then walks past it
            // when pushing): start fresh, as a pod does.
            let dir = workdir.join(WORK_REPO);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(Error::io(format!("remove {}", dir.display())))?;
            }
        }
        let repo = open_work_repo(workdir)?;
        if let Some(remote) = self.local_repo()? {
            let objects = remote.path().join("objects");
            let odb = repo.odb().map_err(Error::git("open the object database"))?;
            odb.add_disk_alternate(&objects.to_string_lossy())
                .map_err(Error::git(format!("add alternate {}", objects.display())))?;
        }
        Ok(repo)
    }

    fn remote_error(&self, op: &'static str, e: &git2::Error) -> Error {
        let message = self.creds.redact(e.message());
        // Refused credentials or host keys, and our own callbacks' refusals, will not
        // change on a retry; network trouble may.
        let transient = !matches!(
            e.code(),
            ErrorCode::Auth | ErrorCode::Certificate | ErrorCode::User
        ) && !matches!(e.class(), ErrorClass::Callback | ErrorClass::Ssl)
            && !message.contains("refusing")
            && !message.contains("known_hosts");
        Error::Remote {
            op,
            url: self.display_url(),
            message,
            transient,
        }
    }

    /// The remote's references and the commits (or tags) they point at.
    pub fn list(&self, repo: &Repository) -> Result<Vec<(String, Oid)>> {
        if let Some(remote) = self.local_repo()? {
            return local_list(&remote).map_err(|e| self.remote_error("list", &e));
        }
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.remote_error("list", &e))?;
        let connection = remote
            .connect_auth(
                Direction::Fetch,
                Some(self.creds.callbacks(&self.url)),
                None,
            )
            .map_err(|e| self.remote_error("list", &e))?;
        let heads = connection
            .list()
            .map_err(|e| self.remote_error("list", &e))?
            .iter()
            .map(|h| (h.name().to_owned(), h.oid()))
            .collect();
        Ok(heads)
    }

    /// Fetches `refspecs`; `depth` > 0 asks for a shallow fetch where the transport
    /// supports it (not the local transport).
    pub fn fetch(&self, repo: &Repository, refspecs: &[String], depth: u32) -> Result<()> {
        if refspecs.is_empty() {
            return Ok(());
        }
        if let Some(remote) = self.local_repo()? {
            return local_fetch(&remote, repo, refspecs)
                .map_err(|e| self.remote_error("fetch", &e));
        }
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.remote_error("fetch", &e))?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.creds.callbacks(&self.url))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        if depth > 0 && !self.is_local() {
            options.depth(i32::try_from(depth).unwrap_or(i32::MAX));
        }
        remote
            .fetch(refspecs, Some(&mut options), None)
            .map_err(|e| self.remote_error("fetch", &e))
    }

    /// Pushes `refspecs` (`[+]src:dst`); a reference the remote refuses is an error.
    pub fn push(&self, repo: &Repository, refspecs: &[String]) -> Result<()> {
        if let Some(remote) = self.local_repo()? {
            return match local_push(repo, &remote, refspecs) {
                Ok(None) => Ok(()),
                Ok(Some((reference, message))) => Err(Error::PushRejected { reference, message }),
                Err(e) => Err(self.remote_error("push", &e)),
            };
        }
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.remote_error("push", &e))?;
        let mut rejected: Vec<(String, String)> = Vec::new();
        {
            let mut callbacks = self.creds.callbacks(&self.url);
            callbacks.push_update_reference(|reference, status| {
                if let Some(message) = status {
                    rejected.push((reference.to_owned(), message.to_owned()));
                }
                Ok(())
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            remote
                .push(refspecs, Some(&mut options))
                .map_err(|e| self.remote_error("push", &e))?;
        }
        match rejected.into_iter().next() {
            Some((reference, message)) => Err(Error::PushRejected {
                reference,
                message: self.creds.redact(&message),
            }),
            None => Ok(()),
        }
    }

    /// Makes sure `base` is in `repo`: already there (a reused work repository), or
    /// fetched with `branch` (shallow first, then the full branch).
    pub fn ensure_commit<'r>(
        &self,
        repo: &'r Repository,
        branch: &str,
        base: Oid,
    ) -> Result<Commit<'r>> {
        if let Ok(commit) = repo.find_commit(base) {
            return Ok(commit);
        }
        let refspec = vec![format!("+refs/heads/{branch}:{}", remote_ref(branch))];
        self.fetch(repo, &refspec, 1)?;
        if let Ok(commit) = repo.find_commit(base) {
            return Ok(commit);
        }
        if !self.is_local() {
            // The branch moved past `base`: deepen to the whole branch.
            self.fetch(repo, &refspec, 0)?;
            if let Ok(commit) = repo.find_commit(base) {
                return Ok(commit);
            }
        }
        Err(Error::BaseNotFound {
            base: base.to_string(),
            branch: branch.to_owned(),
            url: self.display_url(),
        })
    }
}

/// The references of a local repository (symbolic ones resolved).
fn local_list(remote: &Repository) -> Result<Vec<(String, Oid)>, git2::Error> {
    let mut out = Vec::new();
    if let Ok(head) = remote.head() {
        if let Some(oid) = head.target() {
            out.push(("HEAD".to_owned(), oid));
        }
    }
    for reference in remote.references()? {
        let reference = reference?;
        let (Some(name), Ok(resolved)) = (reference.name(), reference.resolve()) else {
            continue;
        };
        if let Some(oid) = resolved.target() {
            out.push((name.to_owned(), oid));
        }
    }
    Ok(out)
}

/// Splits `[+]src:dst`.
fn split_refspec(spec: &str) -> (bool, &str, &str) {
    let (force, rest) = match spec.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let (src, dst) = rest.split_once(':').unwrap_or((rest, rest));
    (force, src, dst)
}

/// "Fetches" from a local repository whose objects are an alternate of `repo`: only
/// the references are set.
fn local_fetch(
    remote: &Repository,
    repo: &Repository,
    refspecs: &[String],
) -> Result<(), git2::Error> {
    let heads = local_list(remote)?;
    for spec in refspecs {
        let (_, src, dst) = split_refspec(spec);
        match (src.strip_suffix('*'), dst.strip_suffix('*')) {
            (Some(src_prefix), Some(dst_prefix)) => {
                for (name, oid) in &heads {
                    if let Some(rest) = name.strip_prefix(src_prefix) {
                        repo.reference(&format!("{dst_prefix}{rest}"), *oid, true, "fetch")?;
                    }
                }
            }
            _ => {
                if let Some((_, oid)) = heads.iter().find(|(name, _)| name == src) {
                    repo.reference(dst, *oid, true, "fetch")?;
                }
            }
        }
    }
    Ok(())
}

/// Fewer objects than this are copied loose; more go as one pack.
const LOOSE_LIMIT: usize = 64;

/// Copies the objects reachable from `oid` that `to` lacks from `from`: loose when
/// they are few, else as one pack (as git's own push writes). A tree the
/// destination has is complete there, so it is not descended.
fn copy_missing(from: &Repository, to: &Repository, oid: Oid) -> Result<usize, git2::Error> {
    let dst = to.odb()?;
    let mut stack = vec![oid];
    let mut missing = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) || dst.exists(id) {
            continue;
        }
        let object = from.find_object(id, None)?;
        match object.kind() {
            Some(ObjectType::Commit) => {
                if let Some(commit) = object.as_commit() {
                    stack.push(commit.tree_id());
                    stack.extend(commit.parent_ids());
                }
            }
            Some(ObjectType::Tree) => {
                if let Some(tree) = object.as_tree() {
                    stack.extend(
                        tree.iter()
                            .filter(|e| e.kind() != Some(ObjectType::Commit))
                            .map(|e| e.id()),
                    );
                }
            }
            _ => {}
        }
        missing.push(id);
    }
    if missing.is_empty() {
        return Ok(0);
    }
    if missing.len() < LOOSE_LIMIT {
        // A module's dozen objects: loose objects keep the remote from piling up
        // one small pack per module, which every later process would open.
        let src = from.odb()?;
        for id in &missing {
            let object = src.read(*id)?;
            dst.write(object.kind(), object.data())?;
        }
        return Ok(missing.len());
    }
    let mut builder = from.packbuilder()?;
    for id in &missing {
        builder.insert_object(*id, None)?;
    }
    let mut pack = git2::Buf::new();
    builder.write_buf(&mut pack)?;
    let mut writer = dst.packwriter()?;
    std::io::Write::write_all(&mut writer, &pack)
        .map_err(|e| git2::Error::from_str(&format!("write pack: {e}")))?;
    writer.commit()?;
    Ok(missing.len())
}

/// Pushes to a local repository. `Ok(Some((ref, why)))` when a reference is refused
/// (not a fast-forward, or moved meanwhile).
fn local_push(
    repo: &Repository,
    remote: &Repository,
    refspecs: &[String],
) -> Result<Option<(String, String)>, git2::Error> {
    for spec in refspecs {
        let (force, src, dst) = split_refspec(spec);
        let oid = repo.refname_to_id(src)?;
        let checked_out = !remote.is_bare()
            && remote
                .head()
                .ok()
                .and_then(|h| h.name().map(str::to_owned))
                .as_deref()
                == Some(dst);
        if checked_out {
            return Ok(Some((
                dst.to_owned(),
                "it is checked out in the remote's working tree".to_owned(),
            )));
        }
        copy_missing(repo, remote, oid)?;
        let current = remote.refname_to_id(dst).ok();
        match current {
            Some(old) if old == oid => {}
            Some(old) if force => {
                remote.reference_matching(dst, oid, true, old, "lapidary push")?;
            }
            Some(old) => {
                if !remote.graph_descendant_of(oid, old)? {
                    return Ok(Some((dst.to_owned(), "non-fast-forward".to_owned())));
                }
                // Compare-and-swap: refused if another writer moved it meanwhile.
                if let Err(e) = remote.reference_matching(dst, oid, true, old, "lapidary push") {
                    return Ok(Some((dst.to_owned(), e.message().to_owned())));
                }
            }
            None => {
                if let Err(e) = remote.reference(dst, oid, force, "lapidary push") {
                    return Ok(Some((dst.to_owned(), e.message().to_owned())));
                }
            }
        }
    }
    Ok(None)
}

/// True for `file://` URLs and plain paths.
pub fn is_local_url(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    if url.contains("://") {
        return false;
    }
    // scp-like `user@host:path` is ssh; a path with a colon before any slash too.
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
        _ => true,
    }
}

/// Opens the bare work repository in `workdir`, reusing it when a previous command
/// left a valid one (local-mode workers keep theirs; pods start empty).
pub fn open_work_repo(workdir: &Path) -> Result<Repository> {
    let dir = workdir.join(WORK_REPO);
    if dir.exists() {
        if let Ok(repo) = Repository::open_bare(&dir) {
            return Ok(repo);
        }
        std::fs::remove_dir_all(&dir)
            .map_err(Error::io(format!("remove stale {}", dir.display())))?;
    }
    std::fs::create_dir_all(workdir).map_err(Error::io(format!(
        "create work directory {}",
        workdir.display()
    )))?;
    let repo =
        Repository::init_bare(&dir).map_err(Error::git(format!("init {}", dir.display())))?;
    // An unborn HEAD that no command ever creates: checkouts for the validate
    // command then compare against nothing and write every file.
    repo.set_head("refs/heads/lapidary-unborn-head")
        .map_err(Error::git("set HEAD"))?;
    Ok(repo)
}

/// Parses a full 40-hex commit id.
pub fn parse_oid(text: &str) -> Option<Oid> {
    (text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Oid::from_str(text).ok())
        .flatten()
}

/// What a repository path names in a tree. Symlinks are never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing there.
    Missing,
    /// A file (regular or executable).
    File {
        /// Blob id.
        oid: Oid,
        /// File mode.
        mode: u32,
    },
    /// A symlink (its blob holds the link target).
    Symlink {
        /// Blob id.
        oid: Oid,
    },
    /// A directory.
    Dir {
        /// Tree id.
        oid: Oid,
    },
    /// A submodule.
    Submodule,
    /// A proper prefix of the path is a symlink.
    ThroughSymlink {
        /// The symlink's path.
        prefix: String,
    },
    /// A proper prefix of the path is a file.
    ThroughFile {
        /// The file's path.
        prefix: String,
    },
}

/// Looks `path` (normalized, `/`-separated) up in `tree` component by component.
pub fn lookup(repo: &Repository, tree: &Tree<'_>, path: &str) -> Result<Lookup> {
    let parts: Vec<&str> = path.split('/').collect();
    let mut current = tree.clone();
    for (i, part) in parts.iter().enumerate() {
        let Some((kind, id, mode)) = current
            .get_name(part)
            .map(|e| (e.kind(), e.id(), u32::try_from(e.filemode()).unwrap_or(0)))
        else {
            return Ok(Lookup::Missing);
        };
        let last = i + 1 == parts.len();
        let prefix = || parts[..=i].join("/");
        match (kind, mode) {
            (Some(ObjectType::Tree), _) => {
                if last {
                    return Ok(Lookup::Dir { oid: id });
                }
                current = repo
                    .find_tree(id)
                    .map_err(Error::git(format!("read tree {}", prefix())))?;
            }
            (_, MODE_LINK) => {
                return Ok(if last {
                    Lookup::Symlink { oid: id }
                } else {
                    Lookup::ThroughSymlink { prefix: prefix() }
                });
            }
            (Some(ObjectType::Commit), _) | (_, MODE_GITLINK) => {
                return Ok(if last {
                    Lookup::Submodule
                } else {
                    Lookup::ThroughFile { prefix: prefix() }
                });
            }
            _ => {
                return Ok(if last {
                    Lookup::File { oid: id, mode }
                } else {
                    Lookup::ThroughFile { prefix: prefix() }
                });
            }
        }
    }
    Ok(Lookup::Missing)
}

/// Where a symlink at `link_path` with target `target` resolves, relative to the
/// repository root, or `None` when it leaves the repository (absolute, or `..` past
/// the root).
pub fn resolve_symlink(link_path: &str, target: &str) -> Option<String> {
    if target.starts_with('/')
        || target.starts_with('\\')
        || target.contains(':') && target.len() > 1 && target.as_bytes().get(1) == Some(&b':')
    {
        return None;
    }
    let mut parts: Vec<&str> = link_path.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// One entry of a tree being edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Repository path.
    pub path: String,
    /// Blob (or gitlink commit) id.
    pub oid: Oid,
    /// File mode.
    pub mode: u32,
}

/// An in-memory edit of a tree (an index that never touches disk): renames move
/// entries and keep their blob ids, so git sees renames.
pub struct TreeEdit {
    index: Index,
}

impl TreeEdit {
    /// Starts from `tree`.
    pub fn from_tree(tree: &Tree<'_>) -> Result<Self> {
        let mut index = Index::new().map_err(Error::git("create index"))?;
        index.read_tree(tree).map_err(Error::git("read tree"))?;
        Ok(TreeEdit { index })
    }

    /// Wraps an index produced elsewhere (e.g. by a merge).
    pub fn from_index(index: Index) -> Self {
        TreeEdit { index }
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Entry> {
        self.index.get_path(Path::new(path), 0).map(|e| Entry {
            path: path.to_owned(),
            oid: e.id,
            mode: e.mode,
        })
    }

    /// Every entry, in path order.
    pub fn entries(&self) -> Vec<Entry> {
        self.index
            .iter()
            .filter_map(|e| {
                let path = String::from_utf8(e.path).ok()?;
                Some(Entry {
                    path,
                    oid: e.id,
                    mode: e.mode,
                })
            })
            .collect()
    }

    /// The entries at `path` (a file) or below it (a directory).
    pub fn entries_at(&self, path: &str) -> Vec<Entry> {
        let dir = format!("{path}/");
        self.entries()
            .into_iter()
            .filter(|e| e.path == path || e.path.starts_with(&dir))
            .collect()
    }

    /// Whether anything lies at or below `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.get(path).is_some() || !self.entries_at(path).is_empty()
    }

    /// Adds or replaces the entry at `path`.
    pub fn upsert(&mut self, path: &str, oid: Oid, mode: u32) -> Result<()> {
        let entry = IndexEntry {
            ctime: IndexTime::new(0, 0),
            mtime: IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode,
            uid: 0,
            gid: 0,
            file_size: 0,
            id: oid,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        self.index
            .add(&entry)
            .map_err(Error::git(format!("add {path}")))
    }

    /// Writes `content` as a blob and puts it at `path`; returns whether the tree
    /// changed.
    pub fn write_file(
        &mut self,
        repo: &Repository,
        path: &str,
        content: &[u8],
        mode: u32,
    ) -> Result<bool> {
        let oid = repo
            .blob(content)
            .map_err(Error::git(format!("write blob {path}")))?;
        if self
            .get(path)
            .is_some_and(|e| e.oid == oid && e.mode == mode)
        {
            return Ok(false);
        }
        self.upsert(path, oid, mode)?;
        Ok(true)
    }

    /// Removes the entry at `path`.
    pub fn remove(&mut self, path: &str) -> Result<()> {
        self.index
            .remove(Path::new(path), 0)
            .map_err(Error::git(format!("remove {path}")))
    }

    /// Moves the file or directory at `from` to `to`: every entry keeps its blob id
    /// and mode. Returns the moved entries' new paths.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<Vec<Entry>> {
        let moved = self.entries_at(from);
        let mut placed = Vec::with_capacity(moved.len());
        for entry in &moved {
            self.remove(&entry.path)?;
        }
        for entry in moved {
            let new_path = format!("{to}{}", &entry.path[from.len()..]);
            self.upsert(&new_path, entry.oid, entry.mode)?;
            placed.push(Entry {
                path: new_path,
                ..entry
            });
        }
        Ok(placed)
    }

    /// Writes the edited tree into `repo`.
    pub fn write_tree(&mut self, repo: &Repository) -> Result<Oid> {
        self.index
            .write_tree_to(repo)
            .map_err(Error::git("write tree"))
    }
}

/// The signature of the plan's author at `time`.
pub fn signature(author: &AuthorSpec, time: Time) -> Result<Signature<'static>> {
    Signature::new(&author.name, &author.email, &time).map_err(|e| {
        Error::Input(format!(
            "author {:?} <{}>: {}",
            author.name,
            author.email,
            e.message()
        ))
    })
}

/// The committer time of `commit`, which every commit built on it reuses so that
/// commit ids are reproducible.
pub fn commit_time(commit: &Commit<'_>) -> Time {
    let time = commit.committer().when();
    Time::new(time.seconds(), time.offset_minutes())
}

/// Creates a commit (no reference is updated) with the plan's author as author and
/// committer, at `time`.
pub fn commit(
    repo: &Repository,
    tree: Oid,
    parents: &[&Commit<'_>],
    author: &AuthorSpec,
    time: Time,
    message: &str,
) -> Result<Oid> {
    let sig = signature(author, time)?;
    let tree = repo.find_tree(tree).map_err(Error::git("find tree"))?;
    repo.commit(None, &sig, &sig, message, &tree, parents)
        .map_err(Error::git("commit"))
}

/// Points `refs/heads/<branch>` of `repo` at `oid`.
pub fn set_branch(repo: &Repository, branch: &str, oid: Oid) -> Result<()> {
    repo.reference(&format!("refs/heads/{branch}"), oid, true, "lapidary")
        .map(|_| ())
        .map_err(Error::git(format!("update branch {branch}")))
}

/// Files that differ between two trees, a rename counting once.
pub fn files_changed(repo: &Repository, old: &Tree<'_>, new: &Tree<'_>) -> Result<u32> {
    let mut diff = repo
        .diff_tree_to_tree(Some(old), Some(new), None)
        .map_err(Error::git("diff"))?;
    let mut find = git2::DiffFindOptions::new();
    find.renames(true).exact_match_only(true);
    diff.find_similar(Some(&mut find))
        .map_err(Error::git("find renames"))?;
    Ok(u32::try_from(diff.deltas().len()).unwrap_or(u32::MAX))
}

/// Writes `tree` into the directory `dir` (created; emptied first) for the validate
/// command. The work repository stays bare.
pub fn checkout(repo: &Repository, tree: &Tree<'_>, dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io(format!("empty {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let mut builder = git2::build::CheckoutBuilder::new();
    builder.force().update_index(false).target_dir(dir);
    repo.checkout_tree(tree.as_object(), Some(&mut builder))
        .map_err(Error::git(format!("checkout into {}", dir.display())))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_are_recognised() {
        assert!(is_local_url("file:///tmp/r.git"));
        assert!(is_local_url("/tmp/r.git"));
        assert!(is_local_url("relative/r.git"));
        assert!(is_local_url("./a:b/r.git"));
        assert!(!is_local_url("git://127.0.0.1/r.git"));
        assert!(!is_local_url("https://h/r.git"));
        assert!(!is_local_url("git@h:org/r.git"));
    }

    #[test]
    fn symlinks_resolve_inside_or_are_refused() {
        assert_eq!(resolve_symlink("a/b/link", "../c").as_deref(), Some("a/c"));
        assert_eq!(resolve_symlink("a/link", "./x/y").as_deref(), Some("a/x/y"));
        assert_eq!(resolve_symlink("a/link", "../../etc/passwd"), None);
        assert_eq!(resolve_symlink("link", "/etc/passwd"), None);
        assert_eq!(resolve_symlink("a/link", "C:/Windows"), None);
    }

    #[test]
    fn oids_parse_only_when_full() {
        assert!(parse_oid(&"a".repeat(40)).is_some());
        assert!(parse_oid("abc").is_none());
        assert!(parse_oid(&"g".repeat(40)).is_none());
    }
}
