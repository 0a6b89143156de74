//! `integrate`: one module's steps, in plan order, on an in-memory tree built from the
//! `--base` commit: move (a git rename, plus the `__init__.py` files a new package
//! needs), fixImports, schema, testStub, docs, then validate (in a checkout), commit
//! on the module branch and push. Bad input is refused before anything is committed.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Repository, Tree};
use lapidary_api::contract::{self, ResultDocument};
use lapidary_api::crd::Step;
use lapidary_api::planner::{normalize_path, PlannedModule};

use crate::cli::{self, Context, LevelArgs};
use crate::error::{Error, Result};
use crate::git::{self, Lookup, TreeEdit};
use crate::python::{self, MoveMap, MovedFile};
use crate::result::step;

/// Runs `integrate` for the module this pod is assigned.
pub fn integrate(ctx: &Context, args: &LevelArgs, doc: &mut ResultDocument) -> Result<()> {
    let plan = &ctx.plan;
    let (indexes, completion) = cli::env_indexes()?;
    let completion = completion.unwrap_or(0);
    let module = plan
        .module_for(args.level, &indexes, completion)
        .ok_or_else(|| {
            Error::Input(format!(
                "level {} has no module for completion index {completion} (module indexes {:?})",
                args.level,
                contract::format_indexes(&indexes)
            ))
        })?
        .clone();
    doc.module = Some(module.name.clone());
    let branch = contract::module_branch(&plan.integration_branch, &module.name);
    doc.branch = Some(branch.clone());
    let base_oid = git::parse_oid(&args.base)
        .ok_or_else(|| Error::Input(format!("--base {:?} is not a full commit id", args.base)))?;
    check_paths(&module)?;

    let repo = ctx.remote.open_work_repo(&ctx.workdir)?;
    let base = step(doc, "fetch", || {
        ctx.remote
            .ensure_commit(&repo, &plan.integration_branch, base_oid)
    })?;
    let base_tree = base.tree().map_err(Error::git("read base tree"))?;
    let needs_text = plan.steps.iter().any(|s| {
        matches!(
            s,
            Step::FixImports | Step::Schema | Step::TestStub | Step::Docs
        )
    });
    let source = step(doc, "check", || {
        check_module(
            &repo,
            &base_tree,
            &module,
            plan.steps.contains(&Step::Move),
            needs_text,
        )
    })?;
    let mut work = ModuleWork {
        repo: &repo,
        base_tree: &base_tree,
        edit: TreeEdit::from_tree(&base_tree)?,
        module: &module,
        location: module.path.clone(),
        texts: source.texts,
        skipped: source.skipped,
        warnings: Vec::new(),
        info: None,
    };
    for s in &plan.steps {
        let outcome = match s {
            Step::Move => step(doc, s.as_str(), || work.move_module()),
            Step::FixImports => step(doc, s.as_str(), || work.fix_imports(&ctx.plan.plan)),
            Step::Schema | Step::TestStub | Step::Docs => {
                step(doc, s.as_str(), || work.generate(*s))
            }
        };
        if let Err(e) = outcome {
            doc.warnings.append(&mut work.warnings);
            return Err(e);
        }
    }
    doc.warnings.append(&mut work.warnings);
    let tree_oid = work.edit.write_tree(&repo)?;
    let tree = repo.find_tree(tree_oid).map_err(Error::git("find tree"))?;
    if let Some(command) = &plan.validate {
        let dir = ctx.workdir.join(format!("worktree-{}", module.name));
        let outcome = step(doc, "validate", || {
            git::checkout(&repo, &tree, &dir)?;
            run_validate(command, &dir, Duration::from_secs(args.validate_timeout))
        });
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }
    let commit = step(doc, "commit", || {
        let message = if work.location == module.path {
            format!("lapidary: integrate {}", module.name)
        } else {
            format!(
                "lapidary: integrate {} ({} -> {})",
                module.name, module.path, work.location
            )
        };
        let oid = git::commit(
            &repo,
            tree_oid,
            &[&base],
            &plan.author,
            git::commit_time(&base),
            &message,
        )?;
        git::set_branch(&repo, &branch, oid)?;
        Ok(oid)
    })?;
    doc.commit = Some(commit.to_string());
    doc.files_changed = Some(git::files_changed(&repo, &base_tree, &tree)?);
    if plan.push {
        // Forced: a retried attempt replaces its own earlier branch.
        step(doc, "push", || {
            ctx.remote.push(
                &repo,
                &[format!("+refs/heads/{branch}:refs/heads/{branch}")],
            )
        })?;
    } else {
        doc.warnings
            .push("push is false: nothing was pushed".to_owned());
    }
    Ok(())
}

