//! The pod contract: what the operator hands an integrator pod (the plan document and
//! a few environment variables) and what the pod hands back (one result document on
//! its termination-message path, and its exit code).
//!
//! Commands the Jobs run (the integrator's CLI):
//! - `lapidary-integrator prepare --plan PLAN`
//! - `lapidary-integrator integrate --plan PLAN --level K --base COMMIT`
//!   (module = position `MODULE_INDEXES[JOB_COMPLETION_INDEX]` of level K)
//! - `lapidary-integrator merge --plan PLAN --level K --base COMMIT`
//!   (merges the modules at positions `MODULE_INDEXES` of level K, in that order)
//!
//! Commits are deterministic: author and committer are the plan's `author`, and their
//! time is the committer time of the `--base` commit, so the cluster and local mode
//! produce identical commit ids for the same input.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crd::{AuthorSpec, IntegrationRunSpec, Step};
use crate::planner::{self, Plan, PlanError, PlannedModule};

/// Version of the plan and result documents.
pub const CONTRACT_VERSION: u32 = 1;
/// Exit code for "permanent failure, do not retry" (bad input, target exists,
/// conflict). The level Jobs' pod failure policy fails the index at once on it.
pub const EXIT_PERMANENT: i32 = 3;
/// Largest result document, in bytes (the kubelet keeps at most 4 KiB of a
/// termination message).
pub const MAX_RESULT_BYTES: usize = 4096;
/// Key of the plan document in the `<run>-plan` ConfigMap.
pub const PLAN_KEY: &str = "plan.json";
/// Where the plan ConfigMap is mounted in the pods.
pub const PLAN_DIR: &str = "/etc/lapidary/plan";
/// Where the credentials Secret is mounted in the pods (when set).
pub const CREDENTIALS_DIR: &str = "/etc/lapidary/credentials";
/// The pods' writable work directory (an emptyDir).
pub const WORK_DIR: &str = "/work";
/// Default termination-message path.
pub const DEFAULT_RESULT_PATH: &str = "/dev/termination-log";
/// Comma-separated positions, within the level, of the modules a Job works on.
/// Completion index `i` of a level Job works on the `i`-th position listed.
pub const ENV_MODULE_INDEXES: &str = "LAPIDARY_MODULE_INDEXES";
/// Set by Kubernetes in Indexed Jobs' pods.
pub const ENV_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Directory holding the credentials (`token`, `ssh-privatekey`, `known_hosts`).
pub const ENV_CREDENTIALS_DIR: &str = "LAPIDARY_CREDENTIALS_DIR";

/// Full path of the plan document inside a pod.
pub fn plan_path() -> String {
    format!("{PLAN_DIR}/{PLAN_KEY}")
}

/// The branch a module's commit is pushed to. Not `<integrationBranch>/<module>`:
/// git cannot hold both `a/b` and `a/b/c` as branches.
pub fn module_branch(integration_branch: &str, module: &str) -> String {
    format!("{integration_branch}-modules/{module}")
}

/// Parses a comma-separated list of positions (the `LAPIDARY_MODULE_INDEXES` format).
pub fn parse_indexes(text: &str) -> Result<Vec<usize>, ContractError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| ContractError::BadIndexes(text.chars().take(64).collect()))
        })
        .collect()
}

/// Formats positions as `LAPIDARY_MODULE_INDEXES` expects.
pub fn format_indexes(indexes: &[usize]) -> String {
    indexes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Errors of the contract documents.
#[derive(Debug, Error)]
pub enum ContractError {
    /// The run's modules cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The pod wrote nothing.
    #[error("the pod wrote no result document")]
    NoResult,
    /// The pod wrote something that is not a result document.
    #[error("the pod's result document is malformed ({reason}); it begins: {start:?}")]
    MalformedResult {
        /// Parser message.
        reason: String,
        /// The first characters written.
        start: String,
    },
    /// The plan document cannot be read.
    #[error("the plan document is malformed: {0}")]
    MalformedPlan(#[source] serde_json::Error),
    /// A bad `LAPIDARY_MODULE_INDEXES` value.
    #[error("LAPIDARY_MODULE_INDEXES is not a comma-separated list of numbers: {0:?}")]
    BadIndexes(String),
}

/// Repository coordinates in the plan (never credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRepository {
    /// Clone URL.
    pub url: String,
    /// Branch, tag or commit to start from.
    pub revision: String,
}

/// Everything a pod needs to know about the run; the `<run>-plan` ConfigMap's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument {
    /// Always [`CONTRACT_VERSION`].
    pub version: u32,
    /// Name of the run.
    pub run: String,
    /// The repository.
    pub repository: PlanRepository,
    /// The integration branch.
    pub integration_branch: String,
    /// Steps per module, in order.
    pub steps: Vec<Step>,
    /// Validation command, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Vec<String>>,
    /// Whether anything is pushed.
    pub push: bool,
    /// Commit author and committer.
    pub author: AuthorSpec,
    /// Modules and levels.
    pub plan: Plan,
}

