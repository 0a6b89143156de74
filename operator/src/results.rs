//! Reading what the pods and Jobs report: termination messages (result documents),
//! exit codes, completion indexes and Job conditions. Pure functions over observed
//! objects; nothing here can panic on what a pod wrote.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use lapidary_api::contract::{truncate_chars, ResultDocument, EXIT_PERMANENT};
use lapidary_api::Outcome;

use crate::render::labels;

/// Longest message kept from a pod (status and Events stay small).
pub const MAX_MESSAGE_CHARS: usize = 300;

/// How one pod (one attempt) ended, as far as it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOutcome {
    /// Not finished yet.
    Running,
    /// Finished with a valid result document saying so.
    Succeeded(ResultDocument),
    /// Finished with a result document reporting a conflict.
    Conflict(ResultDocument),
    /// Failed; the message says why (from the result document, or what was wrong
    /// with it).
    Failed {
        /// Why.
        message: String,
        /// Exit code [`EXIT_PERMANENT`]: not retried.
        permanent: bool,
    },
}

/// The outcome of a pod, read from its container's termination state.
pub fn pod_outcome(pod: &Pod) -> PodOutcome {
    let status = pod.status.as_ref();
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "integrator").or(cs.first()));
    let terminated = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let Some(t) = terminated else {
        // A pod can fail without its container ever running (eviction, image pull
        // given up, deleted while pending).
        if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
            let reason = status
                .and_then(|s| s.reason.clone().or(s.message.clone()))
                .unwrap_or_else(|| "unknown reason".to_owned());
            return PodOutcome::Failed {
                message: short(&format!("pod failed before its container ran: {reason}")),
                permanent: false,
            };
        }
        return PodOutcome::Running;
    };
    let message = t.message.as_deref().unwrap_or("");
    let parsed = ResultDocument::parse(message);
    let permanent = t.exit_code == EXIT_PERMANENT;
    match (t.exit_code, parsed) {
        (0, Ok(doc)) => match doc.outcome {
            Outcome::Succeeded => PodOutcome::Succeeded(doc),
            Outcome::Conflict => PodOutcome::Conflict(doc),
            Outcome::Failed => PodOutcome::Failed {
                message: short(&format!(
                    "exited 0 but reported failure: {}",
                    doc.error.as_deref().unwrap_or("no error given")
                )),
                permanent: false,
            },
        },
        (0, Err(e)) => PodOutcome::Failed {
            message: short(&format!("exited 0 but {e}")),
            permanent: false,
        },
        (code, Ok(doc)) if doc.outcome == Outcome::Conflict => {
            let _ = code;
            PodOutcome::Conflict(doc)
        }
        (code, Ok(doc)) => PodOutcome::Failed {
            message: short(&format!(
                "exit code {code}: {}",
                doc.error.as_deref().unwrap_or("no error given")
            )),
            permanent,
        },
        (code, Err(e)) => {
            let reason = t.reason.as_deref().unwrap_or("Error");
            PodOutcome::Failed {
                message: short(&format!("exit code {code} ({reason}): {e}")),
                permanent,
            }
        }
    }
}

fn short(text: &str) -> String {
    truncate_chars(text, MAX_MESSAGE_CHARS)
}

/// The completion index of an Indexed Job's pod.
pub fn completion_index(pod: &Pod) -> Option<usize> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(labels::COMPLETION_INDEX))
        .or_else(|| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(labels::COMPLETION_INDEX))
        })
        .and_then(|v| v.parse().ok())
}

/// True when the pod belongs to (is controlled by) the Job with `uid`.
pub fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid && r.kind == "Job"))
}

/// Sort key of attempts: creation time, then name (pod names of one index differ).
fn attempt_key(pod: &Pod) -> (i64, String) {
    let t = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (t, pod.metadata.name.clone().unwrap_or_default())
}

/// One completion index's (or one single Job's) attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempts {
    /// Pods seen.
    pub count: i32,
    /// The latest attempt's outcome.
    pub latest: PodOutcome,
    /// Name of the latest attempt's pod.
    pub pod: String,
    /// Uid of the latest attempt's pod.
    pub pod_uid: String,
}

/// Groups `pods` of one Job by completion index (all under index 0 for a non-indexed
/// Job), keeping the latest attempt of each.
pub fn attempts_by_index<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    indexed: bool,
) -> BTreeMap<usize, Attempts> {
    let mut groups: BTreeMap<usize, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        let index = if indexed {
            match completion_index(pod) {
                Some(i) => i,
                None => {
                    tracing::warn!(pod = ?pod.metadata.name, "pod of an Indexed Job without a completion index; ignored");
                    continue;
                }
            }
        } else {
            0
        };
        groups.entry(index).or_default().push(pod);
    }
    groups
        .into_iter()
        .filter_map(|(i, mut pods)| {
            pods.sort_by_key(|p| attempt_key(p));
            let latest = *pods.last()?;
            Some((
                i,
                Attempts {
                    count: i32::try_from(pods.len()).unwrap_or(i32::MAX),
                    latest: pod_outcome(latest),
                    pod: latest.metadata.name.clone().unwrap_or_default(),
                    pod_uid: latest.metadata.uid.clone().unwrap_or_default(),
                },
            ))
        })
        .collect()
}