/// Refuses paths a hand-written plan could carry past the planner.
fn check_paths(module: &PlannedModule) -> Result<()> {
    for (field, path) in [("path", &module.path), ("target", &module.target)] {
        match normalize_path(path) {
            Ok(normal) if normal == *path => {}
            Ok(normal) => {
                return Err(Error::UnsafePath {
                    module: module.name.clone(),
                    field,
                    path: path.clone(),
                    reason: format!("it is not normalized (use {normal:?})"),
                })
            }
            Err(reason) => {
                return Err(Error::UnsafePath {
                    module: module.name.clone(),
                    field,
                    path: path.clone(),
                    reason: format!("{reason}; paths must stay inside the repository"),
                })
            }
        }
    }
    Ok(())
}

/// What the checks found in the module.
struct ModuleSource {
    /// Python files (old path → text).
    texts: BTreeMap<String, String>,
    /// Files of the module that are not Python.
    skipped: usize,
}

/// Checks the module in the base tree: the path exists (not through a symlink), the
/// target does not, no symlink points outside the repository, and (when a step reads
/// text) every `.py` file is UTF-8 text.
fn check_module(
    repo: &Repository,
    tree: &Tree<'_>,
    module: &PlannedModule,
    moving: bool,
    needs_text: bool,
) -> Result<ModuleSource> {
    let unsafe_path = |field: &'static str, path: &str, reason: String| Error::UnsafePath {
        module: module.name.clone(),
        field,
        path: path.to_owned(),
        reason,
    };
    match git::lookup(repo, tree, &module.path)? {
        Lookup::Missing => {
            return Err(Error::MissingPath {
                module: module.name.clone(),
                path: module.path.clone(),
            })
        }
        Lookup::ThroughSymlink { prefix } => {
            return Err(unsafe_path(
                "path",
                &module.path,
                format!("{prefix} is a symlink; symlinks are never followed"),
            ))
        }
        Lookup::ThroughFile { prefix } => {
            return Err(Error::MissingPath {
                module: module.name.clone(),
                path: format!("{} ({prefix} is a file)", module.path),
            })
        }
        Lookup::Submodule => {
            return Err(unsafe_path(
                "path",
                &module.path,
                "it is a submodule".to_owned(),
            ))
        }
        Lookup::File { .. } | Lookup::Dir { .. } | Lookup::Symlink { .. } => {}
    }
    if moving {
        match git::lookup(repo, tree, &module.target)? {
            Lookup::Missing => {}
            Lookup::ThroughSymlink { prefix } => {
                return Err(unsafe_path(
                    "target",
                    &module.target,
                    format!("{prefix} is a symlink; symlinks are never followed"),
                ))
            }
            Lookup::ThroughFile { prefix } => {
                return Err(unsafe_path(
                    "target",
                    &module.target,
                    format!("{prefix} is a file, not a directory"),
                ))
            }
            _ => {
                return Err(Error::TargetExists {
                    module: module.name.clone(),
                    target: module.target.clone(),
                })
            }
        }
    }
    let edit = TreeEdit::from_tree(tree)?;
    let mut texts = BTreeMap::new();
    let mut skipped = 0usize;
    for entry in edit.entries_at(&module.path) {
        if entry.mode == git::MODE_LINK {
            let blob = repo
                .find_blob(entry.oid)
                .map_err(Error::git(format!("read {}", entry.path)))?;
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            if git::resolve_symlink(&entry.path, &target).is_none() {
                return Err(Error::SymlinkOutside {
                    module: module.name.clone(),
                    path: entry.path,
                    target,
                });
            }
            continue;
        }
        if !entry.path.ends_with(".py") || entry.mode == git::MODE_GITLINK {
            skipped += 1;
            continue;
        }
        if !needs_text {
            continue;
        }
        let blob = repo
            .find_blob(entry.oid)
            .map_err(Error::git(format!("read {}", entry.path)))?;
        let content = blob.content();
        if content.contains(&0) {
            return Err(Error::Binary {
                module: module.name.clone(),
                path: entry.path,
            });
        }
        match std::str::from_utf8(content) {
            Ok(text) => {
                texts.insert(entry.path, text.to_owned());
            }
            Err(_) => {
                return Err(Error::NotUtf8 {
                    module: module.name.clone(),
                    path: entry.path,
                })
            }
        }
    }
    Ok(ModuleSource { texts, skipped })
}

