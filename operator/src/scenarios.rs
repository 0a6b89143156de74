//! Reconcile scenarios against a mocked API server: each test gives the reconciler a
//! run and the Jobs and pods it would observe, then checks every API call it makes,
//! in order (method, path, body), and that it makes no other.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use lapidary_api::crd::{LevelPhase, ModulePhase, RunPhase};
use lapidary_api::{contract, IntegrationRun, IntegrationRunStatus, Outcome, Role};
use serde_json::json;

use crate::error::Error;
use crate::fixtures::*;
use crate::reconcile::reconcile;
use crate::render::{RunRef, DEFAULT_IMAGE};

fn renderer(run: &IntegrationRun) -> RunRef<'_> {
    RunRef {
        name: RUN,
        namespace: NS,
        uid: RUN_UID,
        spec: &run.spec,
        default_image: DEFAULT_IMAGE,
    }
}

fn env(job: &Job, name: &str) -> Option<String> {
    job.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

fn args(job: &Job) -> Vec<String> {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
}

/// Status of a run whose prepare pinned commit `a`, and whose level 0 runs.
fn level0_running() -> IntegrationRunStatus {
    let mut st = started();
    st.phase = RunPhase::Running;
    st.levels[0].phase = LevelPhase::Running;
    st.levels[0].job = Some(format!("{RUN}-level-0"));
    st
}

/// Status right after the prepare Job succeeded (base and head commit `a`).
fn started() -> IntegrationRunStatus {
    let run = run(None);
    let doc = lapidary_api::PlanDocument::from_spec(RUN, &run.spec).unwrap();
    let mut st = IntegrationRunStatus {
        base_commit: Some(commit('a')),
        head_commit: Some(commit('a')),
        start_time: Some("2026-12-03T10:00:00Z".into()),
        ..Default::default()
    };
    for m in &doc.plan.modules {
        st.modules.push(lapidary_api::crd::ModuleStatus {
            name: m.name.clone(),
            level: m.level as i32,
            ..Default::default()
        });
    }
    for (k, l) in doc.plan.levels.iter().enumerate() {
        st.levels.push(lapidary_api::crd::LevelStatus {
            index: k as i32,
            modules: l.len() as i32,
            ..Default::default()
        });
    }
    st
}

fn module<'a>(st: &'a IntegrationRunStatus, name: &str) -> &'a lapidary_api::crd::ModuleStatus {
    st.modules.iter().find(|m| m.name == name).unwrap()
}

async fn reconcile_with(
    run: IntegrationRun,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
) -> (
    tokio::task::JoinHandle<crate::Result<kube::runtime::controller::Action>>,
    ApiServerVerifier,
    Arc<IntegrationRun>,
) {
    let (ctx, verifier) = context(jobs, pods);
    let run = Arc::new(run);
    let task = tokio::spawn(reconcile(run.clone(), ctx));
    (task, verifier, run)
}

