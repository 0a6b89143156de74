//! Test-only builders of runs, Jobs and pods, and a mocked API server that checks
//! each call the reconciler makes.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::Client;
use lapidary_api::contract::ResultDocument;
use lapidary_api::{IntegrationRun, IntegrationRunStatus, Outcome, Role};
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::render::labels;

/// Namespace of the test runs.
pub const NS: &str = "lapidary";
/// Name of the test run.
pub const RUN: &str = "gems";
/// Uid of the test run.
pub const RUN_UID: &str = "run-uid-1";

/// A run of three modules in two levels: level 0 = [fold, vision], level 1 = [dream]
/// (dream depends on fold).
pub fn run(status: Option<IntegrationRunStatus>) -> IntegrationRun {
    serde_json::from_value(json!({
        "apiVersion": "lapidary.dev/v1alpha1",
        "kind": "IntegrationRun",
        "metadata": {"name": RUN, "namespace": NS, "uid": RUN_UID, "generation": 1},
        "spec": {
            "repository": {"url": "git://127.0.0.1/repo.git"},
            "parallelism": 10,
            "retries": 1,
            "modules": [
                {"name": "fold", "path": "candidate/memory/fold", "target": "lukhas/memory/fold"},
                {"name": "dream", "path": "candidate/dream", "target": "lukhas/dream", "dependsOn": ["fold"]},
                {"name": "vision", "path": "candidate/vision.py", "target": "lukhas/vision.py"},
            ],
        },
        "status": status,
    }))
    .unwrap()
}

/// A 40-hex commit made of `c`.
pub fn commit(c: char) -> String {
    c.to_string().repeat(40)
}

/// A result document's JSON.
pub fn result(role: Role, outcome: Outcome, f: impl FnOnce(&mut ResultDocument)) -> String {
    let mut d = ResultDocument::new(role, outcome);
    f(&mut d);
    serde_json::to_string(&d).unwrap()
}

/// A module's successful result.
pub fn module_ok(name: &str, c: char) -> String {
    result(Role::Module, Outcome::Succeeded, |d| {
        d.module = Some(name.into());
        d.commit = Some(commit(c));
        d.files_changed = Some(4);
    })
}

/// An observed Job: the rendered one with a uid and `status`.
pub fn observed_job(mut job: Job, status: Value) -> Job {
    let name = job.metadata.name.clone().unwrap();
    job.metadata.uid = Some(format!("uid-{name}"));
    job.status = Some(serde_json::from_value(status).unwrap());
    job
}

/// Status of a finished Job: `Complete` or `Failed`.
pub fn job_done(condition: &str, completed: &str, failed: &str) -> Value {
    json!({
        "conditions": [{"type": condition, "status": "True", "reason": if condition == "Failed" {"FailedIndexes"} else {"Completed"}, "message": ""}],
        "completedIndexes": completed,
        "failedIndexes": failed,
    })
}

/// A pod of Job `job` (observed) for run [`RUN`], terminated with `exit` (None:
/// running).
pub fn pod(
    job: &Job,
    name: &str,
    index: Option<usize>,
    created: i64,
    exit: Option<i32>,
    message: &str,
) -> Pod {
    let job_uid = job.metadata.uid.clone().unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let pod_labels = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    owned_pod(
        name,
        &job_name,
        &job_uid,
        json!(pod_labels),
        index,
        created,
        exit,
        message,
    )
}

/// A pod owned by the Job `job_name`/`job_uid`, with `labels`, at completion `index`;
/// terminated with `exit` and termination message `message`, or running.
#[allow(clippy::too_many_arguments)]
pub fn owned_pod(
    name: &str,
    job_name: &str,
    job_uid: &str,
    labels: Value,
    index: Option<usize>,
    created: i64,
    exit: Option<i32>,
    message: &str,
) -> Pod {
    let state = match exit {
        Some(code) => {
            json!({"terminated": {"exitCode": code, "message": message, "reason": if code == 0 {"Completed"} else {"Error"}}})
        }
        None => json!({"running": {}}),
    };
    let mut annotations = json!({});
    if let Some(i) = index {
        annotations = json!({ labels::COMPLETION_INDEX: i.to_string() });
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": format!("uid-{name}"),
            "labels": labels,
            "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + created).unwrap().to_string(),
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid, "controller": true}],
        },
        "status": {
            "phase": match exit { Some(0) => "Succeeded", Some(_) => "Failed", None => "Running" },
            "containerStatuses": [{"name": "integrator", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": state}],
        },
    }))
    .unwrap()
}

