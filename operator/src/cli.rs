//! The command line: `run`, `crd` and `plan`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kube::CustomResourceExt;
use lapidary_api::{IntegrationRun, PlanDocument};
use serde::Serialize;

use crate::render::DEFAULT_IMAGE;

/// lapidary's Kubernetes operator.
#[derive(Debug, Parser)]
#[command(name = "lapidary-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print the IntegrationRun CustomResourceDefinition as YAML.
    Crd,
    /// Plan an IntegrationRun file and print its levels.
    Plan(PlanArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Integrator image for runs that name none.
    #[arg(long, env = "LAPIDARY_INTEGRATOR_IMAGE", default_value = DEFAULT_IMAGE)]
    pub integrator_image: String,
    /// Namespace to watch; empty: all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Log format.
    #[arg(long, env = "LAPIDARY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Elect a leader through a Lease (default: true in a cluster, false outside).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: Option<bool>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "lapidary-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the operator's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Debounce of reconcile requests, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub debounce_ms: u64,
    /// Least time between two progress-only status writes of one run, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub status_interval_ms: u64,
}

/// Flags of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// An IntegrationRun manifest (YAML or JSON).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = PlanOutput::Table)]
    pub output: PlanOutput,
}

/// `plan` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    /// One line per level.
    Table,
    /// The levels as JSON.
    Json,
}

/// The CRD as YAML, exactly as committed in `deploy/crd.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&IntegrationRun::crd())
}

#[derive(Serialize)]
struct LevelRow<'a> {
    level: usize,
    modules: usize,
    names: Vec<&'a str>,
}

/// The first IntegrationRun of a (possibly multi-document) YAML or JSON text.
fn find_run(manifest: &str) -> Result<IntegrationRun, String> {
    use serde::Deserialize;
    let mut last_error = None;
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| format!("not YAML: {e}"))?;
        if value.get("kind").and_then(|k| k.as_str()) != Some("IntegrationRun") {
            continue;
        }
        match serde_yaml::from_value::<IntegrationRun>(value) {
            Ok(run) => return Ok(run),
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    Err(match last_error {
        Some(e) => format!("not a valid IntegrationRun: {e}"),
        None => "no IntegrationRun (kind: IntegrationRun) in the file".to_owned(),
    })
}

/// Plans a manifest's text and formats the levels; `Err` holds the message to print.
pub fn plan_text(manifest: &str, output: PlanOutput) -> Result<String, String> {
    let run = find_run(manifest)?;
    let name = run
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "run".to_owned());
    let doc = PlanDocument::from_spec(&name, &run.spec).map_err(|e| e.to_string())?;
    let rows: Vec<LevelRow<'_>> = doc
        .plan
        .levels
        .iter()
        .enumerate()
        .map(|(k, members)| LevelRow {
            level: k,
            modules: members.len(),
            names: doc.plan.level(k).map(|m| m.name.as_str()).collect(),
        })
        .collect();
    match output {
        PlanOutput::Json => serde_json::to_string_pretty(&serde_json::json!({
            "run": name,
            "modules": doc.plan.modules.len(),
            "levels": rows,
        }))
        .map(|s| s + "\n")
        .map_err(|e| e.to_string()),
        PlanOutput::Table => {
            let mut out = format!("{:<6} {:>7}  NAMES\n", "LEVEL", "MODULES");
            for r in &rows {
                out.push_str(&format!(
                    "{:<6} {:>7}  {}\n",
                    r.level,
                    r.modules,
                    r.names.join(", ")
                ));
            }
            out.push_str(&format!(
                "{} modules in {} levels\n",
                doc.plan.modules.len(),
                rows.len()
            ));
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_file(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel)
    }

    #[test]
    fn committed_crd_matches_the_generated_one() {
        let generated = crd_yaml().unwrap();
        let path = workspace_file("deploy/crd.yaml");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "deploy/crd.yaml is out of date; regenerate it with:\n  cargo run -p lapidary-operator -- crd > deploy/crd.yaml"
        );
    }

    #[test]
    fn gems_sample_plans_into_seven_levels() {
        let text = std::fs::read_to_string(workspace_file("deploy/samples/gems-166.yaml")).unwrap();
        let out = plan_text(&text, PlanOutput::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["modules"], 166);
        assert_eq!(v["levels"].as_array().unwrap().len(), 7);
        let table = plan_text(&text, PlanOutput::Table).unwrap();
        assert!(table.ends_with("166 modules in 7 levels\n"), "{table}");
    }

    #[test]
    fn cycle_sample_is_refused_naming_the_cycle() {
        let text = std::fs::read_to_string(workspace_file("deploy/samples/cycle.yaml")).unwrap();
        let err = plan_text(&text, PlanOutput::Table).unwrap_err();
        assert!(err.contains("dependency cycle"), "{err}");
        assert!(
            err.contains("memory_fold") && err.contains("dream_engine"),
            "{err}"
        );
    }

    #[test]
    fn every_sample_parses() {
        for f in ["small.yaml", "private-repo.yaml", "gems-166.yaml"] {
            let text =
                std::fs::read_to_string(workspace_file(&format!("deploy/samples/{f}"))).unwrap();
            // private-repo.yaml holds a Secret before the run.
            plan_text(&text, PlanOutput::Table).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(plan_text("::: not yaml", PlanOutput::Table).is_err());
        assert!(plan_text("kind: Pod", PlanOutput::Json).is_err());
    }

    #[test]
    fn flags_parse_with_defaults() {
        let cli =
            Cli::try_parse_from(["lapidary-operator", "run", "--leader-election=false"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.leader_election, Some(false));
        assert_eq!(args.lease_name, "lapidary-operator");
        assert_eq!(args.metrics_addr.port(), 8080);
        let cli =
            Cli::try_parse_from(["lapidary-operator", "plan", "x.yaml", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Plan(PlanArgs {
                output: PlanOutput::Json,
                ..
            })
        ));
    }
}
