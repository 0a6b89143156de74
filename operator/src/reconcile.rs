//! The client side of reconciling: read the stores, call [`decide`], apply children with
//! server-side apply, patch suspension, write status through the status subresource
//! (batched), send Events. Also the controller wiring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use lapidary_api::IntegrationRun;
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::decide::{decide, Decision, Input, Observed};
use crate::error::{Error, Result};
use crate::events;
use crate::metrics::Metrics;
use crate::render::{labels, RunRef, FIELD_MANAGER};
use crate::status;

/// How often a running run is looked at even without a watch event.
pub const RESYNC: Duration = Duration::from_secs(60);

/// Shared state of the reconciler.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Jobs managed by the operator.
    pub jobs: Store<Job>,
    /// Pods of the operator's Jobs.
    pub pods: Store<Pod>,
    /// Default integrator image.
    pub default_image: String,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Least time between two progress-only status writes of one run.
    pub status_interval: Duration,
    last_status_write: Mutex<HashMap<(String, String), Instant>>,
}

impl Context {
    /// A context over the given stores.
    pub fn new(
        client: Client,
        jobs: Store<Job>,
        pods: Store<Pod>,
        default_image: String,
        metrics: Arc<Metrics>,
        status_interval: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            jobs,
            pods,
            default_image,
            metrics,
            status_interval,
            last_status_write: Mutex::new(HashMap::new()),
        }
    }

    /// Time until a progress-only status write of `key` is allowed (zero: now).
    fn status_wait(&self, key: &(String, String)) -> Duration {
        let map = self
            .last_status_write
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).map_or(Duration::ZERO, |t| {
            self.status_interval.saturating_sub(t.elapsed())
        })
    }

    fn forget(&self, key: &(String, String)) {
        let mut map = self
            .last_status_write
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    fn status_written(&self, key: (String, String)) {
        let mut map = self
            .last_status_write
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.insert(key, Instant::now());
    }
}

/// The controller's entry point: a run that cannot be deserialized is reported and
/// skipped (one bad object must not stop the watch of every run).
pub async fn reconcile_guarded(
    guard: Arc<DeserializeGuard<IntegrationRun>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    match &guard.0 {
        Ok(run) => reconcile(Arc::new(run.clone()), ctx).await,
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            warn!(run = %name, error = %invalid.error, "cannot read IntegrationRun");
            let reference = ObjectReference {
                api_version: Some(IntegrationRun::api_version(&()).into_owned()),
                kind: Some(IntegrationRun::kind(&()).into_owned()),
                name: invalid.metadata.name.clone(),
                namespace: invalid.metadata.namespace.clone(),
                uid: invalid.metadata.uid.clone(),
                ..ObjectReference::default()
            };
            let ns = invalid.metadata.namespace.clone().unwrap_or_default();
            let event = events::EventSpec::warning("InvalidObject", "Read", invalid.error.clone());
            events::publish(&ctx.recorder, &reference, &ns, &[event]).await;
            let error = Error::InvalidObject(invalid.error.clone());
            ctx.metrics.observe_reconcile(Duration::ZERO, Some(&error));
            Err(error)
        }
    }
}

/// Reconciles one run.
#[instrument(skip_all, fields(run = %run.name_any(), namespace = run.namespace().as_deref().unwrap_or("")))]
pub async fn reconcile(run: Arc<IntegrationRun>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&run, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.as_ref().err());
    result
}

