//! The `IntegrationRun` custom resource: what a user applies, and the status the
//! operator reports back. Doc comments here are what `kubectl explain` shows.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the API group.
pub const GROUP: &str = "lapidary.dev";
/// Version of the API.
pub const VERSION: &str = "v1alpha1";

/// Highest number of modules one run may hold.
pub const MAX_MODULES: usize = 10_000;

/// An IntegrationRun integrates many modules of one git repository in parallel: each
/// module is moved to its target, its imports are fixed and its schema, test stub and
/// docs are written, level by level in dependency order, and every module's branch is
/// merged into an integration branch.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lapidary.dev",
    version = "v1alpha1",
    kind = "IntegrationRun",
    plural = "integrationruns",
    shortname = "ir",
    namespaced,
    status = "IntegrationRunStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Level","type":"string","jsonPath":".status.level"}"#,
    printcolumn = r#"{"name":"Succeeded","type":"integer","jsonPath":".status.summary.succeeded"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.summary.failed"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","jsonPath":".status.summary.total"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRunSpec {
    /// The git repository to integrate into.
    pub repository: RepositorySpec,

    /// Branch that receives every integrated module. Defaults to `integrate/<run name>`.
    /// Each module is first committed on `<integrationBranch>/<module>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub integration_branch: Option<String>,

    /// The modules to integrate: where each one is now, where it goes and which other
    /// modules of this list it depends on. Module names are unique.
    #[schemars(length(min = 1, max = 10000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub modules: Vec<ModuleSpec>,

    /// Built-in steps run for every module, in this order.
    #[serde(default = "default_steps")]
    #[schemars(length(max = 5))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub steps: Vec<Step>,

    /// An optional command run in the module's worktree after the steps; the module
    /// fails when it exits non-zero. The integrator image must contain the program
    /// (build your own image on top of lapidary's to add e.g. Python).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<ValidateSpec>,

    /// Pods of one level that run at once.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: i32,

    /// Retries per module after a failed attempt (the Job's backoffLimitPerIndex).
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,

    /// Stop the run once more than this many modules have failed: no further level
    /// starts and the run ends Failed. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub max_failed_modules: Option<i32>,

    /// Push the module branches and the integration branch. `false` is a dry run:
    /// nothing leaves the pods.
    #[serde(default = "default_true")]
    pub push: bool,

    /// Integrator image for this run's pods. Defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Pull policy of the integrator image (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub image_pull_policy: Option<String>,

    /// Compute resources of every integrator container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Author and committer of the commits the run makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<AuthorSpec>,

    /// Suspend the run: the running Job's pods are stopped and nothing new starts
    /// until this is set back to false.
    #[serde(default)]
    pub suspend: bool,
}

/// Where the code is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// Clone URL: `https://`, `ssh://` (or `user@host:path`), `git://` or `file://`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Branch, tag or commit to start from. Pinned to a commit when the run starts.
    #[serde(default = "default_revision")]
    #[schemars(length(min = 1, max = 256))]
    pub revision: String,

    /// Name of a Secret in the run's namespace with the credentials: key `token` for
    /// https, or `ssh-privatekey` and `known_hosts` for ssh. Mounted only into the
    /// integrator pods; never read by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

/// One module to integrate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.path != self.target").message("path and target must differ"))]
pub struct ModuleSpec {
    /// Unique name of the module; also the last part of its branch name.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"))]
    pub name: String,

    /// Where the module is now: a file or directory, relative to the repository root.
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,

    /// Where the module goes, relative to the repository root.
    #[schemars(length(min = 1, max = 1024))]
    pub target: String,

    /// Names of modules of this run that must be integrated before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub depends_on: Vec<String>,
}

/// A built-in integration step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Rename the file or directory to its target, as a git rename.
    Move,
    /// Rewrite Python imports that name moved modules.
    FixImports,
    /// Write a JSON document describing the module.
    Schema,
    /// Write a smoke test that imports the module and checks its public names.
    TestStub,
    /// Write a Markdown page from the module's docstrings.
    Docs,
}

impl Step {
    /// Every built-in step, in the order they run by default.
    pub const ALL: [Step; 5] = [
        Step::Move,
        Step::FixImports,
        Step::Schema,
        Step::TestStub,
        Step::Docs,
    ];

    /// The name used in the spec and in result documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Move => "move",
            Step::FixImports => "fixImports",
            Step::Schema => "schema",
            Step::TestStub => "testStub",
            Step::Docs => "docs",
        }
    }
}

/// A validation command.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValidateSpec {
    /// Program and arguments, run in the repository's worktree (no shell).
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
}

/// Who the commits are by.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorSpec {
    /// Author name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Author e-mail address.
    #[schemars(length(min = 1, max = 256))]
    pub email: String,
}

impl Default for AuthorSpec {
    fn default() -> Self {
        AuthorSpec {
            name: "lapidary".to_owned(),
            email: "lapidary@lapidary.dev".to_owned(),
        }
    }
}

