//! One scenario = one namespace `e2e-<scenario>`, created fresh, deleted when the
//! scenario passes and kept, with its state printed, when it fails.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::env::E2e;
use crate::wait::wait_for;

/// A running scenario. Dropping it cleans up, or prints diagnostics when the test is
/// failing (panicking).
#[derive(Debug)]
pub struct Scenario {
    /// The environment.
    pub e2e: &'static E2e,
    /// The scenario's namespace.
    pub ns: String,
    started: Instant,
}

/// Phase of a run (`status.phase`), empty when not set yet.
pub fn phase(run: &Value) -> &str {
    run["status"]["phase"].as_str().unwrap_or_default()
}

/// The `status.modules` entry of `name`.
pub fn module_status<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["status"]["modules"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("status.modules has no {name}: {}", run["status"]))
}

/// A condition of a run, if set.
pub fn condition<'a>(run: &'a Value, type_: &str) -> Option<&'a Value> {
    run["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
}

impl Scenario {
    /// Starts scenario `name` in namespace `e2e-<name>` (recreated if a failed earlier
    /// run left it), once the operator is available.
    pub fn start(name: &str) -> Scenario {
        let e2e = E2e::get();
        let ns = format!("e2e-{name}");
        let k = &e2e.kubectl;
        if k.get("default", "namespace", &ns).is_some() {
            eprintln!("[{ns}] deleting the namespace a previous run left");
            k.ok(&["delete", "namespace", &ns, "--wait=true", "--timeout=180s"]);
        }
        k.ok(&["create", "namespace", &ns]);
        let scenario = Scenario {
            e2e,
            ns,
            started: Instant::now(),
        };
        scenario.wait_operator_available();
        scenario.log("started");
        scenario
    }

    /// Prints a line prefixed with the namespace and the seconds since the start.
    pub fn log(&self, text: &str) {
        eprintln!(
            "[{} +{:.1}s] {text}",
            self.ns,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Seconds since the scenario started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the operator's Deployment has an available replica.
    pub fn wait_operator_available(&self) {
        let e2e = self.e2e;
        wait_for(
            "the operator Deployment to be available",
            Duration::from_secs(180),
            || {
                let d = e2e
                    .kubectl
                    .get(
                        &e2e.operator_namespace,
                        "deployment",
                        &e2e.operator_deployment,
                    )
                    .ok_or_else(|| "no operator Deployment".to_owned())?;
                let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
                if available >= 1 {
                    Ok(())
                } else {
                    Err(format!("availableReplicas {available}"))
                }
            },
        );
    }

    /// The run `name`, which must exist.
    pub fn run(&self, name: &str) -> Value {
        self.e2e
            .kubectl
            .get(&self.ns, "integrationrun", name)
            .unwrap_or_else(|| panic!("IntegrationRun {}/{name} does not exist", self.ns))
    }

    /// Applies a run (or any object) in the namespace.
    pub fn apply(&self, object: &Value) {
        self.e2e.kubectl.apply(&self.ns, object);
    }

    /// Waits until the run's phase is one of `phases` (and panics early when it
    /// reaches a finished phase not among them); returns the run.
    pub fn wait_phase(&self, name: &str, phases: &[&str], timeout: Duration) -> Value {
        let what = format!("run {name} to reach phase {}", phases.join("|"));
        let mut seen = String::new();
        let run = wait_for(&what, timeout, || {
            let run = self.run(name);
            let p = phase(&run).to_owned();
            if p != seen {
                self.log(&format!(
                    "{name}: phase {p} level {} {}",
                    run["status"]["level"].as_str().unwrap_or("-"),
                    run["status"]["summary"]
                ));
                seen = p.clone();
            }
            if phases.contains(&p.as_str()) {
                return Ok(run);
            }
            if matches!(p.as_str(), "Succeeded" | "Failed") {
                panic!(
                    "run {name} finished {p}, expected {}: {}",
                    phases.join("|"),
                    run["status"]["message"]
                );
            }
            Err(format!("phase {p:?}, summary {}", run["status"]["summary"]))
        });
        run
    }

    /// The namespace's Jobs.
    pub fn jobs(&self) -> Vec<Value> {
        self.e2e.kubectl.list(&self.ns, "jobs", None)
    }

    /// The namespace's pods (optionally by label selector).
    pub fn pods(&self, selector: Option<&str>) -> Vec<Value> {
        self.e2e.kubectl.list(&self.ns, "pods", selector)
    }

    /// The namespace's Events.
    pub fn events(&self) -> Vec<Value> {
        self.e2e.kubectl.list(&self.ns, "events", None)
    }

    /// A merge patch of the run.
    pub fn patch_run(&self, name: &str, patch: Value) {
        self.e2e
            .kubectl
            .merge_patch(&self.ns, "integrationrun", name, &patch);
    }

    /// Deletes the operator's pods (without waiting for them to be gone).
    pub fn delete_operator_pods(&self) -> Vec<String> {
        let e2e = self.e2e;
        let selector = e2e.operator_selector();
        let pods = e2e
            .kubectl
            .list(&e2e.operator_namespace, "pods", Some(&selector));
        // Pods already being deleted (by an earlier call) are not deleted again.
        let names: Vec<String> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        for n in &names {
            e2e.kubectl.ok(&[
                "-n",
                &e2e.operator_namespace,
                "delete",
                "pod",
                n,
                "--wait=false",
            ]);
        }
        names
    }

    /// Creates the Secret `name` with one key.
    pub fn secret(&self, name: &str, key: &str, value: &str) {
        self.apply(&json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "Opaque",
            "stringData": {key: value},
        }));
    }

