//! `prepare`: pins the revision to a commit, commits the published JSON Schema of the
//! module documents on top (when the run has the schema step), and creates the
//! integration branch there. Idempotent: a branch already at the pinned commit or at
//! what an earlier attempt pushed is fine; anywhere else is a permanent failure.

use git2::{Oid, Repository};
use lapidary_api::contract::ResultDocument;
use lapidary_api::crd::Step;

use crate::cli::Context;
use crate::error::{Error, Result};
use crate::git::{self, RemoteRepo, TreeEdit};
use crate::result::step;

/// Where the pinned revision is kept in the work repository.
const PIN_REF: &str = "refs/lapidary/pin";

/// Runs `prepare`. On success `doc.commit` is the integration branch's head, the
/// commit level 0 starts from (the pinned commit, plus the schema commit when the run
/// has the schema step); a warning names the pinned commit.
pub fn prepare(ctx: &Context, doc: &mut ResultDocument) -> Result<()> {
    let plan = &ctx.plan;
    let branch = plan.integration_branch.clone();
    doc.branch = Some(branch.clone());
    let repo = ctx.remote.open_work_repo(&ctx.workdir)?;
    let (pinned, remote_branch) = step(doc, "fetch", || {
        let heads = ctx.remote.list(&repo)?;
        let pinned = pin(&repo, &ctx.remote, &heads, &plan.repository.revision)?;
        let remote_branch = heads
            .iter()
            .find(|(name, _)| *name == format!("refs/heads/{branch}"))
            .map(|(_, oid)| *oid);
        Ok((pinned, remote_branch))
    })?;
    doc.warnings.push(format!(
        "revision {} pinned to {pinned}",
        plan.repository.revision
    ));
    let head = step(doc, "schema", || head_commit(&repo, ctx, pinned))?;
    doc.commit = Some(head.to_string());
    match remote_branch {
        Some(found) if found == head => {
            tracing::info!(%branch, commit = %head, "integration branch already in place");
            Ok(())
        }
        Some(found) if found != pinned => Err(Error::BranchElsewhere {
            branch,
            found: found.to_string(),
            expected: if head == pinned {
                format!("the pinned revision {pinned}")
            } else {
                format!("the pinned revision {pinned} or {head}")
            },
        }),
        // Absent, or at the pinned commit (fast-forward to the schema commit).
        _ => {
            if !plan.push {
                doc.warnings
                    .push("push is false: nothing was pushed".to_owned());
                return Ok(());
            }
            step(doc, "push", || {
                git::set_branch(&repo, &branch, head)?;
                ctx.remote
                    .push(&repo, &[format!("refs/heads/{branch}:refs/heads/{branch}")])
            })
        }
    }
}

/// Resolves `revision` (a full commit id, a full reference name, a branch, a tag or
/// `HEAD`) on the remote and fetches it.
fn pin(
    repo: &Repository,
    remote: &RemoteRepo,
    heads: &[(String, Oid)],
    revision: &str,
) -> Result<Oid> {
    let unknown = || Error::UnknownRevision {
        revision: revision.to_owned(),
        url: remote.display_url(),
    };
    let candidates = [
        revision.to_owned(),
        format!("refs/heads/{revision}"),
        format!("refs/tags/{revision}"),
    ];
    let by_name = candidates
        .iter()
        .find(|c| heads.iter().any(|(name, _)| name == *c))
        .cloned();
    let reference = match (by_name, git::parse_oid(revision)) {
        (Some(name), _) => name,
        (None, Some(oid)) => {
            // A commit id: fetch a reference that points at it, else every branch.
            if let Some((name, _)) = heads
                .iter()
                .find(|(name, o)| *o == oid && !name.ends_with("^{}") && name != "HEAD")
            {
                name.clone()
            } else {
                remote.fetch(repo, &["+refs/heads/*:refs/lapidary/all/*".to_owned()], 0)?;
                return repo.find_commit(oid).map(|c| c.id()).map_err(|_| unknown());
            }
        }
        (None, None) => return Err(unknown()),
    };
    remote.fetch(repo, &[format!("+{reference}:{PIN_REF}")], 1)?;
    let object = repo
        .revparse_single(PIN_REF)
        .map_err(Error::git("read the pinned revision"))?;
    let commit = object.peel_to_commit().map_err(|_| unknown())?;
    Ok(commit.id())
}

/// The integration branch's starting commit: `pinned`, plus a commit adding the JSON
/// Schema of the module documents when the run has the schema step and the file is
/// not already there.
fn head_commit(repo: &Repository, ctx: &Context, pinned: Oid) -> Result<Oid> {
    if !ctx.plan.steps.contains(&Step::Schema) {
        return Ok(pinned);
    }
    let base = repo
        .find_commit(pinned)
        .map_err(Error::git("find pinned commit"))?;
    let tree = base.tree().map_err(Error::git("read pinned tree"))?;
    let mut edit = TreeEdit::from_tree(&tree)?;
    let path = crate::python::schema_schema_path();
    let text = serde_json::to_string_pretty(&crate::python::schema_json_schema())
        .map_err(|e| Error::Input(format!("the module JSON Schema: {e}")))?;
    let changed = edit.write_file(repo, path, format!("{text}\n").as_bytes(), git::MODE_FILE)?;
    if !changed {
        return Ok(pinned);
    }
    let new_tree = edit.write_tree(repo)?;
    git::commit(
        repo,
        new_tree,
        &[&base],
        &ctx.plan.author,
        git::commit_time(&base),
        &format!("lapidary: add the module schema ({path})"),
    )
}
