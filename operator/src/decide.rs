//! The pure part of reconciling: given a run, its previous status and the Jobs and
//! pods observed, decide which children must exist and what the new status is.
//!
//! Status is the memory: base and head commits, each level's phase and each module's
//! result live there, so an operator restarted at any moment continues from status and
//! the observed Jobs. Children have deterministic names and are applied with
//! server-side apply, so deciding the same thing twice creates nothing twice.
//!
//! Rules a user should know:
//! - A module whose dependency failed, conflicted or was skipped is Skipped.
//! - Once more than `maxFailedModules` modules failed, the level that is running is
//!   still merged (no lost work), then no further level starts and the run is Failed.
//! - The run is Succeeded only if every module was integrated; otherwise it still
//!   runs every level it can and the final merge, then ends Failed with the counts.
//! - A Job deleted by hand is created again with only the modules that have no
//!   recorded success (`LAPIDARY_MODULE_INDEXES`), so nothing finished runs twice.
//! - After the run started, `spec.modules` may not change (the plan is fixed);
//!   such a change is reported as an invalid spec until it is undone.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use lapidary_api::contract::PlanDocument;
use lapidary_api::crd::{LevelPhase, LevelStatus, ModulePhase, ModuleStatus, RunPhase};
use lapidary_api::IntegrationRunStatus;

use crate::events::{EventSpec, MAX_MODULE_EVENTS};
use crate::render::{self, RunRef};
use crate::results::{self, attempts_by_index, job_view, JobEnd, PodOutcome};
use crate::status::{self, condition, set_condition};

/// The Jobs and pods observed for one run (already filtered to the run).
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// Jobs controlled by the run, by name.
    pub jobs: BTreeMap<String, &'a Job>,
    /// Pods labelled with the run.
    pub pods: Vec<&'a Pod>,
}

impl Observed<'_> {
    fn pods_of(&self, job: &Job) -> Vec<&Pod> {
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        self.pods
            .iter()
            .copied()
            .filter(|p| results::owned_by(p, uid))
            .collect()
    }
}

/// What to do.
#[derive(Debug, Default)]
pub struct Decision {
    /// The new status.
    pub status: IntegrationRunStatus,
    /// Apply the plan ConfigMap (before any Job).
    pub configmap: Option<ConfigMap>,
    /// Jobs to apply.
    pub jobs: Vec<Job>,
    /// Jobs whose `spec.suspend` must be set to the value.
    pub suspend: Vec<(String, bool)>,
    /// Events to send.
    pub events: Vec<EventSpec>,
    /// The spec cannot run (the message says why): wait for a change.
    pub invalid: Option<String>,
}

impl Decision {
    /// True once the run can no longer change.
    pub fn finished(&self) -> bool {
        self.status.completion_time.is_some()
    }
}

/// Inputs besides the run's spec.
pub struct Input<'a> {
    /// The run.
    pub run: RunRef<'a>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The status as last written.
    pub old: &'a IntegrationRunStatus,
    /// Jobs and pods.
    pub observed: &'a Observed<'a>,
    /// Now, RFC 3339.
    pub now: &'a str,
}

/// Decides the next step of a run.
pub fn decide(input: &Input<'_>) -> Decision {
    let spec = input.run.spec;
    let planned = PlanDocument::from_spec(input.run.name, spec)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            input
                .run
                .validate_names(&p)
                .map(|()| p)
                .map_err(|e| e.to_string())
        })
        .and_then(|p| check_unchanged(input.old, &p).map(|()| p));
    let plan = match planned {
        Ok(p) => p,
        Err(message) => return invalid(input, message),
    };
    let mut d = Walk {
        input,
        plan: &plan,
        st: input.old.clone(),
        out: Decision::default(),
        stop: None,
    };
    d.run();
    d.finish()
}

/// The plan is fixed once the run started: its modules and levels may not change.
fn check_unchanged(old: &IntegrationRunStatus, plan: &PlanDocument) -> Result<(), String> {
    if old.modules.is_empty() {
        return Ok(());
    }
    let same = old.modules.len() == plan.plan.modules.len()
        && old
            .modules
            .iter()
            .zip(&plan.plan.modules)
            .all(|(s, p)| s.name == p.name && usize::try_from(s.level).ok() == Some(p.level));
    if same {
        Ok(())
    } else {
        Err("spec.modules changed after the run started; the plan of a started run is fixed: undo the change or create a new IntegrationRun".to_owned())
    }
}

fn invalid(input: &Input<'_>, message: String) -> Decision {
    let mut st = input.old.clone();
    let gen = input.generation;
    let was = status::get_condition(&st, condition::SPEC_VALID)
        .map(|c| (c.status.clone(), c.message.clone()));
    st.observed_generation = gen;
    st.phase = RunPhase::Failed;
    st.message = Some(message.clone());
    let now = input.now;
    set_condition(
        &mut st.conditions,
        condition::SPEC_VALID,
        false,
        "InvalidSpec",
        &message,
        now,
        gen,
    );
    set_condition(
        &mut st.conditions,
        condition::READY,
        false,
        "InvalidSpec",
        "the spec cannot run",
        now,
        gen,
    );
    set_condition(
        &mut st.conditions,
        condition::PROGRESSING,
        false,
        "InvalidSpec",
        "waiting for a valid spec",
        now,
        gen,
    );
    set_condition(
        &mut st.conditions,
        condition::DEGRADED,
        true,
        "InvalidSpec",
        &message,
        now,
        gen,
    );
    let mut events = Vec::new();
    if was != Some(("False".to_owned(), message.clone())) {
        events.push(EventSpec::warning("SpecInvalid", "Plan", message.clone()));
    }
    Decision {
        status: st,
        events,
        invalid: Some(message),
        ..Decision::default()
    }
}

