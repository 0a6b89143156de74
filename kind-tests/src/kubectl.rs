//! `kubectl` through std::process, its JSON output parsed with serde_json.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A kubectl binary and the kubeconfig it uses.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The program.
    pub bin: PathBuf,
    /// The cluster's kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    /// Runs kubectl and returns whatever happened.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()))
    }

    /// Runs kubectl with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write to kubectl: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("kubectl did not finish: {e}"))
    }

    /// Runs kubectl, panics unless it succeeds, returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs kubectl (which must succeed) and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("kubectl {} printed no JSON ({e}): {text}", args.join(" ")))
    }

    /// `kubectl get KIND NAME -o json` in `ns`; `None` when it does not exist.
    pub fn get(&self, ns: &str, kind: &str, name: &str) -> Option<Value> {
        let o = self.run(&[
            "-n",
            ns,
            "get",
            kind,
            name,
            "-o",
            "json",
            "--ignore-not-found",
        ]);
        assert!(
            o.status.success(),
            "kubectl get {kind} {name} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        if text.trim().is_empty() {
            return None;
        }
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("kubectl get {kind} {name} printed no JSON ({e})")),
        )
    }

    /// The items of `kubectl get KIND [-l SELECTOR] -o json` in `ns`.
    pub fn list(&self, ns: &str, kind: &str, selector: Option<&str>) -> Vec<Value> {
        let mut args = vec!["-n", ns, "get", kind, "-o", "json"];
        if let Some(s) = selector {
            args.extend(["-l", s]);
        }
        match self.json(&args)["items"].take() {
            Value::Array(items) => items,
            other => panic!("kubectl get {kind}: no items: {other}"),
        }
    }

    /// `kubectl apply -f -` of `object` (JSON) in `ns`; the result, not checked.
    pub fn try_apply(&self, ns: &str, object: &Value) -> Output {
        self.run_with_input(&["-n", ns, "apply", "-f", "-"], &object.to_string())
    }

    /// `kubectl apply -f -` of `object` in `ns`, which must succeed.
    pub fn apply(&self, ns: &str, object: &Value) {
        let o = self.try_apply(ns, object);
        assert!(
            o.status.success(),
            "kubectl apply failed: {}\nobject: {object}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A merge patch of `kind/name` in `ns`.
    pub fn merge_patch(&self, ns: &str, kind: &str, name: &str, patch: &Value) {
        self.ok(&[
            "-n",
            ns,
            "patch",
            kind,
            name,
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ]);
    }
}