/// A module being integrated: the edited tree and where the module is now.
struct ModuleWork<'a> {
    repo: &'a Repository,
    base_tree: &'a Tree<'a>,
    edit: TreeEdit,
    module: &'a PlannedModule,
    /// The module's current path (its target once moved).
    location: String,
    /// Python files: old path → current text.
    texts: BTreeMap<String, String>,
    skipped: usize,
    warnings: Vec<String>,
    /// The analysis, once a generating step made it.
    info: Option<python::ModuleInfo>,
}

impl ModuleWork<'_> {
    /// The current path of a module file known by its old path.
    fn current_path(&self, old_path: &str) -> String {
        format!("{}{}", self.location, &old_path[self.module.path.len()..])
    }

    fn is_python(&self) -> bool {
        !self.texts.is_empty() || self.module.target.ends_with(".py")
    }

    /// Renames the module to its target and adds `__init__.py` to the directories the
    /// move creates, so that the target is importable as a package.
    fn move_module(&mut self) -> Result<()> {
        let from = self.module.path.clone();
        let to = self.module.target.clone();
        self.edit.rename(&from, &to)?;
        self.location = to.clone();
        if !self.is_python() {
            return Ok(());
        }
        let parents: Vec<&str> = to.match_indices('/').map(|(i, _)| &to[..i]).collect();
        for dir in parents {
            let name = dir.rsplit('/').next().unwrap_or(dir);
            if !python::moves::is_identifier(name) {
                break;
            }
            if git::lookup(self.repo, self.base_tree, dir)? != Lookup::Missing {
                continue;
            }
            let init = format!("{dir}/__init__.py");
            if self.edit.get(&init).is_none() {
                self.edit
                    .write_file(self.repo, &init, b"", git::MODE_FILE)?;
            }
        }
        Ok(())
    }

    /// The moves fixImports applies to the module's own files: this level's modules,
    /// and earlier levels' modules that the base commit shows integrated.
    fn move_map(&self, plan: &lapidary_api::Plan) -> Result<MoveMap> {
        let mut map = MoveMap::new();
        for m in &plan.modules {
            if m.level > self.module.level {
                continue;
            }
            if m.level < self.module.level {
                let integrated = git::lookup(self.repo, self.base_tree, &m.target)?
                    != Lookup::Missing
                    && git::lookup(self.repo, self.base_tree, &m.path)? == Lookup::Missing;
                if !integrated {
                    continue;
                }
            }
            // Paths that are no Python module names (data directories) have nothing
            // to rewrite.
            let _ = map.insert_path(&m.path, &m.target);
        }
        Ok(map)
    }

    /// Rewrites the imports of the module's own Python files.
    fn fix_imports(&mut self, plan: &lapidary_api::Plan) -> Result<()> {
        if self.skipped > 0 {
            self.warnings.push(format!(
                "fixImports: {} non-Python file(s) of {} left as they are",
                self.skipped, self.module.name
            ));
        }
        let map = self.move_map(plan)?;
        let paths: Vec<(String, String)> = self
            .texts
            .keys()
            .map(|old| (old.clone(), self.current_path(old)))
            .collect();
        let files: Vec<MovedFile<'_>> = paths
            .iter()
            .map(|(old, new)| MovedFile {
                old_path: old,
                new_path: new,
                text: self.texts.get(old).map(String::as_str).unwrap_or_default(),
            })
            .collect();
        let (changes, warnings) =
            python::fix_moved_files(&files, &map).map_err(|e| Error::Python {
                module: self.module.name.clone(),
                step: "fixImports",
                path: self.location.clone(),
                message: e.to_string(),
            })?;
        self.warnings.extend(warnings);
        let by_new: BTreeMap<String, String> =
            paths.iter().map(|(o, n)| (n.clone(), o.clone())).collect();
        for change in changes {
            let mode = self
                .edit
                .get(&change.path)
                .map(|e| e.mode)
                .unwrap_or(git::MODE_FILE);
            self.edit
                .write_file(self.repo, &change.path, change.text.as_bytes(), mode)?;
            if let Some(old) = by_new.get(&change.path) {
                self.texts.insert(old.clone(), change.text);
            }
        }
        Ok(())
    }

    /// The schema, testStub and docs steps: writes the files the analysis returns.
    fn generate(&mut self, which: Step) -> Result<()> {
        if self.texts.is_empty() {
            self.warnings.push(format!(
                "{}: {} has no Python files; nothing generated",
                which.as_str(),
                self.module.name
            ));
            return Ok(());
        }
        let python_error = |e: python::PythonError, location: &str| Error::Python {
            module: self.module.name.clone(),
            step: which.as_str(),
            path: location.to_owned(),
            message: e.to_string(),
        };
        let dotted = python::moves::dotted_of_move_path(&self.location)
            .map_err(|e| python_error(e, &self.location))?;
        if self.info.is_none() {
            let files: Vec<(String, String)> = self
                .texts
                .iter()
                .map(|(old, text)| (self.current_path(old), text.clone()))
                .collect();
            let info = python::analyze_module(&self.location, &files)
                .map_err(|e| python_error(e, &self.location))?;
            self.info = Some(info);
        }
        let Some(info) = &self.info else {
            return Ok(());
        };
        let name = &self.module.name;
        let mut outputs: Vec<(String, String, bool)> = Vec::new();
        match which {
            Step::Schema => {
                let doc = python::schema_document(
                    name,
                    &self.module.path,
                    &self.location,
                    info,
                    &self.module.depends_on,
                );
                let text = serde_json::to_string_pretty(&doc)
                    .map_err(|e| Error::Input(format!("schema of {name}: {e}")))?;
                outputs.push((python::schema_path(name), format!("{text}\n"), true));
            }
            Step::TestStub => {
                let stub = python::test_stub(name, &dotted, info);
                for (path, text) in stub.package_files {
                    outputs.push((path, text, false));
                }
                outputs.push((stub.path, stub.text, true));
            }
            Step::Docs => {
                let (path, text) = python::docs_page(name, &dotted, info);
                outputs.push((path, text, true));
            }
            Step::Move | Step::FixImports => {}
        }
        for (path, content, replace) in outputs {
            if normalize_path(&path).ok().as_deref() != Some(path.as_str()) {
                return Err(Error::UnsafePath {
                    module: name.clone(),
                    field: "file",
                    path,
                    reason: "generated outside the repository".to_owned(),
                });
            }
            if !replace && self.edit.get(&path).is_some() {
                continue;
            }
            self.edit
                .write_file(self.repo, &path, content.as_bytes(), git::MODE_FILE)?;
        }
        Ok(())
    }
}