async fn reconcile_inner(run: &IntegrationRun, ctx: &Context) -> Result<Action> {
    let name = run
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    let ns = run
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = run
        .metadata
        .uid
        .as_deref()
        .ok_or(Error::MissingField("metadata.uid"))?;

    let old = run.status.clone().unwrap_or_default();
    let owned = |j: &Job| {
        j.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.uid == uid && r.controller == Some(true)))
    };
    let mut jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns) && owned(j))
        .collect();
    // A Job that status says exists but the cache lacks was either just created (the
    // watch lags) or deleted by hand: ask the API server which.
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    for expected in expected_jobs(name, &old) {
        if jobs
            .iter()
            .all(|j| j.metadata.name.as_deref() != Some(&expected))
        {
            if let Some(job) = job_api.get_opt(&expected).await?.filter(|j| owned(j)) {
                jobs.push(Arc::new(job));
            } else {
                info!(job = %expected, "Job recorded in status is gone; it will be created again");
            }
        }
    }
    let pods = ctx.pods.state();
    let observed = Observed {
        jobs: jobs
            .iter()
            .filter_map(|j| Some((j.metadata.name.clone()?, j.as_ref())))
            .collect(),
        pods: pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| p.labels().get(labels::RUN).map(String::as_str) == Some(name))
            .map(|p| p.as_ref())
            .collect(),
    };
    let now = Timestamp::now().to_string();
    let decision = decide(&Input {
        run: RunRef {
            name,
            namespace: ns,
            uid,
            spec: &run.spec,
            default_image: &ctx.default_image,
        },
        generation: run.metadata.generation,
        old: &old,
        observed: &observed,
        now: &now,
    });
    apply(ctx, ns, &decision).await?;
    let key = (ns.to_owned(), name.to_owned());
    let mut requeue = None;
    if status::changed(&old, &decision.status) {
        let wait = ctx.status_wait(&key);
        if status::progress_only(&old, &decision.status) && !wait.is_zero() {
            // Many pods finishing together: batch their results into one write.
            requeue = Some(wait);
        } else {
            write_status(ctx, ns, name, &decision).await?;
            if decision.finished() {
                ctx.forget(&key);
            } else {
                ctx.status_written(key);
            }
            ctx.metrics.record_modules(&old, &decision.status);
        }
    }
    if !decision.events.is_empty() {
        let reference = run.object_ref(&());
        events::publish(&ctx.recorder, &reference, ns, &decision.events).await;
    }
    if let Some(message) = decision.invalid {
        return Err(Error::InvalidSpec(message));
    }
    Ok(match (decision.finished(), requeue) {
        (_, Some(wait)) => Action::requeue(wait),
        (true, None) => Action::await_change(),
        (false, None) => Action::requeue(RESYNC),
    })
}

/// Jobs that status says were created and are still of use: the prepare Job until
/// the base is pinned, each running level's Job and each merging level's merge Job.
fn expected_jobs(run: &str, status: &lapidary_api::IntegrationRunStatus) -> Vec<String> {
    use lapidary_api::crd::LevelPhase;
    let mut out = Vec::new();
    if status.completion_time.is_some() {
        return out;
    }
    if status.base_commit.is_none() && status.phase == lapidary_api::crd::RunPhase::Preparing {
        out.push(crate::render::prepare_job_name(run));
    }
    for l in &status.levels {
        match (l.phase, &l.job, &l.merge_job) {
            (LevelPhase::Running, Some(job), _) => out.push(job.clone()),
            (LevelPhase::Merging, _, Some(job)) => out.push(job.clone()),
            _ => {}
        }
    }
    out
}

