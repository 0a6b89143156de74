//! `merge --level K`: merges level K's module branches into the integration branch one
//! by one, in plan order (three-way, in memory; a conflicting module is left out and
//! reported), rewrites references to the level's moved modules across the whole
//! repository, commits that, and pushes the integration branch as a fast-forward of
//! `--base`.

use std::collections::HashMap;

use git2::{Commit, Oid, Repository};
use lapidary_api::contract::{self, ResultDocument};
use lapidary_api::planner::PlannedModule;

use crate::cli::{self, Context, LevelArgs};
use crate::error::{Error, Result};
use crate::git::{self, remote_ref, TreeEdit};
use crate::python::{self, MoveMap};
use crate::result::step;

/// Runs `merge`. `doc.commit` is the new integration-branch head; `doc.conflicts`
/// lists the modules left out.
pub fn merge(ctx: &Context, args: &LevelArgs, doc: &mut ResultDocument) -> Result<()> {
    let plan = &ctx.plan;
    let branch = plan.integration_branch.clone();
    doc.branch = Some(branch.clone());
    let positions = plan
        .plan
        .levels
        .get(args.level)
        .ok_or_else(|| Error::Input(format!("the plan has no level {}", args.level)))?;
    let (indexes, _) = cli::env_indexes()?;
    let within: Vec<usize> = if indexes.is_empty() {
        (0..positions.len()).collect()
    } else {
        indexes
    };
    let modules: Vec<&PlannedModule> = within
        .iter()
        .map(|&i| {
            positions
                .get(i)
                .and_then(|&p| plan.plan.modules.get(p))
                .ok_or_else(|| Error::Input(format!("level {} has no position {i}", args.level)))
        })
        .collect::<Result<_>>()?;
    let base_oid = git::parse_oid(&args.base)
        .ok_or_else(|| Error::Input(format!("--base {:?} is not a full commit id", args.base)))?;

    let repo = ctx.remote.open_work_repo(&ctx.workdir)?;
    let (base, remote_head, fetched) = step(doc, "fetch", || {
        let heads: HashMap<String, Oid> = ctx.remote.list(&repo)?.into_iter().collect();
        let mut refspecs = Vec::new();
        let mut fetched = HashMap::new();
        for m in &modules {
            let mb = contract::module_branch(&branch, &m.name);
            if let Some(oid) = heads.get(&format!("refs/heads/{mb}")) {
                if repo.find_commit(*oid).is_err() {
                    refspecs.push(format!("+refs/heads/{mb}:{}", remote_ref(&mb)));
                }
                fetched.insert(m.name.clone(), *oid);
            }
        }
        // Module commits sit on `--base`: depth 2 brings the base along.
        ctx.remote.fetch(&repo, &refspecs, 2)?;
        let base = ctx.remote.ensure_commit(&repo, &branch, base_oid)?;
        let remote_head = heads.get(&format!("refs/heads/{branch}")).copied();
        Ok((base, remote_head, fetched))
    })?;

    let time = git::commit_time(&base);
    let mut head: Commit<'_> = base.clone();
    let mut merged: Vec<&PlannedModule> = Vec::new();
    let mut conflicts: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    step(doc, "merge", || {
        for m in &modules {
            let Some(oid) = fetched.get(&m.name) else {
                conflicts.push(m.name.clone());
                warnings.push(format!(
                    "{}: no module branch on the remote; left out",
                    m.name
                ));
                continue;
            };
            let theirs = repo
                .find_commit(*oid)
                .map_err(Error::git(format!("find the commit of {}", m.name)))?;
            if theirs.parent_id(0).ok() != Some(base.id()) {
                conflicts.push(m.name.clone());
                warnings.push(format!(
                    "{}: its branch does not start at the level's base {}; left out",
                    m.name,
                    base.id()
                ));
                continue;
            }
            match merge_one(
                &repo, &base, &head, &theirs, plan, time, m, &branch, args.level,
            )? {
                Some(commit) => {
                    head = repo.find_commit(commit).map_err(Error::git("find merge"))?;
                    merged.push(m);
                }
                None => {
                    conflicts.push(m.name.clone());
                    tracing::warn!(module = %m.name, "merge conflict; module left out");
                }
            }
        }
        Ok(())
    })?;

    doc.conflicts.extend(conflicts);
    doc.warnings.extend(warnings);
    let mut rewrite_warnings = Vec::new();
    let rewritten = step(doc, "fixImports", || {
        rewrite_repository(
            &repo,
            &head,
            &merged,
            plan,
            time,
            args.level,
            &mut rewrite_warnings,
        )
    })?;
    doc.warnings.extend(rewrite_warnings);
    if let Some(commit) = rewritten {
        head = repo
            .find_commit(commit)
            .map_err(Error::git("find rewrite"))?;
    }
    doc.commit = Some(head.id().to_string());
    doc.files_changed = Some(git::files_changed(
        &repo,
        &base.tree().map_err(Error::git("base tree"))?,
        &head.tree().map_err(Error::git("head tree"))?,
    )?);
    if !doc.conflicts.is_empty() {
        doc.warnings.insert(
            0,
            format!(
                "{} module(s) conflicted and were left out",
                doc.conflicts.len()
            ),
        );
    }
    if !plan.push {
        doc.warnings
            .push("push is false: nothing was pushed".to_owned());
        return Ok(());
    }
    match remote_head {
        Some(found) if found == head.id() => {
            tracing::info!(%branch, commit = %found, "integration branch already merged");
            Ok(())
        }
        Some(found) if found != base.id() => Err(Error::BranchElsewhere {
            branch,
            found: found.to_string(),
            expected: format!("the level's base {} or the merge {}", base.id(), head.id()),
        }),
        _ => step(doc, "push", || {
            git::set_branch(&repo, &branch, head.id())?;
            // Not forced: a fast-forward of the base, or the remote refuses.
            ctx.remote
                .push(&repo, &[format!("refs/heads/{branch}:refs/heads/{branch}")])
        }),
    }
}