struct Walk<'a> {
    input: &'a Input<'a>,
    plan: &'a PlanDocument,
    st: IntegrationRunStatus,
    out: Decision,
    /// Why no further level starts, once known.
    stop: Option<String>,
}

/// A module that just failed: name, message and its latest pod `(name, uid)`.
type FailedModule = (String, String, Option<(String, String)>);

/// Where the walk stopped.
enum Stop {
    /// Waiting on something that runs.
    Waiting,
    /// Every level is done.
    Done,
}

impl<'a> Walk<'a> {
    fn suspended(&self) -> bool {
        self.input.run.spec.suspend
    }

    fn job(&self, name: &str) -> Option<&'a Job> {
        self.input.observed.jobs.get(name).copied()
    }

    fn init(&mut self) {
        let st = &mut self.st;
        st.observed_generation = self.input.generation;
        st.integration_branch = Some(self.plan.integration_branch.clone());
        if st.modules.is_empty() {
            st.modules = self
                .plan
                .plan
                .modules
                .iter()
                .map(|m| ModuleStatus {
                    name: m.name.clone(),
                    level: i32::try_from(m.level).unwrap_or(i32::MAX),
                    ..ModuleStatus::default()
                })
                .collect();
        }
        if st.levels.len() != self.plan.plan.levels.len() {
            st.levels = self
                .plan
                .plan
                .levels
                .iter()
                .enumerate()
                .map(|(k, members)| LevelStatus {
                    index: i32::try_from(k).unwrap_or(i32::MAX),
                    modules: i32::try_from(members.len()).unwrap_or(i32::MAX),
                    ..LevelStatus::default()
                })
                .collect();
        }
    }

    fn run(&mut self) {
        if self.st.completion_time.is_some() {
            // Finished runs only follow the generation.
            self.st.observed_generation = self.input.generation;
            return;
        }
        self.init();
        if self.st.start_time.is_none() {
            self.st.start_time = Some(self.input.now.to_owned());
        }
        let stop = match self.prepare() {
            Stop::Waiting => Stop::Waiting,
            Stop::Done => self.levels(),
        };
        if let Stop::Done = stop {
            self.complete();
        }
    }

    fn ensure_configmap(&mut self) {
        if self.out.configmap.is_none() {
            match self.input.run.plan_configmap(self.plan) {
                Ok(cm) => self.out.configmap = Some(cm),
                Err(e) => tracing::error!(error = %e, "cannot render the plan ConfigMap"),
            }
        }
    }

    fn push_job(&mut self, job: crate::error::Result<Job>) -> bool {
        match job {
            Ok(job) => {
                self.ensure_configmap();
                self.out.jobs.push(job);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot render a Job");
                false
            }
        }
    }

    fn sync_suspend(&mut self, job: &Job) {
        let view = job_view(job);
        if view.end.is_none() && view.suspended != self.suspended() {
            if let Some(name) = &job.metadata.name {
                self.out.suspend.push((name.clone(), self.suspended()));
            }
        }
    }

    /// Pins the base commit. `Done` once `baseCommit` is known.
    fn prepare(&mut self) -> Stop {
        if self.st.base_commit.is_some() {
            return Stop::Done;
        }
        let name = render::prepare_job_name(self.input.run.name);
        self.st.phase = RunPhase::Preparing;
        let Some(job) = self.job(&name) else {
            if !self.suspended() {
                let job = self.input.run.prepare_job();
                if self.push_job(job) && self.input.old.start_time.is_none() {
                    self.out.events.push(EventSpec::normal(
                        "RunStarted",
                        "Prepare",
                        format!(
                            "{} modules in {} levels; pinning {} of {}",
                            self.plan.plan.modules.len(),
                            self.plan.plan.levels.len(),
                            self.plan.repository.revision,
                            self.plan.repository.url
                        ),
                    ));
                }
            }
            return Stop::Waiting;
        };
        self.sync_suspend(job);
        let view = job_view(job);
        let attempts = attempts_by_index(self.input.observed.pods_of(job), false);
        let latest = attempts.get(&0).map(|a| a.latest.clone());
        match (latest, view.end) {
            (Some(PodOutcome::Succeeded(doc)), _) => match doc.commit {
                Some(commit) => {
                    self.st.base_commit = Some(commit.clone());
                    self.st.head_commit = Some(commit.clone());
                    self.out.events.push(EventSpec::normal(
                        "Prepared",
                        "Prepare",
                        format!("{} pinned to {commit}", self.plan.repository.revision),
                    ));
                    Stop::Done
                }
                None => {
                    self.fail("the prepare result carries no commit".to_owned());
                    Stop::Waiting
                }
            },
            (latest, Some(end)) => {
                let why = match (latest, end) {
                    (Some(PodOutcome::Failed { message, .. }), _) => message,
                    (_, JobEnd::Failed(m)) => m,
                    (_, JobEnd::Complete) => {
                        "the prepare Job completed but its pod's result is gone".to_owned()
                    }
                };
                self.fail(format!("prepare failed: {why}"));
                Stop::Waiting
            }
            (_, None) => Stop::Waiting,
        }
    }

    /// Ends the run as Failed now (nothing else can run).
    fn fail(&mut self, message: String) {
        for m in &mut self.st.modules {
            if matches!(m.phase, ModulePhase::Pending | ModulePhase::Running) {
                m.phase = ModulePhase::Skipped;
                m.message = Some("not run: the run failed".to_owned());
            }
        }
        for l in &mut self.st.levels {
            if matches!(l.phase, LevelPhase::Pending) {
                l.phase = LevelPhase::Skipped;
            }
        }
        self.st.phase = RunPhase::Failed;
        self.st.message = Some(message.clone());
        self.st.completion_time = Some(self.input.now.to_owned());
        self.out
            .events
            .push(EventSpec::warning("RunFailed", "Finish", message));
    }

    fn failed_count(&self) -> i32 {
        let n = self
            .st
            .modules
            .iter()
            .filter(|m| m.phase == ModulePhase::Failed)
            .count();
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    fn levels(&mut self) -> Stop {
        let mut stopped: Option<String> = None;
        for k in 0..self.plan.plan.levels.len() {
            if matches!(
                self.st.levels[k].phase,
                LevelPhase::Succeeded | LevelPhase::Failed | LevelPhase::Skipped
            ) {
                if stopped.is_none() {
                    stopped = self.stop_reason();
                }
                continue;
            }
            self.st.current_level = i32::try_from(k).ok();
            if let Some(reason) = &stopped {
                let reason = reason.clone();
                self.skip_level(k, &reason);
                continue;
            }
            self.skip_lost_dependents(k);
            if self.runnable(k).is_empty() {
                self.st.levels[k].phase = LevelPhase::Skipped;
                self.out.events.push(EventSpec::normal(
                    "LevelSkipped",
                    "Integrate",
                    format!("level {k}: every module depends on a module that was not integrated"),
                ));
                continue;
            }
            if matches!(
                self.st.levels[k].phase,
                LevelPhase::Pending | LevelPhase::Running
            ) {
                if let Stop::Waiting = self.level_job(k) {
                    self.st.phase = RunPhase::Running;
                    return Stop::Waiting;
                }
            }
            if let Stop::Waiting = self.merge(k, &mut stopped) {
                self.st.phase = RunPhase::Merging;
                return Stop::Waiting;
            }
            if stopped.is_none() {
                stopped = self.stop_reason();
            }
        }
        self.stop = stopped;
        Stop::Done
    }

    fn stop_reason(&self) -> Option<String> {
        let max = self.input.run.spec.max_failed_modules?;
        let failed = self.failed_count();
        (failed > max).then(|| {
            format!("{failed} modules failed, more than maxFailedModules ({max}): no further level starts")
        })
    }

    fn level_positions(&self, k: usize) -> &[usize] {
        self.plan.plan.levels.get(k).map_or(&[], Vec::as_slice)
    }

    fn skip_level(&mut self, k: usize, reason: &str) {
        let positions = self.level_positions(k).to_vec();
        for p in positions {
            let m = &mut self.st.modules[p];
            if matches!(m.phase, ModulePhase::Pending | ModulePhase::Running) {
                m.phase = ModulePhase::Skipped;
                m.message = Some(format!("not run: {reason}"));
            }
        }
        self.st.levels[k].phase = LevelPhase::Skipped;
    }

    fn skip_lost_dependents(&mut self, k: usize) {
        let positions = self.level_positions(k).to_vec();
        let phase_of: BTreeMap<&str, ModulePhase> = self
            .st
            .modules
            .iter()
            .map(|m| (m.name.as_str(), m.phase))
            .collect();
        let mut skips = Vec::new();
        for p in positions {
            let planned = &self.plan.plan.modules[p];
            if !matches!(self.st.modules[p].phase, ModulePhase::Pending) {
                continue;
            }
            let lost = planned.depends_on.iter().find_map(|d| {
                let phase = phase_of.get(d.as_str()).copied().unwrap_or_default();
                (phase != ModulePhase::Succeeded).then_some((d.clone(), phase))
            });
            if let Some((dep, phase)) = lost {
                skips.push((
                    p,
                    format!("dependency {dep} was not integrated ({phase:?})"),
                ));
            }
        }
        for (p, message) in skips {
            self.st.modules[p].phase = ModulePhase::Skipped;
            self.st.modules[p].message = Some(message);
        }
    }

    /// Positions within level `k` of the modules that may run.
    fn runnable(&self, k: usize) -> Vec<usize> {
        self.level_positions(k)
            .iter()
            .enumerate()
            .filter(|(_, &p)| self.st.modules[p].phase != ModulePhase::Skipped)
            .map(|(i, _)| i)
            .collect()
    }

    /// Runs level `k`'s Job. `Done` once every runnable module has its outcome.
    fn level_job(&mut self, k: usize) -> Stop {
        let name = render::level_job_name(self.input.run.name, k);
        let positions = self.level_positions(k).to_vec();
        let runnable = self.runnable(k);
        let Some(job) = self.job(&name) else {
            let todo: Vec<usize> = runnable
                .iter()
                .copied()
                .filter(|&i| self.st.modules[positions[i]].phase != ModulePhase::Succeeded)
                .collect();
            if todo.is_empty() {
                self.finish_level(k);
                return Stop::Done;
            }
            if self.suspended() {
                return Stop::Waiting;
            }
            let allowance = self
                .input
                .run
                .spec
                .max_failed_modules
                .map(|max| max - self.failed_count());
            let base = self.st.head_commit.clone().unwrap_or_default();
            let job = self.input.run.level_job(k, &base, &todo, allowance);
            if self.push_job(job) {
                let level = &mut self.st.levels[k];
                let first = level.job.is_none();
                level.job = Some(name.clone());
                level.phase = LevelPhase::Running;
                let skipped = positions.len() - runnable.len();
                let note = if first {
                    format!(
                        "level {k}: {} modules started ({skipped} skipped) on {base}",
                        todo.len()
                    )
                } else {
                    format!("level {k}: Job {name} was gone; recreated for the {} modules without a recorded success", todo.len())
                };
                self.out
                    .events
                    .push(EventSpec::normal("LevelStarted", "Integrate", note));
            }
            return Stop::Waiting;
        };
        self.st.levels[k].job = Some(name.clone());
        self.st.levels[k].phase = LevelPhase::Running;
        self.sync_suspend(job);
        let view = job_view(job);
        let indexes = match render::job_module_indexes(job) {
            Some(Ok(ix)) => ix,
            Some(Err(e)) => {
                tracing::warn!(job = %name, error = %e, "unreadable module indexes; assuming identity");
                (0..positions.len()).collect()
            }
            None => (0..positions.len()).collect(),
        };
        let attempts = attempts_by_index(self.input.observed.pods_of(job), true);
        let ended = view.end.clone();
        let mut failed_events = Vec::new();
        for (ci, &within) in indexes.iter().enumerate() {
            let Some(&p) = positions.get(within) else {
                tracing::warn!(job = %name, index = within, "module index outside the level; ignored");
                continue;
            };
            let m = &mut self.st.modules[p];
            if m.phase == ModulePhase::Succeeded {
                continue;
            }
            let before = m.phase;
            let failed_index = view.failed.contains(&ci);
            match attempts.get(&ci) {
                Some(a) => {
                    m.attempts = m.attempts.max(a.count);
                    match &a.latest {
                        PodOutcome::Succeeded(doc) => match &doc.commit {
                            Some(c) => {
                                m.phase = ModulePhase::Succeeded;
                                m.commit = Some(status::abbreviate_commit(c));
                                m.files_changed =
                                    doc.files_changed.and_then(|f| i32::try_from(f).ok());
                                m.message = None;
                            }
                            None => {
                                m.phase = ModulePhase::Failed;
                                m.message = Some(
                                    "the result reports success but carries no commit".to_owned(),
                                );
                            }
                        },
                        PodOutcome::Conflict(doc) => {
                            m.phase = ModulePhase::Conflict;
                            m.message =
                                Some(doc.error.clone().unwrap_or_else(|| "conflict".to_owned()));
                        }
                        PodOutcome::Failed { message, .. } => {
                            m.message = Some(message.clone());
                            m.phase = if failed_index
                                || ended.is_some()
                                || view.completed.contains(&ci)
                            {
                                ModulePhase::Failed
                            } else {
                                // Retried by the Job (backoffLimitPerIndex).
                                ModulePhase::Running
                            };
                        }
                        PodOutcome::Running => m.phase = ModulePhase::Running,
                    }
                    if m.phase == ModulePhase::Failed && before != ModulePhase::Failed {
                        failed_events.push((
                            m.name.clone(),
                            m.message.clone().unwrap_or_default(),
                            Some((a.pod.clone(), a.pod_uid.clone())),
                        ));
                    }
                }
                None if failed_index => {
                    m.phase = ModulePhase::Failed;
                    m.message = Some("failed; its pods are gone".to_owned());
                    failed_events.push((
                        m.name.clone(),
                        m.message.clone().unwrap_or_default(),
                        None,
                    ));
                }
                None if view.completed.contains(&ci) => {
                    m.phase = ModulePhase::Failed;
                    m.message = Some("completed, but its pod and result are gone".to_owned());
                    failed_events.push((
                        m.name.clone(),
                        m.message.clone().unwrap_or_default(),
                        None,
                    ));
                }
                None => {}
            }
        }
        self.module_failed_events(failed_events);
        let Some(end) = ended else {
            return Stop::Waiting;
        };
        // The Job ended: whatever did not run will not.
        let reason = match &end {
            JobEnd::Complete => "its Job completed without running it".to_owned(),
            JobEnd::Failed(m) => format!("not run: the Job failed ({m})"),
        };
        for &within in &runnable {
            let m = &mut self.st.modules[positions[within]];
            if matches!(m.phase, ModulePhase::Pending | ModulePhase::Running) {
                m.phase = ModulePhase::Skipped;
                m.message = Some(reason.clone());
            }
        }
        self.finish_level(k);
        Stop::Done
    }

    fn module_failed_events(&mut self, failed: Vec<FailedModule>) {
        let total = failed.len();
        for (name, message, pod) in failed.into_iter().take(MAX_MODULE_EVENTS) {
            let mut e = EventSpec::warning(
                "ModuleFailed",
                "Integrate",
                format!("module {name}: {message}"),
            );
            e.pod = pod;
            self.out.events.push(e);
        }
        if total > MAX_MODULE_EVENTS {
            self.out.events.push(EventSpec::warning(
                "ModulesFailed",
                "Integrate",
                format!(
                    "{} more modules failed; see status.modules",
                    total - MAX_MODULE_EVENTS
                ),
            ));
        }
    }

    fn finish_level(&mut self, k: usize) {
        let positions = self.level_positions(k).to_vec();
        let count = |phase| {
            positions
                .iter()
                .filter(|&&p| self.st.modules[p].phase == phase)
                .count()
        };
        let succeeded = count(ModulePhase::Succeeded);
        let failed = count(ModulePhase::Failed);
        let skipped = count(ModulePhase::Skipped);
        let level = &mut self.st.levels[k];
        level.succeeded = i32::try_from(succeeded).unwrap_or(i32::MAX);
        level.failed = i32::try_from(failed).unwrap_or(i32::MAX);
        level.phase = LevelPhase::Merging;
        let note = format!("level {k}: {succeeded} succeeded, {failed} failed, {skipped} skipped");
        self.out.events.push(if failed > 0 {
            EventSpec::warning("LevelFinished", "Integrate", note)
        } else {
            EventSpec::normal("LevelFinished", "Integrate", note)
        });
    }

    /// Merges level `k`. `Done` once the level is Succeeded or Failed.
    fn merge(&mut self, k: usize, stopped: &mut Option<String>) -> Stop {
        let positions = self.level_positions(k).to_vec();
        let succeeded: Vec<usize> = positions
            .iter()
            .enumerate()
            .filter(|(_, &p)| self.st.modules[p].phase == ModulePhase::Succeeded)
            .map(|(i, _)| i)
            .collect();
        if succeeded.is_empty() {
            self.st.levels[k].phase = LevelPhase::Failed;
            return Stop::Done;
        }
        let name = render::merge_job_name(self.input.run.name, k);
        let Some(job) = self.job(&name) else {
            if self.suspended() {
                return Stop::Waiting;
            }
            let base = self.st.head_commit.clone().unwrap_or_default();
            let job = self.input.run.merge_job(k, &base, &succeeded);
            if self.push_job(job) {
                self.st.levels[k].merge_job = Some(name);
                self.st.levels[k].phase = LevelPhase::Merging;
            }
            return Stop::Waiting;
        };
        self.st.levels[k].merge_job = Some(name);
        self.sync_suspend(job);
        let view = job_view(job);
        let attempts = attempts_by_index(self.input.observed.pods_of(job), false);
        let latest = attempts.get(&0).map(|a| a.latest.clone());
        match (latest, view.end) {
            (Some(PodOutcome::Succeeded(doc) | PodOutcome::Conflict(doc)), _)
                if doc.commit.is_some() =>
            {
                let commit = doc.commit.clone().unwrap_or_default();
                let mut conflicts = 0;
                for c in &doc.conflicts {
                    if let Some(&p) = positions.iter().find(|&&p| self.st.modules[p].name == *c) {
                        let m = &mut self.st.modules[p];
                        m.phase = ModulePhase::Conflict;
                        m.message = Some(
                            "its branch conflicted with the integration branch and was left out"
                                .to_owned(),
                        );
                        conflicts += 1;
                    }
                }
                let level = &mut self.st.levels[k];
                level.merged_commit = Some(commit.clone());
                level.succeeded -= conflicts;
                level.phase = LevelPhase::Succeeded;
                self.st.head_commit = Some(commit.clone());
                let omitted = doc.conflicts_omitted;
                let note = format!(
                    "level {k} merged at {commit}: {} modules integrated, {} conflicts{}",
                    succeeded.len() as i32 - conflicts,
                    conflicts as u32 + omitted,
                    if omitted > 0 {
                        format!(" ({omitted} not named by the merge result)")
                    } else {
                        String::new()
                    }
                );
                self.out.events.push(if conflicts > 0 || omitted > 0 {
                    EventSpec::warning("Merged", "Merge", note)
                } else {
                    EventSpec::normal("Merged", "Merge", note)
                });
                Stop::Done
            }
            (latest, Some(end)) => {
                let why = match (latest, end) {
                    (Some(PodOutcome::Failed { message, .. }), _) => message,
                    (Some(PodOutcome::Succeeded(_) | PodOutcome::Conflict(_)), _) => {
                        "the merge result carries no commit".to_owned()
                    }
                    (_, JobEnd::Failed(m)) => m,
                    (_, JobEnd::Complete) => {
                        "the merge Job completed but its pod's result is gone".to_owned()
                    }
                };
                let message = format!("merge of level {k} failed: {why}");
                self.st.levels[k].phase = LevelPhase::Failed;
                self.out
                    .events
                    .push(EventSpec::warning("MergeFailed", "Merge", message.clone()));
                *stopped = Some(message);
                Stop::Done
            }
            (_, None) => Stop::Waiting,
        }
    }

    /// Every level is done: the run ends.
    fn complete(&mut self) {
        let s = status::summarize(&self.st);
        let all = s.succeeded == s.total;
        self.st.phase = if all {
            RunPhase::Succeeded
        } else {
            RunPhase::Failed
        };
        let counts = format!(
            "{} of {} modules integrated; {} failed, {} skipped, {} conflicts",
            s.succeeded, s.total, s.failed, s.skipped, s.conflicts
        );
        let message = match self.stop.take() {
            Some(reason) => format!("{reason}; {counts}"),
            None => counts,
        };
        self.st.message = Some(message.clone());
        self.st.completion_time = Some(self.input.now.to_owned());
        self.out.events.push(if all {
            EventSpec::normal("RunSucceeded", "Finish", message)
        } else {
            EventSpec::warning("RunFailed", "Finish", message)
        });
    }

    fn finish(mut self) -> Decision {
        let now = self.input.now;
        let gen = self.input.generation;
        let st = &mut self.st;
        if st.completion_time.is_none() {
            if self.input.run.spec.suspend {
                st.phase = RunPhase::Suspended;
            }
            st.message = Some(match st.phase {
                RunPhase::Preparing => {
                    "pinning the revision and creating the integration branch".to_owned()
                }
                RunPhase::Running => format!("running level {}", st.current_level.unwrap_or(0)),
                RunPhase::Merging => format!("merging level {}", st.current_level.unwrap_or(0)),
                RunPhase::Suspended => {
                    "suspended: set spec.suspend to false to continue".to_owned()
                }
                _ => st.message.clone().unwrap_or_default(),
            });
        }
        let started = st
            .levels
            .iter()
            .filter(|l| l.phase != LevelPhase::Pending)
            .count();
        st.level = Some(format!("{started}/{}", st.levels.len()));
        st.summary = status::summarize(st);
        let s = st.summary.clone();
        let message = st.message.clone().unwrap_or_default();
        let phase_reason = format!("{:?}", st.phase);
        set_condition(
            &mut st.conditions,
            condition::SPEC_VALID,
            true,
            "Planned",
            &format!("{} modules in {} levels", s.total, st.levels.len()),
            now,
            gen,
        );
        set_condition(
            &mut st.conditions,
            condition::READY,
            st.phase == RunPhase::Succeeded,
            &phase_reason,
            &message,
            now,
            gen,
        );
        let progressing = !st.phase.is_finished() && st.phase != RunPhase::Suspended;
        set_condition(
            &mut st.conditions,
            condition::PROGRESSING,
            progressing,
            &phase_reason,
            &message,
            now,
            gen,
        );
        let lost = s.failed + s.skipped + s.conflicts;
        let (degraded, reason, text) = if st.phase == RunPhase::Failed {
            (true, "RunFailed", message.clone())
        } else if lost > 0 {
            (
                true,
                "ModulesLost",
                format!(
                    "{} failed, {} skipped, {} conflicts",
                    s.failed, s.skipped, s.conflicts
                ),
            )
        } else {
            (false, "AsExpected", String::new())
        };
        set_condition(
            &mut st.conditions,
            condition::DEGRADED,
            degraded,
            reason,
            &text,
            now,
            gen,
        );
        self.out.status = self.st;
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use lapidary_api::{IntegrationRun, Outcome, Role};
    use serde_json::json;

    const NOW: &str = "2026-12-03T12:00:00Z";

    fn renderer(run: &IntegrationRun) -> RunRef<'_> {
        RunRef {
            name: RUN,
            namespace: NS,
            uid: RUN_UID,
            spec: &run.spec,
            default_image: render::DEFAULT_IMAGE,
        }
    }

    fn decide_with(run: &IntegrationRun, jobs: &[Job], pods: &[Pod]) -> Decision {
        let observed = Observed {
            jobs: jobs
                .iter()
                .map(|j| (j.metadata.name.clone().unwrap(), j))
                .collect(),
            pods: pods.iter().collect(),
        };
        let old = run.status.clone().unwrap_or_default();
        decide(&Input {
            run: renderer(run),
            generation: Some(1),
            old: &old,
            observed: &observed,
            now: NOW,
        })
    }

    /// Level 0 merged with `fold` and `vision` in the given phases; head = commit d.
    fn after_level0(fold: ModulePhase, vision: ModulePhase) -> IntegrationRunStatus {
        let first = decide_with(&run(None), &[], &[]).status;
        let mut st = first;
        st.base_commit = Some(commit('a'));
        st.head_commit = Some(commit('d'));
        st.levels[0].phase = LevelPhase::Succeeded;
        st.levels[0].merged_commit = Some(commit('d'));
        st.modules[0].phase = fold;
        st.modules[1].phase = vision;
        st
    }

    #[test]
    fn a_failed_attempt_being_retried_is_running_with_its_message() {
        let mut st = after_level0(ModulePhase::Pending, ModulePhase::Pending);
        st.levels[0] = LevelStatus {
            index: 0,
            modules: 2,
            job: Some("gems-level-0".into()),
            phase: LevelPhase::Running,
            ..Default::default()
        };
        let r = run(Some(st));
        let job = observed_job(
            renderer(&r)
                .level_job(0, &commit('a'), &[0, 1], None)
                .unwrap(),
            json!({"active": 2}),
        );
        let pods = [pod(&job, "p0", Some(0), 0, Some(1), "")];
        let d = decide_with(&r, &[job], &pods);
        let fold = &d.status.modules[0];
        assert_eq!(fold.phase, ModulePhase::Running);
        assert!(fold.message.as_deref().unwrap().contains("exit code 1"));
        assert!(d.jobs.is_empty());
        assert!(
            d.events.is_empty(),
            "a retry is no failure yet: {:?}",
            d.events
        );
    }

    #[test]
    fn more_failures_than_allowed_stop_the_run_after_merging_the_level() {
        let mut r = run(None);
        r.spec.max_failed_modules = Some(0);
        let mut st = after_level0(ModulePhase::Failed, ModulePhase::Succeeded);
        st.levels[0].phase = LevelPhase::Merging;
        st.levels[0].merge_job = Some("gems-merge-0".into());
        r.status = Some(st);
        let merge = observed_job(
            renderer(&r).merge_job(0, &commit('a'), &[1]).unwrap(),
            job_done("Complete", "", ""),
        );
        let doc = result(Role::Merge, Outcome::Succeeded, |d| {
            d.commit = Some(commit('e'))
        });
        let pods = [pod(&merge, "m", None, 0, Some(0), &doc)];
        let d = decide_with(&r, &[merge], &pods);
        assert!(d.jobs.is_empty(), "no further level starts");
        assert_eq!(d.status.phase, RunPhase::Failed);
        assert_eq!(
            d.status.head_commit,
            Some(commit('e')),
            "the level is still merged"
        );
        let msg = d.status.message.clone().unwrap();
        assert!(msg.contains("more than maxFailedModules (0)"), "{msg}");
        assert!(msg.contains("1 of 3 modules integrated"), "{msg}");
        assert_eq!(d.status.levels[1].phase, LevelPhase::Skipped);
        assert_eq!(d.status.modules[2].phase, ModulePhase::Skipped);
    }

    #[test]
    fn the_level_job_gets_the_remaining_failure_allowance() {
        let mut r = run(None);
        r.spec.max_failed_modules = Some(3);
        r.spec.modules[1].depends_on.clear(); // dream may run although fold failed
        let mut st = after_level0(ModulePhase::Failed, ModulePhase::Succeeded);
        st.levels[0].phase = LevelPhase::Succeeded;
        r.status = Some(st);
        let d = decide_with(&r, &[], &[]);
        // dream moved to level 0 once its dependency was dropped: the plan changed.
        assert!(d
            .invalid
            .as_deref()
            .unwrap()
            .contains("spec.modules changed"));
        let mut r = run(None);
        r.spec.max_failed_modules = Some(3);
        let mut st = after_level0(ModulePhase::Succeeded, ModulePhase::Failed);
        st.levels[0].phase = LevelPhase::Succeeded;
        r.status = Some(st);
        let d = decide_with(&r, &[], &[]);
        let job = &d.jobs[0];
        assert_eq!(job.metadata.name.as_deref(), Some("gems-level-1"));
        assert_eq!(
            job.spec.as_ref().unwrap().max_failed_indexes,
            Some(1),
            "min(3 - 1 failed, 1 completion)"
        );
        assert_eq!(d.status.phase, RunPhase::Running);
        assert!(
            d.configmap.is_some(),
            "the ConfigMap is applied before every Job"
        );
    }

    #[test]
    fn merge_conflicts_mark_modules_conflict() {
        let mut st = after_level0(ModulePhase::Succeeded, ModulePhase::Succeeded);
        st.levels[0].phase = LevelPhase::Merging;
        st.levels[0].succeeded = 2;
        st.levels[0].merge_job = Some("gems-merge-0".into());
        let r = run(Some(st));
        let merge = observed_job(
            renderer(&r).merge_job(0, &commit('a'), &[0, 1]).unwrap(),
            job_done("Complete", "", ""),
        );
        let doc = result(Role::Merge, Outcome::Succeeded, |d| {
            d.commit = Some(commit('e'));
            d.conflicts = vec!["vision".into()];
        });
        let pods = [pod(&merge, "m", None, 0, Some(0), &doc)];
        let d = decide_with(&r, &[merge], &pods);
        assert_eq!(d.status.modules[1].phase, ModulePhase::Conflict);
        assert_eq!(d.status.levels[0].succeeded, 1);
        assert_eq!(d.status.summary.conflicts, 1);
        // fold succeeded: level 1 (dream) starts on the merged head.
        let job = &d.jobs[0];
        assert!(job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .args
            .as_ref()
            .unwrap()
            .contains(&commit('e')));
        assert_eq!(d.events[0].reason, "Merged");
        assert!(d.events[0].warning);
    }

    #[test]
    fn a_failed_prepare_fails_the_run() {
        let mut r = run(None);
        r.status = Some(IntegrationRunStatus {
            start_time: Some(NOW.into()),
            ..Default::default()
        });
        let prep = observed_job(
            renderer(&r).prepare_job().unwrap(),
            job_done("Failed", "", ""),
        );
        let doc = result(Role::Prepare, Outcome::Failed, |d| {
            d.error = Some("revision nope not found".into())
        });
        let pods = [pod(&prep, "p", None, 0, Some(3), &doc)];
        let d = decide_with(&r, &[prep], &pods);
        assert_eq!(d.status.phase, RunPhase::Failed);
        assert!(d
            .status
            .message
            .as_deref()
            .unwrap()
            .contains("revision nope not found"));
        assert!(d
            .status
            .modules
            .iter()
            .all(|m| m.phase == ModulePhase::Skipped));
        assert!(d.finished());
    }

    #[test]
    fn a_fully_integrated_run_succeeds_and_is_ready() {
        let mut st = after_level0(ModulePhase::Succeeded, ModulePhase::Succeeded);
        st.levels[1] = LevelStatus {
            index: 1,
            modules: 1,
            job: Some("gems-level-1".into()),
            merge_job: Some("gems-merge-1".into()),
            phase: LevelPhase::Merging,
            succeeded: 1,
            ..Default::default()
        };
        st.modules[2].phase = ModulePhase::Succeeded;
        let r = run(Some(st));
        let merge = observed_job(
            renderer(&r).merge_job(1, &commit('d'), &[0]).unwrap(),
            job_done("Complete", "", ""),
        );
        let doc = result(Role::Merge, Outcome::Succeeded, |d| {
            d.commit = Some(commit('f'))
        });
        let pods = [pod(&merge, "m", None, 0, Some(0), &doc)];
        let d = decide_with(&r, &[merge], &pods);
        assert_eq!(d.status.phase, RunPhase::Succeeded);
        assert_eq!(d.status.head_commit, Some(commit('f')));
        let ready = status::get_condition(&d.status, condition::READY).unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(d.status.level.as_deref(), Some("2/2"));
        // Finished: a later reconcile changes nothing and creates nothing.
        let again = run(Some(d.status.clone()));
        let d2 = decide_with(&again, &[], &[]);
        assert!(d2.jobs.is_empty() && d2.events.is_empty());
        assert!(!status::changed(&d.status, &d2.status));
    }

    #[test]
    fn a_suspended_new_run_creates_nothing() {
        let mut r = run(None);
        r.spec.suspend = true;
        let d = decide_with(&r, &[], &[]);
        assert!(d.jobs.is_empty() && d.configmap.is_none());
        assert_eq!(d.status.phase, RunPhase::Suspended);
    }

    #[test]
    fn a_second_decision_on_the_written_status_is_identical() {
        let d1 = decide_with(&run(None), &[], &[]);
        let d2 = decide_with(&run(Some(d1.status.clone())), &[], &[]);
        assert!(!status::changed(&d1.status, &d2.status));
        // Same deterministic Job: applying it again is a no-op.
        assert_eq!(d1.jobs, d2.jobs);
    }
}

