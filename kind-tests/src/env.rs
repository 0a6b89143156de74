//! What the tests need from their environment (set by kind-tests/e2e.sh).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::kubectl::Kubectl;

/// The environment of one test process.
#[derive(Debug, Clone)]
pub struct E2e {
    /// kubectl with the cluster's kubeconfig.
    pub kubectl: Kubectl,
    /// Directory served by the git servers (bare repositories go here).
    pub git_root: PathBuf,
    /// `git://ADDR:PORT` as the pods reach the git daemon.
    pub git_url: String,
    /// `http://ADDR:PORT` as the pods reach the token-protected HTTP server.
    pub git_http_url: String,
    /// `git://127.0.0.1:PORT` for the host.
    pub git_local_url: String,
    /// The HTTP server's token.
    pub git_token: String,
    /// The host-built `lapidary-integrator` (example repositories and local mode).
    pub integrator: PathBuf,
    /// Namespace of the operator.
    pub operator_namespace: String,
    /// Name of the operator's Deployment.
    pub operator_deployment: String,
    /// Where scenarios keep their files (example repositories, clones).
    pub work_dir: PathBuf,
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set: the end-to-end tests need a cluster with lapidary installed and \
             the git servers; run them with kind-tests/e2e.sh"
        ),
    }
}

fn optional(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl E2e {
    /// The environment, checked once per process: panics (failing the test) when a
    /// variable is missing or the cluster does not answer.
    pub fn get() -> &'static E2e {
        static ENV: OnceLock<E2e> = OnceLock::new();
        ENV.get_or_init(|| {
            let kubeconfig = PathBuf::from(required("KUBECONFIG"));
            assert!(
                kubeconfig.is_file(),
                "KUBECONFIG={} is not a file: is the cluster up?",
                kubeconfig.display()
            );
            let kubectl = Kubectl {
                bin: PathBuf::from(optional("KUBECTL", "kubectl")),
                kubeconfig,
            };
            let ready = kubectl.run(&["get", "--raw", "/readyz"]);
            assert!(
                ready.status.success(),
                "the cluster's API server does not answer: {}",
                String::from_utf8_lossy(&ready.stderr)
            );
            let integrator = PathBuf::from(required("LAPIDARY_INTEGRATOR_BIN"));
            assert!(
                integrator.is_file(),
                "LAPIDARY_INTEGRATOR_BIN={} is not a file",
                integrator.display()
            );
            let git_root = PathBuf::from(required("LAPIDARY_GIT_ROOT"));
            assert!(
                git_root.is_dir(),
                "LAPIDARY_GIT_ROOT={} is not a directory",
                git_root.display()
            );
            let work_dir = PathBuf::from(optional(
                "LAPIDARY_E2E_WORK",
                &std::env::temp_dir().join("lapidary-e2e").to_string_lossy(),
            ));
            if let Err(e) = std::fs::create_dir_all(&work_dir) {
                panic!("cannot create {}: {e}", work_dir.display());
            }
            E2e {
                kubectl,
                git_root,
                git_url: required("LAPIDARY_GIT_URL"),
                git_http_url: required("LAPIDARY_GIT_HTTP_URL"),
                git_local_url: required("LAPIDARY_GIT_LOCAL_URL"),
                git_token: required("LAPIDARY_GIT_TOKEN"),
                integrator,
                operator_namespace: optional("LAPIDARY_OPERATOR_NAMESPACE", "lapidary-system"),
                operator_deployment: optional("LAPIDARY_OPERATOR_DEPLOYMENT", "lapidary-operator"),
                work_dir,
            }
        })
    }

    /// The label selector of the operator's pods (from its Deployment).
    pub fn operator_selector(&self) -> String {
        let deploy = self.kubectl.json(&[
            "-n",
            &self.operator_namespace,
            "get",
            "deployment",
            &self.operator_deployment,
            "-o",
            "json",
        ]);
        let labels = deploy["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap_or_else(|| {
                panic!("Deployment {} has no matchLabels", self.operator_deployment)
            });
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every log line of the operator's current pods (and of their previous
    /// containers, when they restarted).
    pub fn operator_logs(&self) -> String {
        let selector = self.operator_selector();
        let ns = &self.operator_namespace;
        let mut out = String::new();
        let pods = self
            .kubectl
            .json(&["-n", ns, "get", "pods", "-l", &selector, "-o", "json"]);
        for pod in pods["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            for previous in [true, false] {
                let mut args = vec!["-n", ns.as_str(), "logs", name, "--all-containers"];
                if previous {
                    args.push("--previous");
                }
                let o = self.kubectl.run(&args);
                if o.status.success() {
                    out.push_str(&String::from_utf8_lossy(&o.stdout));
                }
            }
        }
        out
    }
}