/// Three-way merge of `theirs` (a module commit on `base`) into `head`. `None` when
/// the trees conflict: nothing is written for it.
#[allow(clippy::too_many_arguments)]
fn merge_one(
    repo: &Repository,
    base: &Commit<'_>,
    head: &Commit<'_>,
    theirs: &Commit<'_>,
    plan: &contract::PlanDocument,
    time: git2::Time,
    module: &PlannedModule,
    branch: &str,
    level: usize,
) -> Result<Option<Oid>> {
    let ancestor = base.tree().map_err(Error::git("base tree"))?;
    let ours = head.tree().map_err(Error::git("head tree"))?;
    let their_tree = theirs.tree().map_err(Error::git("module tree"))?;
    let tree = match merge_disjoint(repo, &ancestor, &ours, &their_tree) {
        Ok(Some(tree)) => tree,
        // Both sides changed a path (or a file became a directory): libgit2's full
        // three-way merge decides, merging file contents where it can.
        Ok(None) | Err(_) => {
            // Module commits are exact renames plus new files: rename detection
            // (quadratic in the changes already merged) finds nothing more here.
            let mut options = git2::MergeOptions::new();
            options.find_renames(false);
            let mut index = repo
                .merge_trees(&ancestor, &ours, &their_tree, Some(&options))
                .map_err(Error::git(format!("merge {}", module.name)))?;
            if index.has_conflicts() {
                return Ok(None);
            }
            index
                .write_tree_to(repo)
                .map_err(Error::git(format!("write the merge of {}", module.name)))?
        }
    };
    let message = format!(
        "lapidary: merge {} into {branch} (level {level})\n\n{} -> {}\n",
        module.name, module.path, module.target
    );
    git::commit(repo, tree, &[head, theirs], &plan.author, time, &message).map(Some)
}

/// The three-way merge when no path changed on both sides differently (the usual
/// case: modules touch disjoint paths): `theirs`' changes against `base` applied to
/// `ours`, rewriting only the trees along the changed paths. `None` when a path
/// changed on both sides in different ways.
fn merge_disjoint(
    repo: &Repository,
    base: &git2::Tree<'_>,
    ours: &git2::Tree<'_>,
    theirs: &git2::Tree<'_>,
) -> std::result::Result<Option<Oid>, git2::Error> {
    let diff = repo.diff_tree_to_tree(Some(base), Some(theirs), None)?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    let entry_of = |file: git2::DiffFile<'_>| -> Option<(Oid, u32)> {
        file.exists().then(|| (file.id(), u32::from(file.mode())))
    };
    let mut changes = 0;
    for delta in diff.deltas() {
        let Some(path) = delta.new_file().path().or(delta.old_file().path()) else {
            return Ok(None);
        };
        let base_entry = entry_of(delta.old_file());
        let their_entry = entry_of(delta.new_file());
        let our_entry = match ours.get_path(path) {
            Ok(e) if e.kind() != Some(git2::ObjectType::Tree) => {
                Some((e.id(), u32::try_from(e.filemode()).unwrap_or(0)))
            }
            Ok(_) => return Ok(None),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        if our_entry == their_entry {
            continue;
        }
        if our_entry != base_entry {
            return Ok(None);
        }
        match their_entry {
            Some((oid, mode)) => {
                let Some(mode) = file_mode(mode) else {
                    return Ok(None);
                };
                update.upsert(path, oid, mode);
            }
            None => {
                update.remove(path);
            }
        }
        changes += 1;
    }
    if changes == 0 {
        return Ok(Some(ours.id()));
    }
    update.create_updated(repo, ours).map(Some)
}

