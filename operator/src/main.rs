//! The `lapidary-operator` binary: a thin layer over the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lapidary_operator::cli::{self, Cli, Command, LogFormat, RunArgs};
use lapidary_operator::leader::{LeaseLock, LeaseSettings};
use lapidary_operator::metrics::{self, Health, Metrics};
use lapidary_operator::reconcile::{self, ControllerSettings};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match cli::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Plan(args) => {
            let text = match std::fs::read_to_string(&args.file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", args.file.display());
                    return ExitCode::FAILURE;
                }
            };
            match cli::plan_text(&text, args.output) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            init_tracing(args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client")?;
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let server = metrics::serve(args.metrics_addr, metrics.clone(), health.clone())
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    let server = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });

    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let mut lease = None;
    if args.leader_election.unwrap_or(in_cluster) {
        let namespace = args
            .lease_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .context("--lease-namespace (or POD_NAMESPACE) is needed for leader election")?;
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("lapidary-operator-{}", std::process::id()));
        let lock = LeaseLock::new(
            client.clone(),
            LeaseSettings {
                name: args.lease_name.clone(),
                namespace,
                identity,
                duration: Duration::from_secs(15),
                retry: Duration::from_secs(5),
            },
        );
        // A standby is healthy and ready: it serves and waits.
        health.set_ready(true);
        tracing::info!("waiting to become leader");
        lock.acquire().await;
        health.set_ready(false);
        lease = Some(lock);
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            _ = stop_rx => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let settings = ControllerSettings {
        namespace: Some(args.namespace.clone()).filter(|n| !n.is_empty()),
        default_image: args.integrator_image.clone(),
        debounce: Duration::from_millis(args.debounce_ms),
        status_interval: Duration::from_millis(args.status_interval_ms),
    };
    tracing::info!(namespace = %args.namespace, image = %settings.default_image, "starting the controller");
    let (stores, controller) = reconcile::controller(client, settings, metrics.clone(), shutdown);
    metrics.set_run_store(stores.runs.clone());
    let ready = {
        let health = health.clone();
        async move {
            if stores.wait_until_ready().await {
                tracing::info!("caches synced");
                health.set_ready(true);
            }
        }
    };
    tokio::spawn(ready);

    let lost = async {
        match &lease {
            Some(lock) => lock.keep().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(controller);
    tokio::select! {
        () = &mut controller => {
            if let Some(lock) = &lease {
                lock.release().await;
            }
            Ok(())
        }
        () = lost => {
            health.set_ready(false);
            let _ = stop_tx.send(());
            controller.await;
            server.abort();
            anyhow::bail!("lost the leader Lease; exiting so that a new leader takes over")
        }
    }
}