fn default_steps() -> Vec<Step> {
    Step::ALL.to_vec()
}
fn default_parallelism() -> i32 {
    50
}
fn default_retries() -> i32 {
    2
}
fn default_true() -> bool {
    true
}
fn default_revision() -> String {
    "main".to_owned()
}

impl IntegrationRunSpec {
    /// The integration branch, with the default applied.
    pub fn integration_branch_or_default(&self, run_name: &str) -> String {
        self.integration_branch
            .clone()
            .unwrap_or_else(|| format!("integrate/{run_name}"))
    }
}

/// Phase of a run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RunPhase {
    /// Accepted, nothing started yet.
    #[default]
    Pending,
    /// The prepare Job pins the revision and creates the integration branch.
    Preparing,
    /// A level's Job runs its modules.
    Running,
    /// A level's merge Job merges its module branches.
    Merging,
    /// Every level ran and the final merge pushed the integration branch.
    Succeeded,
    /// The run stopped: see `message` and the Degraded condition.
    Failed,
    /// `spec.suspend` is true.
    Suspended,
}

impl RunPhase {
    /// True once the run can no longer change.
    pub fn is_finished(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed)
    }
}

/// Phase of one module.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModulePhase {
    /// Waiting for its level.
    #[default]
    Pending,
    /// A pod works on it.
    Running,
    /// Its branch was pushed (and, once its level merged, integrated).
    Succeeded,
    /// Every attempt failed, or it failed permanently.
    Failed,
    /// Not run because a dependency failed, conflicted or was skipped.
    Skipped,
    /// Its branch conflicted with the integration branch and was left out.
    Conflict,
}

impl ModulePhase {
    /// True when the module will never be integrated.
    pub fn is_lost(self) -> bool {
        matches!(
            self,
            ModulePhase::Failed | ModulePhase::Skipped | ModulePhase::Conflict
        )
    }
}

/// What the operator observed of a run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRunStatus {
    /// Where the run is.
    #[serde(default)]
    pub phase: RunPhase,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Human-readable summary of the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The commit `spec.repository.revision` was pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// The integration branch's commit after the latest merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_commit: Option<String>,
    /// The branch that receives the modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_branch: Option<String>,
    /// When the run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the run finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Index of the level being run or merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_level: Option<i32>,
    /// Progress through the levels for display, e.g. `2/7` (levels started / levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// One entry per level of the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<LevelStatus>,
    /// One entry per module, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleStatus>,
    /// Module counts by phase.
    #[serde(default)]
    pub summary: Summary,
    /// Ready, Progressing, Degraded and SpecValid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One level of the plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LevelStatus {
    /// Position of the level, from 0.
    pub index: i32,
    /// Modules in the level.
    pub modules: i32,
    /// Name of the level's Job, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Pending, Running, Merging, Succeeded, Failed or Skipped.
    #[serde(default)]
    pub phase: LevelPhase,
    /// Modules of the level that succeeded.
    #[serde(default)]
    pub succeeded: i32,
    /// Modules of the level that failed.
    #[serde(default)]
    pub failed: i32,
    /// Name of the level's merge Job, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_job: Option<String>,
    /// The integration branch's commit after this level's merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_commit: Option<String>,
}

/// Phase of one level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LevelPhase {
    /// Not started.
    #[default]
    Pending,
    /// Its Job runs.
    Running,
    /// Its merge Job runs.
    Merging,
    /// Merged.
    Succeeded,
    /// Its Job or merge failed.
    Failed,
    /// Nothing in it could run.
    Skipped,
}

/// One module's state. Kept small: a run may hold 10,000 of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    /// Module name.
    pub name: String,
    /// Level of the module in the plan.
    pub level: i32,
    /// Pending, Running, Succeeded, Failed, Skipped or Conflict.
    #[serde(default)]
    pub phase: ModulePhase,
    /// Pod attempts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: i32,
    /// Commit on the module's branch `<integrationBranch>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Files the module's commit changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<i32>,
    /// Why the module failed, was skipped or conflicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Module counts by phase.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// All modules.
    #[serde(default)]
    pub total: i32,
    /// Integrated.
    #[serde(default)]
    pub succeeded: i32,
    /// Failed.
    #[serde(default)]
    pub failed: i32,
    /// Skipped because a dependency was lost.
    #[serde(default)]
    pub skipped: i32,
    /// Left out because their merge conflicted.
    #[serde(default)]
    pub conflicts: i32,
    /// Being worked on.
    #[serde(default)]
    pub running: i32,
    /// Not started.
    #[serde(default)]
    pub pending: i32,
}

/// A condition, shaped like metav1.Condition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Progressing, Degraded or SpecValid.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// Machine-readable reason in CamelCase.
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_carries_schema_rules() {
        let crd = serde_json::to_string(&IntegrationRun::crd()).unwrap();
        for needle in [
            r#""shortNames":["ir"]"#,
            r#""x-kubernetes-list-map-keys":["name"]"#,
            r#""rule":"self.path != self.target""#,
            r#""maximum":1000"#,
            r#""maxItems":10000"#,
            r#""pattern":"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$""#,
            r#""jsonPath":".status.level""#,
            r#""status":{}"#,
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }
}