impl PlanDocument {
    /// Plans `spec` for the run `run`.
    pub fn from_spec(run: &str, spec: &IntegrationRunSpec) -> Result<Self, ContractError> {
        let plan = planner::plan(&spec.modules)?;
        Ok(PlanDocument {
            version: CONTRACT_VERSION,
            run: run.to_owned(),
            repository: PlanRepository {
                url: spec.repository.url.clone(),
                revision: spec.repository.revision.clone(),
            },
            integration_branch: spec.integration_branch_or_default(run),
            steps: spec.steps.clone(),
            validate: spec.validate.as_ref().map(|v| v.command.clone()),
            push: spec.push,
            author: spec.author.clone().unwrap_or_default(),
            plan,
        })
    }

    /// Reads a plan document.
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        serde_json::from_str(text).map_err(ContractError::MalformedPlan)
    }

    /// The module a level Job's pod works on: position `indexes[completion]` of
    /// level `level` (identity when `indexes` is empty).
    pub fn module_for(
        &self,
        level: usize,
        indexes: &[usize],
        completion: usize,
    ) -> Option<&PlannedModule> {
        let positions = self.plan.levels.get(level)?;
        let within = if indexes.is_empty() {
            completion
        } else {
            *indexes.get(completion)?
        };
        self.plan.modules.get(*positions.get(within)?)
    }
}

/// Which kind of pod wrote a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// The prepare Job.
    Prepare,
    /// A level Job's pod, one module.
    Module,
    /// A merge Job.
    Merge,
}

/// How a pod's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// Not done; the exit code tells whether a retry may help.
    Failed,
    /// The module's changes conflict with the integration branch.
    Conflict,
}

/// Outcome and duration of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// Step name (`move`, `fixImports`, …, `validate`, `commit`, `push`, `fetch`, `merge`).
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Milliseconds it took.
    pub ms: u64,
}

/// What a pod reports. Written to the termination-message path as one JSON object of
/// at most [`MAX_RESULT_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultDocument {
    /// Always [`CONTRACT_VERSION`].
    pub version: u32,
    /// Who wrote it.
    pub role: Role,
    /// The module (role `module`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The level (roles `module` and `merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// How it ended.
    pub outcome: Outcome,
    /// Branch written (module branch, or the integration branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Commit written: the module's commit, the merged head, or the pinned base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Files changed by the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<u32>,
    /// Each step's outcome and duration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// Things a human should look at (e.g. string references to moved modules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Merge: modules whose branch conflicted and was left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Merge: conflicting modules not listed in `conflicts` for lack of room.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conflicts_omitted: u32,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ResultDocument {
    /// An empty document for `role` with `outcome`.
    pub fn new(role: Role, outcome: Outcome) -> Self {
        ResultDocument {
            version: CONTRACT_VERSION,
            role,
            module: None,
            level: None,
            outcome,
            branch: None,
            commit: None,
            files_changed: None,
            steps: Vec::new(),
            warnings: Vec::new(),
            conflicts: Vec::new(),
            conflicts_omitted: 0,
            error: None,
        }
    }

    /// Reads a termination message. With `FallbackToLogsOnError` a pod that died
    /// without writing one leaves its last log lines there instead: reported as
    /// malformed, with their beginning.
    pub fn parse(message: &str) -> Result<Self, ContractError> {
        let trimmed = message.trim();
        if trimmed.is_empty() {
            return Err(ContractError::NoResult);
        }
        serde_json::from_str(trimmed).map_err(|e| ContractError::MalformedResult {
            reason: e.to_string(),
            start: truncate_chars(trimmed, 200),
        })
    }

    /// Serializes to JSON of at most `limit` bytes: shortens the error, then drops
    /// warnings, steps and listed conflicts (counting them) until it fits. Always
    /// valid JSON.
    pub fn to_bounded_json(&self, limit: usize) -> String {
        let mut doc = self.clone();
        for w in &mut doc.warnings {
            *w = truncate_chars(w, 300);
        }
        if let Some(e) = &doc.error {
            doc.error = Some(truncate_chars(e, 1500));
        }
        let mut dropped_warnings = 0usize;
        loop {
            let mut candidate = doc.clone();
            if dropped_warnings > 0 {
                candidate
                    .warnings
                    .push(format!("… {dropped_warnings} more warnings"));
            }
            let json = serde_json::to_string(&candidate).unwrap_or_else(|_| String::from("{}"));
            if json.len() <= limit {
                return json;
            }
            if !doc.warnings.is_empty() {
                let drop = doc.warnings.len().div_ceil(2);
                doc.warnings.truncate(doc.warnings.len() - drop);
                dropped_warnings += drop;
            } else if let Some(e) = doc.error.as_ref().filter(|e| e.chars().count() > 201) {
                doc.error = Some(truncate_chars(e, 200));
            } else if !doc.conflicts.is_empty() {
                let keep = doc.conflicts.len() / 2;
                doc.conflicts_omitted += (doc.conflicts.len() - keep) as u32;
                doc.conflicts.truncate(keep);
            } else if !doc.steps.is_empty() {
                doc.steps.clear();
            } else if dropped_warnings > 0 {
                dropped_warnings = 0;
            } else {
                // Only short fixed fields are left; a limit this small is a caller bug.
                return json;
            }
        }
    }
}