/// How a Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Condition Complete=True.
    Complete,
    /// Condition Failed=True, with its reason and message.
    Failed(String),
}

/// What the Job's own status says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobView {
    /// Set once the Job finished.
    pub end: Option<JobEnd>,
    /// Indexes that succeeded.
    pub completed: BTreeSet<usize>,
    /// Indexes that failed for good.
    pub failed: BTreeSet<usize>,
    /// `spec.suspend`.
    pub suspended: bool,
}

/// Reads a Job's status.
pub fn job_view(job: &Job) -> JobView {
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let is_true = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let end = if is_true("Complete") {
        Some(JobEnd::Complete)
    } else if is_true("Failed") {
        let c = conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True");
        let text = c
            .map(|c| {
                format!(
                    "{}: {}",
                    c.reason.as_deref().unwrap_or("Failed"),
                    c.message.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_default();
        Some(JobEnd::Failed(short(&text)))
    } else {
        None
    };
    JobView {
        end,
        completed: parse_index_set(status.and_then(|s| s.completed_indexes.as_deref())),
        failed: parse_index_set(status.and_then(|s| s.failed_indexes.as_deref())),
        suspended: job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false),
    }
}

/// Parses a Job's index set (`"1,3-5"`); garbage is skipped, never a panic.
pub fn parse_index_set(text: Option<&str>) -> BTreeSet<usize> {
    let mut set = BTreeSet::new();
    for part in text.unwrap_or("").split(',').map(str::trim) {
        if let Some((a, b)) = part.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                // Bounded by the Job API's completions limit.
                set.extend(a..=b.min(a.saturating_add(100_000)));
            }
        } else if let Ok(i) = part.parse() {
            set.insert(i);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// A pod of a Job named `j` with uid `job_uid` (no labels needed here).
    fn pod(
        name: &str,
        job_uid: &str,
        index: Option<usize>,
        created: i64,
        exit: Option<i32>,
        message: &str,
    ) -> Pod {
        crate::fixtures::owned_pod(name, "j", job_uid, json!({}), index, created, exit, message)
    }
    use super::*;
    use lapidary_api::Role;

    fn ok_module(name: &str) -> String {
        let mut d = ResultDocument::new(Role::Module, Outcome::Succeeded);
        d.module = Some(name.into());
        d.commit = Some("c".repeat(40));
        d.files_changed = Some(7);
        serde_json::to_string(&d).unwrap()
    }

    #[test]
    fn success_with_a_valid_document() {
        let p = pod("p", "j", Some(0), 0, Some(0), &ok_module("a"));
        match pod_outcome(&p) {
            PodOutcome::Succeeded(d) => assert_eq!(d.files_changed, Some(7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_or_missing_results_are_failed_attempts_with_a_message() {
        let p = pod("p", "j", Some(0), 0, Some(0), "thread 'main' panicked");
        let PodOutcome::Failed { message, .. } = pod_outcome(&p) else {
            panic!()
        };
        assert!(message.contains("malformed"), "{message}");
        assert!(message.contains("panicked"), "{message}");
        let p = pod("p", "j", Some(0), 0, Some(1), "");
        let PodOutcome::Failed { message, permanent } = pod_outcome(&p) else {
            panic!()
        };
        assert!(message.contains("exit code 1"), "{message}");
        assert!(message.contains("no result"), "{message}");
        assert!(!permanent);
    }

    #[test]
    fn exit_permanent_is_flagged() {
        let mut d = ResultDocument::new(Role::Module, Outcome::Failed);
        d.error = Some("target exists".into());
        let p = pod(
            "p",
            "j",
            Some(0),
            0,
            Some(EXIT_PERMANENT),
            &serde_json::to_string(&d).unwrap(),
        );
        assert_eq!(
            pod_outcome(&p),
            PodOutcome::Failed {
                message: "exit code 3: target exists".into(),
                permanent: true
            }
        );
    }

    #[test]
    fn a_pod_without_status_is_running() {
        let p = Pod::default();
        assert_eq!(pod_outcome(&p), PodOutcome::Running);
    }

    #[test]
    fn latest_attempt_per_index_wins_and_attempts_are_counted() {
        let pods = [
            pod("a1", "j", Some(0), 0, Some(1), ""),
            pod("a2", "j", Some(0), 10, Some(0), &ok_module("a")),
            pod("b1", "j", Some(1), 5, None, ""),
        ];
        let by = attempts_by_index(pods.iter(), true);
        assert_eq!(by[&0].count, 2);
        assert!(matches!(by[&0].latest, PodOutcome::Succeeded(_)));
        assert_eq!(by[&0].pod, "a2");
        assert_eq!(by[&1].latest, PodOutcome::Running);
    }

    #[test]
    fn index_sets_parse_ranges_and_skip_garbage() {
        let s = parse_index_set(Some("0,2-4,x,7-"));
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![0, 2, 3, 4]);
        assert!(parse_index_set(None).is_empty());
    }

    #[test]
    fn ownership_is_by_job_uid() {
        let p = pod("p", "job-uid-1", Some(0), 0, None, "");
        assert!(owned_by(&p, "job-uid-1"));
        assert!(!owned_by(&p, "job-uid-2"));
    }
}