#[cfg(test)]
mod scale {
    use super::*;
    use crate::fixtures::{commit, module_ok, observed_job, pod, NS, RUN, RUN_UID};
    use lapidary_api::IntegrationRun;
    use serde_json::json;

    /// One level of 5,000 modules whose Job completed: every pod's result lands in
    /// status, and the merge Job lists every module. Prints how long deciding took.
    #[test]
    fn a_5000_module_level_is_aggregated() {
        let n = 5000;
        let modules: Vec<_> = (0..n)
            .map(|i| json!({"name": format!("memory_fold_mod_{i:04}"), "path": format!("candidate/m/{i}"), "target": format!("lukhas/m/{i}")}))
            .collect();
        let mut run: IntegrationRun = serde_json::from_value(json!({
            "apiVersion": "lapidary.dev/v1alpha1", "kind": "IntegrationRun",
            "metadata": {"name": RUN, "namespace": NS, "uid": RUN_UID, "generation": 1},
            "spec": {"repository": {"url": "git://127.0.0.1/r.git"}, "modules": modules},
        }))
        .unwrap();
        let r = RunRef {
            name: RUN,
            namespace: NS,
            uid: RUN_UID,
            spec: &run.spec,
            default_image: "i",
        };
        let all: Vec<usize> = (0..n).collect();
        let job = observed_job(
            r.level_job(0, &commit('a'), &all, None).unwrap(),
            json!({"conditions": [{"type": "Complete", "status": "True"}], "completedIndexes": format!("0-{}", n - 1)}),
        );
        let pods: Vec<Pod> = (0..n)
            .map(|i| {
                pod(
                    &job,
                    &format!("p{i}"),
                    Some(i),
                    0,
                    Some(0),
                    &module_ok(&format!("memory_fold_mod_{i:04}"), 'b'),
                )
            })
            .collect();
        let mut st = IntegrationRunStatus {
            base_commit: Some(commit('a')),
            head_commit: Some(commit('a')),
            start_time: Some("t".into()),
            ..Default::default()
        };
        st.levels.push(LevelStatus {
            index: 0,
            modules: n as i32,
            job: Some(format!("{RUN}-level-0")),
            phase: LevelPhase::Running,
            ..Default::default()
        });
        st.modules = (0..n)
            .map(|i| ModuleStatus {
                name: format!("memory_fold_mod_{i:04}"),
                ..Default::default()
            })
            .collect();
        run.status = Some(st);
        let old = run.status.clone().unwrap();
        let observed = Observed {
            jobs: [(format!("{RUN}-level-0"), &job)].into_iter().collect(),
            pods: pods.iter().collect(),
        };
        let r = RunRef {
            name: RUN,
            namespace: NS,
            uid: RUN_UID,
            spec: &run.spec,
            default_image: "i",
        };
        let started = std::time::Instant::now();
        let d = decide(&Input {
            run: r,
            generation: Some(1),
            old: &old,
            observed: &observed,
            now: "t",
        });
        println!(
            "decide over {n} modules and {n} pods took {:?}",
            started.elapsed()
        );
        assert_eq!(d.status.summary.succeeded, n as i32);
        let merge = &d.jobs[0];
        assert_eq!(merge.metadata.name.as_deref(), Some("gems-merge-0"));
        let bytes = serde_json::to_vec(&d.status).unwrap().len();
        println!("status after the level: {bytes} bytes");
    }
}