/// The first `max` characters of `text`, with `…` when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ModuleSpec, RepositorySpec};

    fn spec() -> IntegrationRunSpec {
        serde_yaml::from_str(
            r#"
repository: {url: "git://127.0.0.1/repo.git"}
modules:
  - {name: a, path: candidate/a, target: lukhas/a}
  - {name: b, path: candidate/b.py, target: lukhas/b.py, dependsOn: [a]}
  - {name: c, path: candidate/c, target: lukhas/c}
"#,
        )
        .unwrap()
    }

    #[test]
    fn spec_defaults_apply() {
        let s = spec();
        assert_eq!(s.parallelism, 50);
        assert_eq!(s.retries, 2);
        assert!(s.push);
        assert_eq!(s.steps, Step::ALL.to_vec());
        assert_eq!(s.repository.revision, "main");
        let _ = RepositorySpec {
            url: String::new(),
            revision: String::new(),
            credentials_secret: None,
        };
        let _: Option<ModuleSpec> = None;
    }

    #[test]
    fn plan_document_round_trips_and_finds_modules() {
        let doc = PlanDocument::from_spec("run1", &spec()).unwrap();
        assert_eq!(doc.integration_branch, "integrate/run1");
        let back = PlanDocument::parse(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(doc, back);
        assert_eq!(doc.module_for(0, &[], 1).unwrap().name, "c");
        assert_eq!(doc.module_for(0, &[1], 0).unwrap().name, "c");
        assert_eq!(doc.module_for(1, &[], 0).unwrap().name, "b");
        assert!(doc.module_for(0, &[5], 0).is_none());
        assert!(doc.module_for(9, &[], 0).is_none());
    }

    #[test]
    fn indexes_round_trip_and_refuse_garbage() {
        assert_eq!(parse_indexes("0, 2,5").unwrap(), vec![0, 2, 5]);
        assert_eq!(parse_indexes("").unwrap(), Vec::<usize>::new());
        assert_eq!(format_indexes(&[3, 1]), "3,1");
        assert!(parse_indexes("1,x").is_err());
    }

    #[test]
    fn results_parse_or_explain() {
        assert!(matches!(
            ResultDocument::parse("  \n"),
            Err(ContractError::NoResult)
        ));
        let err = ResultDocument::parse("panicked at src/main.rs").unwrap_err();
        assert!(err.to_string().contains("malformed"));
        assert!(err.to_string().contains("panicked at"));
        let mut doc = ResultDocument::new(Role::Module, Outcome::Succeeded);
        doc.module = Some("a".into());
        let back = ResultDocument::parse(&doc.to_bounded_json(MAX_RESULT_BYTES)).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn bounded_json_stays_valid_and_small() {
        let mut doc = ResultDocument::new(Role::Merge, Outcome::Failed);
        doc.error = Some("é".repeat(10_000));
        doc.warnings = (0..500)
            .map(|i| format!("warning {i} {}", "x".repeat(100)))
            .collect();
        doc.conflicts = (0..1000).map(|i| format!("module-{i:04}")).collect();
        doc.steps = (0..50)
            .map(|i| StepResult {
                name: format!("s{i}"),
                outcome: Outcome::Succeeded,
                ms: i,
            })
            .collect();
        let json = doc.to_bounded_json(MAX_RESULT_BYTES);
        assert!(json.len() <= MAX_RESULT_BYTES, "{} bytes", json.len());
        let back = ResultDocument::parse(&json).unwrap();
        assert_eq!(back.conflicts.len() as u32 + back.conflicts_omitted, 1000);
        assert!(back.error.unwrap().ends_with('…'));
    }

    #[test]
    fn module_branches_do_not_nest_under_the_integration_branch() {
        assert_eq!(
            module_branch("integrate/run1", "a"),
            "integrate/run1-modules/a"
        );
    }
}
