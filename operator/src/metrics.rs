//! Prometheus metrics and the HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use lapidary_api::crd::{ModulePhase, RunPhase};
use lapidary_api::{IntegrationRun, IntegrationRunStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

const PHASES: [RunPhase; 7] = [
    RunPhase::Pending,
    RunPhase::Preparing,
    RunPhase::Running,
    RunPhase::Merging,
    RunPhase::Succeeded,
    RunPhase::Failed,
    RunPhase::Suspended,
];

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<PhaseLabels, Gauge>,
    modules: Family<OutcomeLabels, Counter>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<ErrorLabels, Counter>,
    run_store: Mutex<Option<Store<DeserializeGuard<IntegrationRun>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lapidary");
        let runs = Family::<PhaseLabels, Gauge>::default();
        let modules = Family::<OutcomeLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register("runs", "IntegrationRuns by phase", runs.clone());
        registry.register(
            "modules",
            "Modules that reached a final phase, by outcome",
            modules.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by error kind",
            reconcile_errors.clone(),
        );
        Metrics {
            registry,
            runs,
            modules,
            reconcile_duration,
            reconcile_errors,
            run_store: Mutex::new(None),
        }
    }

    /// Runs by phase are counted from this store at every scrape.
    pub fn set_run_store(&self, store: Store<DeserializeGuard<IntegrationRun>>) {
        *self.run_store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, took: Duration, error: Option<&Error>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(e) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    error: e.metric_label().to_owned(),
                })
                .inc();
        }
    }

    /// Counts modules that reached a final phase between the `old` and the written
    /// `new` status.
    pub fn record_modules(&self, old: &IntegrationRunStatus, new: &IntegrationRunStatus) {
        for (i, m) in new.modules.iter().enumerate() {
            let before = old
                .modules
                .get(i)
                .filter(|o| o.name == m.name)
                .map(|o| o.phase);
            let terminal = matches!(
                m.phase,
                ModulePhase::Succeeded
                    | ModulePhase::Failed
                    | ModulePhase::Skipped
                    | ModulePhase::Conflict
            );
            if terminal && before != Some(m.phase) {
                self.modules
                    .get_or_create(&OutcomeLabels {
                        outcome: format!("{:?}", m.phase),
                    })
                    .inc();
            }
        }
    }

    fn refresh_runs(&self) {
        let store = self
            .run_store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(store) = store else { return };
        let runs = store.state();
        for phase in PHASES {
            let n = runs
                .iter()
                .filter_map(|g| g.0.as_ref().ok())
                .filter(|r| r.status.as_ref().map(|s| s.phase).unwrap_or_default() == phase)
                .count();
            self.runs
                .get_or_create(&PhaseLabels {
                    phase: format!("{phase:?}"),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        self.refresh_runs();
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// What `/readyz` looks at.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the operator ready (caches synced as leader, or waiting as standby).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// The HTTP routes.
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Binds `addr` (failing at once when it is taken) and returns the server future,
/// which serves the routes until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(async move { axum::serve(listener, router(metrics, health)).await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapidary_api::crd::ModuleStatus;

    #[test]
    fn counters_and_histogram_are_encoded() {
        let m = Metrics::new();
        m.observe_reconcile(Duration::from_millis(5), Some(&Error::Contract("x".into())));
        let old = IntegrationRunStatus {
            modules: vec![ModuleStatus {
                name: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut new = old.clone();
        new.modules[0].phase = ModulePhase::Succeeded;
        m.record_modules(&old, &new);
        m.record_modules(&new, &new);
        let text = m.encode();
        assert!(
            text.contains(r#"lapidary_reconcile_errors_total{error="contract"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lapidary_modules_total{outcome="Succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("lapidary_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn health_endpoints_answer() {
        let health = Health::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(Metrics::new()), health.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/metrics")
            .await
            .contains("lapidary_reconcile_duration_seconds"));
    }
}