/// Runs the validate command in `dir` (no shell) with a timeout; a failure carries
/// the tail of its output.
pub fn run_validate(command: &[String], dir: &Path, timeout: Duration) -> Result<()> {
    let Some((program, arguments)) = command.split_first() else {
        return Err(Error::Input("the validate command is empty".to_owned()));
    };
    let log_path = dir.with_extension("validate.log");
    let log = std::fs::File::create(&log_path)
        .map_err(Error::io(format!("create {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(Error::io("duplicate the validate log"))?;
    let mut child = Command::new(program)
        .args(arguments)
        .current_dir(dir)
        .env_remove(contract::ENV_CREDENTIALS_DIR)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| Error::Validate {
            message: format!("cannot run {program:?}: {e}"),
        })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(Error::io("wait for validate"))? {
            Some(status) => break Some(status),
            None if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let tail = output_tail(&log_path, 1000);
    let _ = std::fs::remove_file(&log_path);
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(Error::Validate {
            message: format!(
                "{} exited with {}; output ends: {tail}",
                command.join(" "),
                s.code()
                    .map_or("a signal".to_owned(), |c| format!("code {c}"))
            ),
        }),
        None => Err(Error::Validate {
            message: format!(
                "{} did not finish within {}s; output ends: {tail}",
                command.join(" "),
                timeout.as_secs()
            ),
        }),
    }
}

/// The last `max` bytes of a file, as text.
fn output_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}