#[tokio::test]
async fn fresh_run_creates_the_plan_configmap_and_the_prepare_job() {
    let (task, mut api, run) = reconcile_with(run(None), vec![], vec![]).await;
    let cm = api.expect_configmap().await;
    let plan =
        contract::PlanDocument::parse(cm.body["data"]["plan.json"].as_str().unwrap()).unwrap();
    assert_eq!(plan.plan.levels.len(), 2);
    let job = api.expect_job(&format!("{RUN}-prepare")).await;
    assert_eq!(args(&job)[0], "prepare");
    let st = api.expect_status(&run).await;
    assert_eq!(st.phase, RunPhase::Preparing);
    assert_eq!(st.modules.len(), 3);
    assert_eq!(st.level.as_deref(), Some("0/2"));
    assert_eq!(st.observed_generation, Some(1));
    let events = api.rest_are_events().await;
    assert_eq!(events[0].0, "RunStarted");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn prepared_run_starts_level_0_on_the_pinned_commit() {
    let st = IntegrationRunStatus {
        start_time: Some("2026-12-03T10:00:00Z".into()),
        ..Default::default()
    };
    let r = run(Some(st));
    let prepare = observed_job(
        renderer(&r).prepare_job().unwrap(),
        job_done("Complete", "", ""),
    );
    let doc = result(Role::Prepare, Outcome::Succeeded, |d| {
        d.commit = Some(commit('a'))
    });
    let pods = vec![pod(&prepare, "prep-1", None, 0, Some(0), &doc)];
    let (task, mut api, run) = reconcile_with(r, vec![prepare], pods).await;
    api.expect_configmap().await;
    let job = api.expect_job(&format!("{RUN}-level-0")).await;
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completions, Some(2));
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(
        env(&job, contract::ENV_MODULE_INDEXES).as_deref(),
        Some("0,1")
    );
    let a = args(&job);
    assert_eq!(a[a.len() - 1], commit('a'), "--base is the pinned commit");
    let st = api.expect_status(&run).await;
    assert_eq!(st.base_commit, Some(commit('a')));
    assert_eq!(st.head_commit, Some(commit('a')));
    assert_eq!(st.phase, RunPhase::Running);
    assert_eq!(st.current_level, Some(0));
    assert_eq!(st.levels[0].job.as_deref(), Some("gems-level-0"));
    assert_eq!(st.level.as_deref(), Some("1/2"));
    let reasons: Vec<String> = api
        .rest_are_events()
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(reasons, ["Prepared", "LevelStarted"]);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn finished_level_gets_a_merge_job_of_its_succeeded_modules() {
    let r = run(Some(level0_running()));
    let level = observed_job(
        renderer(&r)
            .level_job(0, &commit('a'), &[0, 1], None)
            .unwrap(),
        job_done("Complete", "0-1", ""),
    );
    let pods = vec![
        pod(&level, "l0-0", Some(0), 0, Some(0), &module_ok("fold", 'b')),
        pod(
            &level,
            "l0-1",
            Some(1),
            0,
            Some(0),
            &module_ok("vision", 'c'),
        ),
    ];
    let (task, mut api, run) = reconcile_with(r, vec![level], pods).await;
    api.expect_configmap().await;
    let merge = api.expect_job(&format!("{RUN}-merge-0")).await;
    assert_eq!(
        env(&merge, contract::ENV_MODULE_INDEXES).as_deref(),
        Some("0,1")
    );
    assert_eq!(args(&merge)[0], "merge");
    assert_eq!(merge.spec.as_ref().unwrap().backoff_limit, Some(2));
    let st = api.expect_status(&run).await;
    assert_eq!(st.phase, RunPhase::Merging);
    assert_eq!(st.levels[0].phase, LevelPhase::Merging);
    assert_eq!(st.levels[0].succeeded, 2);
    let fold = module(&st, "fold");
    assert_eq!(fold.phase, ModulePhase::Succeeded);
    assert_eq!(
        fold.commit,
        Some(commit('b')[..12].to_owned()),
        "abbreviated"
    );
    assert_eq!(fold.attempts, 1);
    assert_eq!(st.summary.succeeded, 2);
    let reasons: Vec<String> = api
        .rest_are_events()
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(reasons, ["LevelFinished"]);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn dependents_of_a_failed_module_are_skipped_and_the_run_fails_with_counts() {
    let mut st = level0_running();
    st.phase = RunPhase::Merging;
    st.levels[0].phase = LevelPhase::Merging;
    st.levels[0].merge_job = Some(format!("{RUN}-merge-0"));
    st.modules[0].phase = ModulePhase::Failed; // fold
    st.modules[0].message = Some("exit code 1: boom".into());
    st.modules[1].phase = ModulePhase::Succeeded; // vision
    st.modules[1].commit = Some(commit('c'));
    let r = run(Some(st));
    let merge = observed_job(
        renderer(&r).merge_job(0, &commit('a'), &[1]).unwrap(),
        job_done("Complete", "", ""),
    );
    let doc = result(Role::Merge, Outcome::Succeeded, |d| {
        d.commit = Some(commit('d'))
    });
    let pods = vec![pod(&merge, "m0", None, 0, Some(0), &doc)];
    let (task, mut api, run) = reconcile_with(r, vec![merge], pods).await;
    let st = api.expect_status(&run).await;
    let dream = module(&st, "dream");
    assert_eq!(dream.phase, ModulePhase::Skipped);
    assert!(
        dream.message.as_deref().unwrap().contains("fold"),
        "{dream:?}"
    );
    assert_eq!(st.levels[0].merged_commit, Some(commit('d')));
    assert_eq!(st.head_commit, Some(commit('d')));
    assert_eq!(st.levels[1].phase, LevelPhase::Skipped);
    assert_eq!(st.phase, RunPhase::Failed);
    assert!(st.completion_time.is_some());
    assert_eq!(
        st.message.as_deref(),
        Some("1 of 3 modules integrated; 1 failed, 1 skipped, 0 conflicts")
    );
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    let reasons: Vec<String> = api
        .rest_are_events()
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(reasons, ["Merged", "LevelSkipped", "RunFailed"]);
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn restarted_operator_mid_level_creates_no_second_job_and_writes_nothing_unchanged() {
    let mut st = level0_running();
    // Level 0 merged; level 1 runs (status as a previous operator left it).
    st.levels[0].phase = LevelPhase::Succeeded;
    st.levels[0].merge_job = Some(format!("{RUN}-merge-0"));
    st.levels[0].merged_commit = Some(commit('d'));
    st.levels[0].succeeded = 2;
    st.head_commit = Some(commit('d'));
    st.modules[0].phase = ModulePhase::Succeeded;
    st.modules[1].phase = ModulePhase::Succeeded;
    st.modules[2].phase = ModulePhase::Running;
    st.levels[1].phase = LevelPhase::Running;
    st.levels[1].job = Some(format!("{RUN}-level-1"));
    st.current_level = Some(1);
    let r = run(Some(st));
    let level1 = observed_job(
        renderer(&r).level_job(1, &commit('d'), &[0], None).unwrap(),
        json!({"active": 1}),
    );
    let pods = vec![pod(&level1, "l1-0", Some(0), 0, None, "")];
    // First pass: whatever the old status lacked (message, conditions) is written.
    let (task, mut api, run) = reconcile_with(r, vec![level1.clone()], pods.clone()).await;
    let st = api.expect_status(&run).await;
    assert_eq!(st.phase, RunPhase::Running);
    assert_eq!(st.level.as_deref(), Some("2/2"));
    assert!(api.rest_are_events().await.is_empty());
    task.await.unwrap().unwrap();
    // Second pass over the written status: no call at all.
    let again = crate::fixtures::run(Some(st));
    let (task, api, _) = reconcile_with(again, vec![level1], pods).await;
    assert!(api.rest_are_events().await.is_empty());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_termination_message_is_a_failed_attempt_with_a_message() {
    let r = run(Some(level0_running()));
    let level = observed_job(
        renderer(&r)
            .level_job(0, &commit('a'), &[0, 1], None)
            .unwrap(),
        json!({"active": 1, "failedIndexes": "0"}),
    );
    let pods = vec![
        pod(
            &level,
            "l0-0-a",
            Some(0),
            0,
            Some(1),
            "thread 'main' panicked at src/main.rs",
        ),
        pod(
            &level,
            "l0-0-b",
            Some(0),
            9,
            Some(1),
            "Traceback (most recent call last)",
        ),
        pod(&level, "l0-1", Some(1), 0, None, ""),
    ];
    let (task, mut api, run) = reconcile_with(r, vec![level], pods).await;
    let st = api.expect_status(&run).await;
    let fold = module(&st, "fold");
    assert_eq!(fold.phase, ModulePhase::Failed);
    assert_eq!(fold.attempts, 2);
    let msg = fold.message.as_deref().unwrap();
    assert!(
        msg.contains("malformed") && msg.contains("Traceback"),
        "{msg}"
    );
    assert_eq!(module(&st, "vision").phase, ModulePhase::Running);
    let degraded = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "True");
    let events = api.rest_are_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "ModuleFailed");
    assert!(events[0].1.contains("fold"), "{:?}", events[0]);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn suspend_patches_the_running_job_and_sets_phase_suspended() {
    let mut r = run(Some(level0_running()));
    r.spec.suspend = true;
    let level = observed_job(
        renderer(&run(None))
            .level_job(0, &commit('a'), &[0, 1], None)
            .unwrap(),
        json!({"active": 2}),
    );
    let (task, mut api, run) = reconcile_with(r, vec![level], vec![]).await;
    let call = api
        .expect(
            http::Method::PATCH,
            &format!("/apis/batch/v1/namespaces/{NS}/jobs/{RUN}-level-0?"),
            serde_json::Value::clone,
        )
        .await;
    assert_eq!(call.body, json!({"spec": {"suspend": true}}));
    let st = api.expect_status(&run).await;
    assert_eq!(st.phase, RunPhase::Suspended);
    let progressing = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.status, "False");
    assert!(api.rest_are_events().await.is_empty());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_spec_sets_spec_valid_false_sends_an_event_and_creates_nothing() {
    let mut r = run(None);
    r.spec.modules[0].depends_on = vec!["dream".into()];
    let (task, mut api, run) = reconcile_with(r, vec![], vec![]).await;
    let st = api.expect_status(&run).await;
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "SpecValid")
        .unwrap();
    assert_eq!(cond.status, "False");
    assert!(
        cond.message.contains("dependency cycle"),
        "{}",
        cond.message
    );
    assert_eq!(st.phase, RunPhase::Failed);
    let (reason, note) = api.expect_event().await;
    assert_eq!(reason, "SpecInvalid");
    assert!(note.contains("fold") && note.contains("dream"), "{note}");
    assert!(api.rest_are_events().await.is_empty());
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)));
    assert!(err.is_permanent());
}