async fn apply(ctx: &Context, ns: &str, d: &Decision) -> Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(cm) = &d.configmap {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let name = cm.metadata.name.as_deref().unwrap_or_default();
        api.patch(name, &pp, &Patch::Apply(cm)).await?;
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    for job in &d.jobs {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        info!(job = name, "applying Job");
        jobs.patch(name, &pp, &Patch::Apply(job)).await?;
    }
    for (name, suspend) in &d.suspend {
        info!(job = %name, suspend, "setting Job suspension");
        // A merge patch of one field: an apply of a partial Job would drop the fields
        // this manager owns.
        let patch = json!({"spec": {"suspend": suspend}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        jobs.patch(name, &pp, &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

async fn write_status(ctx: &Context, ns: &str, name: &str, d: &Decision) -> Result<()> {
    let api: Api<IntegrationRun> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": IntegrationRun::api_version(&()),
        "kind": IntegrationRun::kind(&()),
        "status": d.status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &pp, &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Invalid specs wait for a change; everything else is retried with a backoff.
pub fn error_policy(
    run: Arc<DeserializeGuard<IntegrationRun>>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    let name = match &run.0 {
        Ok(r) => r.name_any(),
        Err(invalid) => invalid.metadata.name.clone().unwrap_or_default(),
    };
    if error.is_permanent() {
        info!(run = %name, error = %error, "waiting for the run to change");
        Action::await_change()
    } else {
        warn!(run = %name, error = %error, label = error.metric_label(), "reconcile failed; retrying");
        Action::requeue(Duration::from_secs(10))
    }
}

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Namespace to watch; None: all.
    pub namespace: Option<String>,
    /// Default integrator image.
    pub default_image: String,
    /// Debounce of reconcile requests.
    pub debounce: Duration,
    /// Least time between progress-only status writes of a run.
    pub status_interval: Duration,
}

/// Readers of the controller's caches, for readiness.
#[derive(Clone)]
pub struct Stores {
    /// Runs.
    pub runs: Store<DeserializeGuard<IntegrationRun>>,
    /// Jobs.
    pub jobs: Store<Job>,
    /// Pods.
    pub pods: Store<Pod>,
}

impl Stores {
    /// Waits until every cache holds its first full list.
    pub async fn wait_until_ready(&self) -> bool {
        ready(&self.runs).await && ready(&self.jobs).await && ready(&self.pods).await
    }
}

/// Waits for a store's first full list. Re-polls every second: kube's readiness
/// signal wakes only the latest of several waiters (the controller also waits on the
/// runs store), so a single long wait could sleep forever.
async fn ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_elapsed) => continue,
        }
    }
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Builds the controller; returns its stores and the future that runs it until
/// `shutdown` resolves.
pub fn controller(
    client: Client,
    settings: ControllerSettings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (Stores, impl std::future::Future<Output = ()>) {
    let ns = settings.namespace.as_deref().filter(|n| !n.is_empty());
    let managed = watcher::Config::default().labels(labels::MANAGED_SELECTOR);

    let (jobs_reader, jobs_writer) = reflector::store::<Job>();
    let jobs_stream = reflector::reflector(
        jobs_writer,
        watcher(api::<Job>(&client, ns), managed.clone()),
    )
    .applied_objects();
    let (pods_reader, pods_writer) = reflector::store::<Pod>();
    let pods_stream = reflector::reflector(
        pods_writer,
        watcher(api::<Pod>(&client, ns), managed.clone())
            // Pods are many: keep only what the reconciler reads.
            .modify(|p: &mut Pod| {
                p.managed_fields_mut().clear();
                if let Some(spec) = p.spec.as_mut() {
                    spec.containers.iter_mut().for_each(|c| c.env = None);
                    spec.volumes = None;
                }
            }),
    )
    .applied_objects();

    let ctx = Arc::new(Context::new(
        client.clone(),
        jobs_reader.clone(),
        pods_reader.clone(),
        settings.default_image.clone(),
        metrics,
        settings.status_interval,
    ));
    let controller = Controller::new(
        api::<DeserializeGuard<IntegrationRun>>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<ConfigMap>(&client, ns), managed)
    .owns_stream(jobs_stream)
    .watches_stream(pods_stream, |pod: Pod| {
        let run = pod.labels().get(labels::RUN)?.clone();
        let ns = pod.namespace()?;
        Some(ObjectRef::<DeserializeGuard<IntegrationRun>>::new(&run).within(&ns))
    })
    .with_config(ControllerConfig::default().debounce(settings.debounce))
    .graceful_shutdown_on(shutdown);
    let stores = Stores {
        runs: controller.store(),
        jobs: jobs_reader,
        pods: pods_reader,
    };
    let fut = async move {
        controller
            .run(reconcile_guarded, error_policy, ctx)
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => tracing::debug!(run = %obj.name, "reconciled"),
                    Err(e) => tracing::warn!(error = %e, "reconcile error"),
                }
            })
            .await;
    };
    (stores, fut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;

    /// Our readiness waiter, then the controller's: kube wakes only the latest, and
    /// ours must still see the store ready.
    #[tokio::test]
    async fn readiness_is_seen_despite_a_second_waiter() {
        let mut writer: Writer<Pod> = Writer::default();
        let store = writer.as_reader();
        let (ours, controllers) = (store.clone(), store.clone());
        let ours = tokio::spawn(async move { ready(&ours).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let controllers = tokio::spawn(async move { controllers.wait_until_ready().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let limit = Duration::from_secs(5);
        assert!(tokio::time::timeout(limit, controllers)
            .await
            .unwrap()
            .unwrap());
        assert!(tokio::time::timeout(limit, ours).await.unwrap().unwrap());
    }
}
