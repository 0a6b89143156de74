//! Rendering of a run's children: the plan ConfigMap and the prepare, level and merge
//! Jobs. Pure: the same run and inputs always give the same objects, so applying them
//! again changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use lapidary_api::contract::{self, PlanDocument};
use lapidary_api::IntegrationRunSpec;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The one field manager every write of the operator uses.
pub const FIELD_MANAGER: &str = "lapidary-operator";
/// Default integrator image when neither the run nor the flags name one.
pub const DEFAULT_IMAGE: &str = "lapidary/integrator:0.1.0";
/// User and group the integrator runs as (distroless "nonroot").
pub const RUN_AS_USER: i64 = 65532;
/// Backoff limit of the prepare and merge Jobs: they are retried a little, as a whole.
pub const SINGLE_JOB_BACKOFF_LIMIT: i32 = 2;
/// Most modules that failing indexes of one Job may count (the Job API's limit on
/// `maxFailedIndexes`).
pub const MAX_FAILED_INDEXES_LIMIT: i32 = 100_000;

/// Label keys.
pub mod labels {
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the run.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/component`: prepare, level, merge or plan.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The run a child belongs to; pods are mapped back to their run through it.
    pub const RUN: &str = "lapidary.dev/run";
    /// The level a child works on.
    pub const LEVEL: &str = "lapidary.dev/level";
    /// prepare, level, merge or plan.
    pub const ROLE: &str = "lapidary.dev/role";
    /// Set by Kubernetes on the pods of Indexed Jobs.
    pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
    /// Value of `app.kubernetes.io/managed-by`, and selector of everything watched.
    pub const MANAGED_BY_VALUE: &str = "lapidary-operator";
    /// Selector of every child the operator manages.
    pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=lapidary-operator";
}

/// What kind of child an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildRole {
    /// The plan ConfigMap.
    Plan,
    /// The prepare Job.
    Prepare,
    /// A level Job.
    Level,
    /// A merge Job.
    Merge,
}

impl ChildRole {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildRole::Plan => "plan",
            ChildRole::Prepare => "prepare",
            ChildRole::Level => "level",
            ChildRole::Merge => "merge",
        }
    }
}

/// Name of the plan ConfigMap.
pub fn plan_configmap_name(run: &str) -> String {
    format!("{run}-plan")
}
/// Name of the prepare Job.
pub fn prepare_job_name(run: &str) -> String {
    format!("{run}-prepare")
}
/// Name of level `k`'s Job.
pub fn level_job_name(run: &str, k: usize) -> String {
    format!("{run}-level-{k}")
}
/// Name of level `k`'s merge Job.
pub fn merge_job_name(run: &str, k: usize) -> String {
    format!("{run}-merge-{k}")
}

/// Longest Job name that still leaves room for `-<index>` in an Indexed Job's pod
/// hostnames (63 characters).
fn check_name_lengths(run: &str, plan: &PlanDocument) -> Result<()> {
    if run.len() > 63 {
        return Err(Error::InvalidSpec(format!(
            "run name {run:?} is longer than 63 characters; it is used as a label value"
        )));
    }
    let levels = plan.plan.levels.len();
    for (k, members) in plan.plan.levels.iter().enumerate() {
        let job = level_job_name(run, k);
        let widest_index = members.len().saturating_sub(1).to_string().len();
        if job.len() + 1 + widest_index > 63 {
            return Err(Error::InvalidSpec(format!(
                "run name {run:?} is too long: Job {job:?} and its pod hostnames must fit in 63 characters; use a shorter name"
            )));
        }
    }
    let merge = merge_job_name(run, levels.saturating_sub(1));
    if merge.len() > 63 {
        return Err(Error::InvalidSpec(format!(
            "run name {run:?} is too long: Job {merge:?} must fit in 63 characters"
        )));
    }
    Ok(())
}

/// Everything rendering needs to know about the run, apart from its spec.
#[derive(Debug, Clone)]
pub struct RunRef<'a> {
    /// Run name.
    pub name: &'a str,
    /// Run namespace.
    pub namespace: &'a str,
    /// Run uid, for owner references.
    pub uid: &'a str,
    /// The run's spec.
    pub spec: &'a IntegrationRunSpec,
    /// The operator's default integrator image.
    pub default_image: &'a str,
}

impl RunRef<'_> {
    /// Checks that every child name fits Kubernetes' limits.
    pub fn validate_names(&self, plan: &PlanDocument) -> Result<()> {
        check_name_lengths(self.name, plan)
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!(
                "{}/{}",
                lapidary_api::crd::GROUP,
                lapidary_api::crd::VERSION
            ),
            kind: "IntegrationRun".to_owned(),
            name: self.name.to_owned(),
            uid: self.uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// The labels of a child (and of its pods).
    pub fn labels(&self, role: ChildRole, level: Option<usize>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        l.insert(labels::NAME.to_owned(), "lapidary".to_owned());
        l.insert(labels::INSTANCE.to_owned(), self.name.to_owned());
        l.insert(labels::COMPONENT.to_owned(), role.as_str().to_owned());
        l.insert(
            labels::MANAGED_BY.to_owned(),
            labels::MANAGED_BY_VALUE.to_owned(),
        );
        l.insert(labels::RUN.to_owned(), self.name.to_owned());
        l.insert(labels::ROLE.to_owned(), role.as_str().to_owned());
        if let Some(k) = level {
            l.insert(labels::LEVEL.to_owned(), k.to_string());
        }
        l
    }

    fn metadata(&self, name: String, role: ChildRole, level: Option<usize>) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(role, level),
            "ownerReferences": [self.owner_reference()],
        })
    }

    /// The `<run>-plan` ConfigMap holding the plan document.
    pub fn plan_configmap(&self, plan: &PlanDocument) -> Result<ConfigMap> {
        let text = serde_json::to_string_pretty(plan).map_err(Error::Serialize)?;
        let value = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata(plan_configmap_name(self.name), ChildRole::Plan, None),
            "immutable": false,
            "data": { contract::PLAN_KEY: text },
        });
        serde_json::from_value(value).map_err(Error::Serialize)
    }

    /// The prepare Job: pins the revision and creates the integration branch.
    pub fn prepare_job(&self) -> Result<Job> {
        let args = vec![
            "prepare".to_owned(),
            "--plan".to_owned(),
            contract::plan_path(),
        ];
        self.single_job(
            prepare_job_name(self.name),
            ChildRole::Prepare,
            None,
            args,
            None,
        )
    }

    /// Level `k`'s merge Job: merges the modules at `positions` (positions within the
    /// level, in plan order) onto `base`.
    pub fn merge_job(&self, k: usize, base: &str, positions: &[usize]) -> Result<Job> {
        let args = level_args("merge", k, base);
        self.single_job(
            merge_job_name(self.name, k),
            ChildRole::Merge,
            Some(k),
            args,
            Some(contract::format_indexes(positions)),
        )
    }

    fn single_job(
        &self,
        name: String,
        role: ChildRole,
        level: Option<usize>,
        args: Vec<String>,
        indexes: Option<String>,
    ) -> Result<Job> {
        let value = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(name, role, level),
            "spec": {
                "backoffLimit": SINGLE_JOB_BACKOFF_LIMIT,
                "completions": 1,
                "parallelism": 1,
                "suspend": self.spec.suspend,
                "podFailurePolicy": single_pod_failure_policy(),
                "template": self.pod_template(role, level, args, indexes),
            },
        });
        serde_json::from_value(value).map_err(Error::Serialize)
    }

    /// Level `k`'s Indexed Job: one completion per position in `positions` (the
    /// level's runnable modules still to do), `max_failed` failed modules allowed.
    pub fn level_job(
        &self,
        k: usize,
        base: &str,
        positions: &[usize],
        max_failed: Option<i32>,
    ) -> Result<Job> {
        let completions = i32::try_from(positions.len())
            .map_err(|_| Error::InvalidSpec("too many modules in one level".to_owned()))?;
        let args = level_args("integrate", k, base);
        let mut spec = json!({
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": self.spec.parallelism.clamp(1, completions.max(1)),
            "backoffLimitPerIndex": self.spec.retries.max(0),
            "suspend": self.spec.suspend,
            "podFailurePolicy": pod_failure_policy(),
            "template": self.pod_template(
                ChildRole::Level,
                Some(k),
                args,
                Some(contract::format_indexes(positions)),
            ),
        });
        if let Some(limit) = max_failed {
            // The Job API wants 0 <= maxFailedIndexes <= min(completions, 100000).
            let clamped = limit.clamp(0, completions.min(MAX_FAILED_INDEXES_LIMIT));
            spec["maxFailedIndexes"] = json!(clamped);
        }
        let value = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(level_job_name(self.name, k), ChildRole::Level, Some(k)),
            "spec": spec,
        });
        serde_json::from_value(value).map_err(Error::Serialize)
    }

    fn pod_template(
        &self,
        role: ChildRole,
        level: Option<usize>,
        args: Vec<String>,
        indexes: Option<String>,
    ) -> Value {
        let mut env = vec![json!({"name": "HOME", "value": contract::WORK_DIR})];
        if let Some(ix) = indexes {
            env.push(json!({"name": contract::ENV_MODULE_INDEXES, "value": ix}));
        }
        let mut mounts = vec![
            json!({"name": "plan", "mountPath": contract::PLAN_DIR, "readOnly": true}),
            json!({"name": "work", "mountPath": contract::WORK_DIR}),
            json!({"name": "tmp", "mountPath": "/tmp"}),
        ];
        let mut volumes = vec![
            json!({"name": "plan", "configMap": {"name": plan_configmap_name(self.name), "defaultMode": 0o444}}),
            json!({"name": "work", "emptyDir": {}}),
            json!({"name": "tmp", "emptyDir": {}}),
        ];
        if let Some(secret) = &self.spec.repository.credentials_secret {
            mounts.push(json!({"name": "credentials", "mountPath": contract::CREDENTIALS_DIR, "readOnly": true}));
            // 0400 is owner-only, and the files belong to root; with fsGroup the kubelet
            // gives them the pod's group and adds group read, so uid 65532 can read them.
            volumes.push(json!({"name": "credentials", "secret": {"secretName": secret, "defaultMode": 0o400}}));
        }
        let image = self
            .spec
            .image
            .as_deref()
            .unwrap_or(self.default_image)
            .to_owned();
        let mut container = json!({
            "name": "integrator",
            "image": image,
            "command": ["lapidary-integrator"],
            "args": args,
            "env": env,
            "volumeMounts": mounts,
            "terminationMessagePath": contract::DEFAULT_RESULT_PATH,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        });
        if let Some(policy) = &self.spec.image_pull_policy {
            container["imagePullPolicy"] = json!(policy);
        }
        if let Some(resources) = &self.spec.resources {
            container["resources"] = json!(resources);
        }
        json!({
            "metadata": {"labels": self.labels(role, level)},
            "spec": {
                // Required by podFailurePolicy; retries are new pods, counted per index.
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": RUN_AS_USER,
                    "runAsGroup": RUN_AS_USER,
                    "fsGroup": RUN_AS_USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": volumes,
            },
        })
    }
}

/// Disruptions (eviction, preemption, node drain) are not the module's fault: ignore
/// them; a permanent failure fails the index at once, without retries.
fn pod_failure_policy() -> Value {
    json!({
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex", "onExitCodes": {"containerName": "integrator", "operator": "In", "values": [contract::EXIT_PERMANENT]}},
        ]
    })
}

/// The same rules for the non-indexed Jobs, where `FailIndex` is not allowed.
fn single_pod_failure_policy() -> Value {
    json!({
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "integrator", "operator": "In", "values": [contract::EXIT_PERMANENT]}},
        ]
    })
}

/// The `LAPIDARY_MODULE_INDEXES` a rendered (or observed) Job carries, if any.
pub fn job_module_indexes(job: &Job) -> Option<Result<Vec<usize>>> {
    let env = job
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?;
    let value = env
        .iter()
        .find(|e| e.name == contract::ENV_MODULE_INDEXES)?
        .value
        .as_deref()
        .unwrap_or("");
    Some(contract::parse_indexes(value).map_err(|e| Error::Contract(e.to_string())))
}

/// Arguments of the integrator's per-level commands (`integrate`, `merge`).
fn level_args(command: &str, k: usize, base: &str) -> Vec<String> {
    vec![
        command.to_owned(),
        "--plan".to_owned(),
        contract::plan_path(),
        "--level".to_owned(),
        k.to_string(),
        "--base".to_owned(),
        base.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapidary_api::IntegrationRunSpec;

    fn spec(credentials: bool) -> IntegrationRunSpec {
        let mut s: IntegrationRunSpec = serde_yaml::from_str(
            r#"
repository: {url: "https://git.example.com/org/repo.git", revision: main}
modules:
  - {name: fold, path: candidate/memory/fold, target: lukhas/memory/fold}
  - {name: dream, path: candidate/dream, target: lukhas/dream, dependsOn: [fold]}
  - {name: vision, path: candidate/vision.py, target: lukhas/vision.py}
parallelism: 10
retries: 2
maxFailedModules: 5
imagePullPolicy: IfNotPresent
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}
"#,
        )
        .unwrap();
        if credentials {
            s.repository.credentials_secret = Some("git-creds".to_owned());
        }
        s
    }

    fn run(spec: &IntegrationRunSpec) -> RunRef<'_> {
        RunRef {
            name: "gems",
            namespace: "lapidary",
            uid: "0b5c0d2e-1111-2222-3333-444455556666",
            spec,
            default_image: DEFAULT_IMAGE,
        }
    }

    const BASE: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn configmap_snapshot() {
        let s = spec(false);
        let plan = PlanDocument::from_spec("gems", &s).unwrap();
        let cm = run(&s).plan_configmap(&plan).unwrap();
        let text = &cm.data.as_ref().unwrap()[contract::PLAN_KEY];
        assert_eq!(PlanDocument::parse(text).unwrap(), plan);
        insta::assert_yaml_snapshot!("plan_configmap", cm);
    }

    #[test]
    fn prepare_job_snapshot() {
        let s = spec(true);
        insta::assert_yaml_snapshot!("prepare_job", run(&s).prepare_job().unwrap());
    }

    #[test]
    fn level_job_snapshot() {
        let s = spec(true);
        let job = run(&s).level_job(0, BASE, &[0, 1], Some(5)).unwrap();
        let js = job.spec.as_ref().unwrap();
        assert_eq!(js.completions, Some(2));
        assert_eq!(
            js.parallelism,
            Some(2),
            "min(spec.parallelism, completions)"
        );
        assert_eq!(js.max_failed_indexes, Some(2), "clamped to completions");
        assert_eq!(job_module_indexes(&job).unwrap().unwrap(), vec![0, 1]);
        insta::assert_yaml_snapshot!("level_job", job);
    }

    #[test]
    fn merge_job_snapshot() {
        let s = spec(false);
        let job = run(&s).merge_job(1, BASE, &[0]).unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert!(pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| v.name != "credentials"));
        insta::assert_yaml_snapshot!("merge_job", job);
    }

    #[test]
    fn no_max_failed_means_no_limit_and_restart_policy_is_never() {
        let s = spec(false);
        let job = run(&s).level_job(2, BASE, &[3], None).unwrap();
        let js = job.spec.unwrap();
        assert_eq!(js.max_failed_indexes, None);
        assert_eq!(
            js.template.spec.unwrap().restart_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn pods_carry_the_run_labels_and_the_owner_is_the_controller() {
        let s = spec(false);
        let job = run(&s).level_job(3, BASE, &[0], None).unwrap();
        let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels[labels::RUN], "gems");
        assert_eq!(pod_labels[labels::LEVEL], "3");
        assert_eq!(pod_labels[labels::ROLE], "level");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.kind, "IntegrationRun");
    }

    #[test]
    fn long_run_names_are_refused() {
        let s = spec(false);
        let plan = PlanDocument::from_spec("x", &s).unwrap();
        let long = "a".repeat(60);
        let r = RunRef {
            name: &long,
            ..run(&s)
        };
        assert!(r.validate_names(&plan).is_err());
        assert!(run(&s).validate_names(&plan).is_ok());
    }

    #[test]
    fn spec_image_wins_over_default() {
        let mut s = spec(false);
        s.image = Some("registry.local/integrator:dev".to_owned());
        let job = run(&s).prepare_job().unwrap();
        let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/integrator:dev"));
    }
}