fn file_mode(mode: u32) -> Option<git2::FileMode> {
    match mode {
        git::MODE_FILE => Some(git2::FileMode::Blob),
        git::MODE_EXEC => Some(git2::FileMode::BlobExecutable),
        git::MODE_LINK => Some(git2::FileMode::Link),
        git::MODE_GITLINK => Some(git2::FileMode::Commit),
        _ => None,
    }
}

/// Rewrites references to the `merged` modules' new places in every Python file of
/// `head`'s tree and commits that; `None` when nothing needed a change. Files that are
/// not UTF-8 text or do not parse are left alone, with a warning.
fn rewrite_repository(
    repo: &Repository,
    head: &Commit<'_>,
    merged: &[&PlannedModule],
    plan: &contract::PlanDocument,
    time: git2::Time,
    level: usize,
    warnings: &mut Vec<String>,
) -> Result<Option<Oid>> {
    let mut map = MoveMap::new();
    for m in merged {
        let _ = map.insert_path(&m.path, &m.target);
    }
    if map.is_empty() {
        return Ok(None);
    }
    let roots: Vec<String> = map.roots().map(str::to_owned).collect();
    let tree = head.tree().map_err(Error::git("head tree"))?;
    let mut edit = TreeEdit::from_tree(&tree)?;
    let mut files: Vec<(String, String, u32)> = Vec::new();
    for entry in edit.entries() {
        if !entry.path.ends_with(".py") || entry.mode == git::MODE_LINK {
            continue;
        }
        let blob = repo
            .find_blob(entry.oid)
            .map_err(Error::git(format!("read {}", entry.path)))?;
        let Ok(text) = std::str::from_utf8(blob.content()) else {
            warnings.push(format!(
                "{}: not UTF-8; references not rewritten",
                entry.path
            ));
            continue;
        };
        // Only files that mention a moved root can name a moved module.
        if text.contains('\0') || !roots.iter().any(|r| text.contains(r.as_str())) {
            continue;
        }
        files.push((entry.path, text.to_owned(), entry.mode));
    }
    let results = rewrite_files(&files, &map);
    let mut changed = 0usize;
    for ((path, _, mode), result) in files.iter().zip(results) {
        match result {
            Ok(rewrite) => {
                warnings.extend(rewrite.warnings);
                if rewrite.changed {
                    edit.write_file(repo, path, rewrite.text.as_bytes(), *mode)?;
                    changed += 1;
                }
            }
            Err(e) => warnings.push(format!("{path}: references not rewritten: {e}")),
        }
    }
    if changed == 0 {
        return Ok(None);
    }
    let new_tree = edit.write_tree(repo)?;
    let names: Vec<&str> = merged.iter().map(|m| m.name.as_str()).collect();
    let message = format!(
        "lapidary: rewrite references to level {level} modules\n\n{changed} file(s); modules: {}\n",
        names.join(", ")
    );
    git::commit(repo, new_tree, &[head], &plan.author, time, &message).map(Some)
}

/// fixImports on each file (in place: old path = new path), on every core.
fn rewrite_files(
    files: &[(String, String, u32)],
    map: &MoveMap,
) -> Vec<std::result::Result<python::ImportRewrite, python::PythonError>> {
    let one = |(path, text, _): &(String, String, u32)| python::fix_imports(text, path, path, map);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if files.len() < 32 || workers == 1 {
        return files.iter().map(one).collect();
    }
    let chunk = files.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let len = part.len();
                (
                    len,
                    scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(len, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| {
                            Err(python::PythonError::Parser {
                                file: String::new(),
                                reason: "a rewrite worker panicked".to_owned(),
                            })
                        })
                        .collect()
                })
            })
            .collect()
    })
}