    fn diagnostics(&self) {
        let k = &self.e2e.kubectl;
        let ns = self.ns.as_str();
        eprintln!(
            "===== [{ns}] FAILED after {:.0}s: namespace kept =====",
            self.started.elapsed().as_secs_f64()
        );
        let show = |title: &str, args: &[&str]| {
            let o = k.run(args);
            eprintln!(
                "----- [{ns}] {title}\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        show("runs", &["-n", ns, "get", "integrationruns", "-o", "wide"]);
        show(
            "run status",
            &[
                "-n",
                ns,
                "get",
                "integrationruns",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}: {.status}{\"\\n\"}{end}",
            ],
        );
        show("jobs", &["-n", ns, "get", "jobs", "-o", "wide"]);
        show("pods", &["-n", ns, "get", "pods", "-o", "wide"]);
        let o = k.run(&["-n", ns, "get", "pods", "-o", "json"]);
        if let Ok(pods) = serde_json::from_slice::<Value>(&o.stdout) {
            eprintln!("----- [{ns}] pod states");
            for p in pods["items"].as_array().into_iter().flatten() {
                let state = &p["status"]["containerStatuses"][0];
                eprintln!(
                    "{} phase={} restarts={} state={}",
                    p["metadata"]["name"].as_str().unwrap_or_default(),
                    p["status"]["phase"].as_str().unwrap_or_default(),
                    state["restartCount"],
                    state["state"]
                );
            }
        }
        show(
            "events",
            &["-n", ns, "get", "events", "--sort-by=.lastTimestamp"],
        );
        let logs = self.e2e.operator_logs();
        let lines: Vec<&str> = logs.lines().collect();
        let mine: Vec<&str> = lines.iter().copied().filter(|l| l.contains(ns)).collect();
        eprintln!(
            "----- [{ns}] operator log lines naming {ns} (last 150 of {})",
            mine.len()
        );
        for l in mine.iter().skip(mine.len().saturating_sub(150)) {
            eprintln!("{l}");
        }
        eprintln!("----- [{ns}] operator log, last 40 lines");
        for l in lines.iter().skip(lines.len().saturating_sub(40)) {
            eprintln!("{l}");
        }
        eprintln!("===== [{ns}] end of diagnostics =====");
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.diagnostics();
        } else {
            let o = self
                .e2e
                .kubectl
                .run(&["delete", "namespace", &self.ns, "--wait=false"]);
            if !o.status.success() {
                eprintln!(
                    "[{}] could not delete the namespace: {}",
                    self.ns,
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            self.log("passed; namespace deleted");
        }
    }
}