/// A context over stores holding `jobs` and `pods`, talking to a mocked API server.
pub fn context(jobs: Vec<Job>, pods: Vec<Pod>) -> (Arc<Context>, ApiServerVerifier) {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock, NS);
    let mut job_writer: Writer<Job> = Writer::default();
    let job_store = job_writer.as_reader();
    for j in jobs {
        job_writer.apply_watcher_event(&watcher::Event::Apply(j));
    }
    let mut pod_writer: Writer<Pod> = Writer::default();
    let pod_store = pod_writer.as_reader();
    for p in pods {
        pod_writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let ctx = Context::new(
        client,
        job_store,
        pod_store,
        crate::render::DEFAULT_IMAGE.to_owned(),
        Arc::new(Metrics::new()),
        Duration::ZERO,
    );
    (Arc::new(ctx), ApiServerVerifier { handle })
}

/// The mocked API server: each `expect_*` waits for the next call, checks it and
/// answers it.
pub struct ApiServerVerifier {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

/// One call as the server saw it.
pub struct Call {
    /// Path and query.
    pub uri: String,
    /// JSON body.
    pub body: Value,
}

impl ApiServerVerifier {
    /// Waits for the next call, asserts its method and that its path starts with
    /// `path`, answers `answer(body)` and returns the call.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        answer: impl FnOnce(&Value) -> Value,
    ) -> Call {
        let next = tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"));
        let (request, send) = next.unwrap_or_else(|| panic!("no call; expected {method} {path}"));
        let uri = request.uri().to_string();
        assert_eq!(request.method(), method, "method of {uri}");
        assert!(uri.starts_with(path), "expected {method} {path}, got {uri}");
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let reply = answer(&body);
        // A `Status` reply carries its HTTP code, as the API server's errors do.
        let code = match (reply["kind"].as_str(), reply["code"].as_u64()) {
            (Some("Status"), Some(code)) => code as u16,
            _ => 200,
        };
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        Call { uri, body }
    }

    /// An apply of the plan ConfigMap.
    pub async fn expect_configmap(&mut self) -> Call {
        let call = self
            .expect(
                Method::PATCH,
                &format!("/api/v1/namespaces/{NS}/configmaps/{RUN}-plan?"),
                Value::clone,
            )
            .await;
        assert!(
            call.uri.contains("fieldManager=lapidary-operator"),
            "{}",
            call.uri
        );
        assert!(call.uri.contains("force=true"), "{}", call.uri);
        call
    }

    /// An apply of Job `name`.
    pub async fn expect_job(&mut self, name: &str) -> Job {
        let call = self
            .expect(
                Method::PATCH,
                &format!("/apis/batch/v1/namespaces/{NS}/jobs/{name}?"),
                Value::clone,
            )
            .await;
        assert!(
            call.uri.contains("fieldManager=lapidary-operator"),
            "{}",
            call.uri
        );
        serde_json::from_value(call.body).unwrap()
    }

    /// A status apply; returns the status written.
    pub async fn expect_status(&mut self, run: &IntegrationRun) -> IntegrationRunStatus {
        let run = run.clone();
        let call = self
            .expect(
                Method::PATCH,
                &format!(
                    "/apis/lapidary.dev/v1alpha1/namespaces/{NS}/integrationruns/{RUN}/status?"
                ),
                move |body| {
                    let mut answer = serde_json::to_value(&run).unwrap();
                    answer["status"] = body["status"].clone();
                    answer
                },
            )
            .await;
        assert_eq!(call.body["apiVersion"], "lapidary.dev/v1alpha1");
        assert_eq!(call.body["kind"], "IntegrationRun");
        assert!(
            call.uri.contains("fieldManager=lapidary-operator"),
            "{}",
            call.uri
        );
        serde_json::from_value(call.body["status"].clone()).unwrap()
    }

    /// An Event; returns its reason and note.
    pub async fn expect_event(&mut self) -> (String, String) {
        let call = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
                Value::clone,
            )
            .await;
        (
            call.body["reason"].as_str().unwrap_or_default().to_owned(),
            call.body["note"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Answers every remaining Event and asserts nothing else is called; returns the
    /// Events' reasons.
    pub async fn rest_are_events(mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let next =
                tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await;
            let Ok(Some((request, send))) = next else {
                return out;
            };
            let uri = request.uri().to_string();
            assert!(
                uri.contains("/events"),
                "unexpected call {} {uri}",
                request.method()
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            out.push((
                body["reason"].as_str().unwrap_or_default().to_owned(),
                body["note"].as_str().unwrap_or_default().to_owned(),
            ));
            send.send_response(
                Response::builder()
                    .body(Body::from(bytes.to_vec()))
                    .unwrap(),
            );
        }
    }
}