#[tokio::test]
async fn job_deleted_by_hand_is_recreated_for_modules_without_a_recorded_success() {
    let mut st = level0_running();
    st.modules[1].phase = ModulePhase::Succeeded; // vision, position 1 of level 0
    st.modules[1].commit = Some(commit('c'));
    let (task, mut api, run) = reconcile_with(run(Some(st)), vec![], vec![]).await;
    // Not in the cache: the reconciler asks whether it is really gone.
    api.expect(
        http::Method::GET,
        &format!("/apis/batch/v1/namespaces/{NS}/jobs/{RUN}-level-0"),
        |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
    .await;
    api.expect_configmap().await;
    let job = api.expect_job(&format!("{RUN}-level-0")).await;
    assert_eq!(job.spec.as_ref().unwrap().completions, Some(1));
    assert_eq!(
        env(&job, contract::ENV_MODULE_INDEXES).as_deref(),
        Some("0")
    );
    let st = api.expect_status(&run).await;
    assert_eq!(module(&st, "vision").phase, ModulePhase::Succeeded);
    let events = api.rest_are_events().await;
    assert!(events[0].1.contains("recreated"), "{events:?}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_job_the_cache_has_not_seen_yet_is_found_and_not_recreated() {
    let r = run(Some(level0_running()));
    let level = observed_job(
        renderer(&r)
            .level_job(0, &commit('a'), &[0, 1], None)
            .unwrap(),
        json!({"active": 2}),
    );
    let (task, mut api, run) = reconcile_with(r, vec![], vec![]).await;
    let answer = serde_json::to_value(&level).unwrap();
    api.expect(
        http::Method::GET,
        &format!("/apis/batch/v1/namespaces/{NS}/jobs/{RUN}-level-0"),
        move |_| answer,
    )
    .await;
    // No apply: only the status (message and conditions were not written yet).
    let st = api.expect_status(&run).await;
    assert_eq!(st.phase, RunPhase::Running);
    assert!(api.rest_are_events().await.is_empty());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn api_errors_are_temporary_and_labelled() {
    let (task, mut api, _) = reconcile_with(run(None), vec![], vec![]).await;
    api.expect(
        http::Method::PATCH,
        &format!("/api/v1/namespaces/{NS}/configmaps/"),
        |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd down", "reason": "InternalError", "code": 500}),
    )
    .await;
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.metric_label(), "kube");
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn an_unreadable_run_is_reported_and_skipped() {
    let guard: kube::core::DeserializeGuard<IntegrationRun> = serde_json::from_value(json!({
        "apiVersion": "lapidary.dev/v1alpha1",
        "kind": "IntegrationRun",
        "metadata": {"name": RUN, "namespace": NS, "uid": RUN_UID},
        "spec": {"repository": {"url": "x"}, "modules": [], "parallelism": "lots"},
    }))
    .unwrap();
    assert!(guard.0.is_err());
    let (ctx, api) = context(vec![], vec![]);
    let task = tokio::spawn(crate::reconcile::reconcile_guarded(Arc::new(guard), ctx));
    let events = api.rest_are_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "InvalidObject");
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.metric_label(), "invalid_object");
    assert!(err.is_permanent());
}
