//! Status helpers: module counts, conditions that keep their transition time, the
//! "did anything change" comparison that ignores timestamps, and the split between
//! progress-only changes (batched) and state changes (written at once).

use lapidary_api::crd::{Condition, ModulePhase, Summary};
use lapidary_api::IntegrationRunStatus;

/// Condition types.
pub mod condition {
    /// The run finished and every module was integrated.
    pub const READY: &str = "Ready";
    /// Work is going on.
    pub const PROGRESSING: &str = "Progressing";
    /// Something was lost: a module, a merge, or the whole run.
    pub const DEGRADED: &str = "Degraded";
    /// The spec can be planned.
    pub const SPEC_VALID: &str = "SpecValid";
}

/// Hex digits kept of a module's commit in status: a run may hold 10,000 modules and
/// the whole object must stay below etcd's limit; the full id is on the module's
/// branch, and level merges record full commits.
pub const COMMIT_ABBREV: usize = 12;

/// A commit id abbreviated to [`COMMIT_ABBREV`] characters.
pub fn abbreviate_commit(commit: &str) -> String {
    commit.chars().take(COMMIT_ABBREV).collect()
}

/// Counts modules by phase.
pub fn summarize(status: &IntegrationRunStatus) -> Summary {
    let mut s = Summary {
        total: i32::try_from(status.modules.len()).unwrap_or(i32::MAX),
        ..Summary::default()
    };
    for m in &status.modules {
        match m.phase {
            ModulePhase::Pending => s.pending += 1,
            ModulePhase::Running => s.running += 1,
            ModulePhase::Succeeded => s.succeeded += 1,
            ModulePhase::Failed => s.failed += 1,
            ModulePhase::Skipped => s.skipped += 1,
            ModulePhase::Conflict => s.conflicts += 1,
        }
    }
    s
}

/// Sets a condition; `lastTransitionTime` moves only when `status` changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
    generation: Option<i64>,
) {
    let status_text = if status { "True" } else { "False" };
    let fresh = Condition {
        type_: type_.to_owned(),
        status: status_text.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now.to_owned(),
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status_text => {
            c.reason = fresh.reason;
            c.message = fresh.message;
            c.observed_generation = generation;
        }
        Some(c) => *c = fresh,
        None => conditions.push(fresh),
    }
}

/// The condition of `type_`, if set.
pub fn get_condition<'a>(status: &'a IntegrationRunStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

fn without_times(status: &IntegrationRunStatus) -> IntegrationRunStatus {
    let mut s = status.clone();
    for c in &mut s.conditions {
        c.last_transition_time.clear();
    }
    s
}

/// True when the two statuses differ in more than timestamps of conditions. Writing a
/// status that differs only there would make the controller spin.
pub fn changed(old: &IntegrationRunStatus, new: &IntegrationRunStatus) -> bool {
    without_times(old) != without_times(new)
}

/// True when the only differences are module progress (module entries and counts):
/// such writes can be batched. Phase, levels, commits and conditions are written at
/// once.
pub fn progress_only(old: &IntegrationRunStatus, new: &IntegrationRunStatus) -> bool {
    let strip = |s: &IntegrationRunStatus| {
        let mut s = without_times(s);
        s.modules.clear();
        s.summary = Summary::default();
        s
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapidary_api::crd::{LevelPhase, LevelStatus, ModuleStatus, RunPhase};

    #[test]
    fn transition_time_is_kept_unless_status_changes() {
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", false, "Running", "a", "t1", Some(1));
        set_condition(&mut c, "Ready", false, "Running", "b", "t2", Some(1));
        assert_eq!(c[0].last_transition_time, "t1");
        assert_eq!(c[0].message, "b");
        set_condition(&mut c, "Ready", true, "Succeeded", "", "t3", Some(1));
        assert_eq!(c[0].last_transition_time, "t3");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn timestamps_alone_are_no_change_and_progress_is_told_apart() {
        let mut a = IntegrationRunStatus::default();
        set_condition(&mut a.conditions, "Ready", false, "R", "", "t1", None);
        a.modules.push(ModuleStatus {
            name: "m".into(),
            ..Default::default()
        });
        let mut b = a.clone();
        b.conditions[0].last_transition_time = "t2".into();
        assert!(!changed(&a, &b));
        b.modules[0].phase = ModulePhase::Running;
        b.summary = summarize(&b);
        assert!(changed(&a, &b));
        assert!(progress_only(&a, &b));
        b.phase = RunPhase::Merging;
        assert!(!progress_only(&a, &b));
    }

    /// A finished 5,000-module run's status must stay far below etcd's 1.5 MiB object
    /// limit (and the 1 MiB we allow ourselves).
    #[test]
    fn status_of_5000_modules_is_compact() {
        let n = 5000;
        let levels = 7;
        let mut s = IntegrationRunStatus {
            phase: RunPhase::Failed,
            observed_generation: Some(3),
            message: Some("4990 of 5000 modules integrated; 5 failed, 5 skipped".into()),
            base_commit: Some("a".repeat(40)),
            head_commit: Some("b".repeat(40)),
            integration_branch: Some("integrate/gems-batch-2".into()),
            start_time: Some("2026-12-03T10:00:00Z".into()),
            completion_time: Some("2026-12-03T11:00:00Z".into()),
            current_level: Some(levels - 1),
            level: Some(format!("{levels}/{levels}")),
            ..Default::default()
        };
        for k in 0..levels {
            s.levels.push(LevelStatus {
                index: k,
                modules: n / levels,
                job: Some(format!("gems-batch-2-level-{k}")),
                phase: LevelPhase::Succeeded,
                succeeded: n / levels,
                failed: 0,
                merge_job: Some(format!("gems-batch-2-merge-{k}")),
                merged_commit: Some(format!("{k:040x}")),
            });
        }
        for i in 0..n {
            let failed = i % 1000 == 7;
            s.modules.push(ModuleStatus {
                // ~20 characters, like `consciousness_fold_0042`.
                name: format!("memory_fold_mod_{i:04}"),
                level: i % levels,
                phase: if failed {
                    ModulePhase::Failed
                } else {
                    ModulePhase::Succeeded
                },
                attempts: if failed { 3 } else { 1 },
                commit: (!failed).then(|| abbreviate_commit(&format!("{:040x}", i as u128 * 7919))),
                files_changed: (!failed).then_some(6),
                message: failed.then(|| "exit code 1: fixImports: cannot parse x.py".into()),
            });
        }
        s.summary = summarize(&s);
        for t in ["Ready", "Progressing", "Degraded", "SpecValid"] {
            set_condition(
                &mut s.conditions,
                t,
                true,
                "Reason",
                "message",
                "2026-12-03T11:00:00Z",
                Some(3),
            );
        }
        let bytes = serde_json::to_vec(&s).unwrap().len();
        println!(
            "status of {n} modules: {bytes} bytes, {:.1} bytes per module",
            bytes as f64 / n as f64
        );
        assert!(bytes < 1024 * 1024, "{bytes} bytes");
    }
}
