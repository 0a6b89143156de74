//! lapidary end to end (issue 5): IntegrationRuns applied with kubectl to a real
//! cluster with the operator installed, integrating example repositories served by the
//! git servers of kind-tests/git-server.sh. Run by kind-tests/e2e.sh; every test needs
//! the cluster and fails without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lapidary_kind_tests::example::{dependents, write_file, ModuleRef};
use lapidary_kind_tests::git::{self, git};
use lapidary_kind_tests::scenario::{condition, module_status, phase};
use lapidary_kind_tests::times::epoch;
use lapidary_kind_tests::{wait_for, Example, Scenario};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(-1)
}

/// Asserts the run's summary counts.
fn assert_summary(run: &Value, total: i64, succeeded: i64, failed: i64, skipped: i64) {
    let s = &run["status"]["summary"];
    assert_eq!(
        (
            int(&s["total"]),
            int(&s["succeeded"]),
            int(&s["failed"]),
            int(&s["skipped"])
        ),
        (total, succeeded, failed, skipped),
        "summary (total, succeeded, failed, skipped) is {s}"
    );
}

/// Asserts that every module of `run` is in `expected` phase (default Succeeded).
fn assert_module_phases(run: &Value, modules: &[ModuleRef], expected: &BTreeMap<String, &str>) {
    for m in modules {
        let st = module_status(run, &m.name);
        let want = expected.get(&m.name).copied().unwrap_or("Succeeded");
        assert_eq!(st["phase"], want, "module {} is {st}", m.name);
    }
}

/// Asserts that each of `modules` is at its target, and no longer at its path, in
/// `rev` of the repository `dir`.
fn assert_moved(dir: &Path, rev: &str, modules: &[&ModuleRef]) {
    let files = git::files(dir, rev);
    for m in modules {
        assert!(
            git::has_path(&files, &m.target),
            "{rev} lacks {} (module {})",
            m.target,
            m.name
        );
        assert!(
            !git::has_path(&files, &m.path),
            "{rev} still has {} (module {})",
            m.path,
            m.name
        );
    }
}

/// The table `kubectl get ir NAME` prints, as whitespace-separated cells.
fn ir_table(s: &Scenario, name: &str) -> Vec<Vec<String>> {
    s.e2e
        .kubectl
        .ok(&["-n", &s.ns, "get", "ir", name])
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Runs `lapidary-integrator local` on `run` against the bare repository `bare`.
fn local_mode(s: &Scenario, run: &Value, file: &Path, bare: &Path) -> Value {
    std::fs::write(file, serde_yaml::to_string(run).unwrap()).unwrap();
    let o = Command::new(&s.e2e.integrator)
        .arg("local")
        .arg(file)
        .arg("--repo")
        .arg(bare)
        .args(["--workers", "2", "--json"])
        .env_remove("LAPIDARY_CREDENTIALS_DIR")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lapidary-integrator local failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "local mode printed no JSON summary ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// Generates an example, publishes it as `e2e-<name>.git`, applies its run (named
/// `name`, parallelism 50, `tweak` applied) and returns both.
fn start_run(
    s: &Scenario,
    name: &str,
    modules: usize,
    levels: usize,
    tweak: impl FnOnce(&mut Value),
) -> (Example, Value) {
    let ex = Example::generate(s.e2e, name, modules, levels);
    ex.publish(s.e2e, &format!("e2e-{name}"));
    let mut run = ex.run_object(name, &s.ns, &format!("{}/e2e-{name}.git", s.e2e.git_url));
    run["spec"]["parallelism"] = json!(50);
    tweak(&mut run);
    s.apply(&run);
    s.log(&format!(
        "applied run {name}: {modules} modules in {levels} levels"
    ));
    (ex, run)
}

/// Pods of the run that are not finished.
fn live_pods(s: &Scenario, run: &str) -> Vec<String> {
    s.pods(Some(&format!("lapidary.dev/run={run}")))
        .iter()
        .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running")))
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn running_level_pod(s: &Scenario, run: &str) -> bool {
    s.pods(Some(&format!(
        "lapidary.dev/run={run},lapidary.dev/role=level"
    )))
    .iter()
    .any(|p| p["status"]["phase"] == "Running")
}

#[test]
fn happy_path_40_modules_in_5_levels_matches_local_mode() {
    let s = Scenario::start("happy");
    let ex = Example::generate(s.e2e, "happy", 40, 5);
    let bare = ex.publish(s.e2e, "e2e-happy");
    // Local mode's own copy of the same input, taken before the cluster pushes anything.
    let local_bare = s.e2e.work_dir.join("happy-local.git");
    let _ = std::fs::remove_dir_all(&local_bare);
    git(
        &s.e2e.work_dir,
        &[
            "clone",
            "--quiet",
            "--bare",
            &bare.to_string_lossy(),
            &local_bare.to_string_lossy(),
        ],
    );
    let mut run = ex.run_object("happy", &s.ns, &format!("{}/e2e-happy.git", s.e2e.git_url));
    run["spec"]["parallelism"] = json!(50);
    s.apply(&run);

    let done = s.wait_phase("happy", &["Succeeded"], 20 * MINUTE);
    s.log(&format!(
        "40 modules in 5 levels: Succeeded after {:.0}s",
        s.elapsed().as_secs_f64()
    ));
    let modules = ex.modules();
    assert_summary(&done, 40, 40, 0, 0);
    assert_module_phases(&done, &modules, &BTreeMap::new());
    assert_eq!(
        done["status"]["levels"].as_array().map(Vec::len),
        Some(5),
        "levels: {}",
        done["status"]["levels"]
    );

    // kubectl get ir: NAME PHASE LEVEL SUCCEEDED FAILED TOTAL AGE
    let table = ir_table(&s, "happy");
    assert_eq!(
        table[0],
        [
            "NAME",
            "PHASE",
            "LEVEL",
            "SUCCEEDED",
            "FAILED",
            "TOTAL",
            "AGE"
        ],
        "{table:?}"
    );
    assert_eq!(
        table[1][..6],
        ["happy", "Succeeded", "5/5", "40", "0", "40"],
        "{table:?}"
    );

    // The integration branch, cloned on the host from the git daemon.
    let branch = ex.integration_branch();
    let clone = s.e2e.work_dir.join("happy-clone");
    let _ = std::fs::remove_dir_all(&clone);
    git(
        &s.e2e.work_dir,
        &[
            "clone",
            "--quiet",
            "--branch",
            &branch,
            &format!("{}/e2e-happy.git", s.e2e.git_local_url),
            &clone.to_string_lossy(),
        ],
    );
    assert_eq!(
        Some(git::rev_parse(&clone, "HEAD").as_str()),
        done["status"]["headCommit"].as_str(),
        "status.headCommit is not the integration branch's head"
    );
    assert_moved(&clone, "HEAD", &modules.iter().collect::<Vec<_>>());
    let tests = Command::new("python3")
        .args(["-m", "unittest"])
        .current_dir(&clone)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        tests.status.success(),
        "the example's tests fail on the integration branch: {}",
        String::from_utf8_lossy(&tests.stderr)
    );
    s.log(&format!(
        "python3 -m unittest on the integration branch: {}",
        String::from_utf8_lossy(&tests.stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
    ));

    // Local mode on the same input gives the same tree.
    let summary = local_mode(&s, &run, &ex.path("local-run.yaml"), &local_bare);
    assert_eq!(summary["succeeded"], 40, "local mode: {summary}");
    let cluster_tree = git::tree_of(&clone, "HEAD");
    let local_tree = git::tree_of(&local_bare, &branch);
    s.log(&format!(
        "trees: cluster {cluster_tree} local {local_tree}; commits: cluster {} local {} (local mode {}s)",
        git::rev_parse(&clone, "HEAD"),
        git::rev_parse(&local_bare, &branch),
        summary["seconds"]
    ));
    assert_eq!(
        cluster_tree, local_tree,
        "the cluster's integration branch differs from local mode's"
    );
}

#[test]
fn seed_shape_166_modules_in_7_levels() {
    let s = Scenario::start("seed");
    let (ex, _) = start_run(&s, "seed", 166, 7, |_| {});
    let done = s.wait_phase("seed", &["Succeeded"], 40 * MINUTE);
    let wall = s.elapsed();
    assert_summary(&done, 166, 166, 0, 0);
    let modules = ex.modules();
    assert_module_phases(&done, &modules, &BTreeMap::new());
    let bare = s.e2e.git_root.join("e2e-seed.git");
    assert_moved(
        &bare,
        &ex.integration_branch(),
        &modules.iter().collect::<Vec<_>>(),
    );
    let levels: Vec<String> = done["status"]["levels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("{}:{}", l["index"], l["modules"]))
        .collect();
    // Where the time went, from the Jobs' own start and completion times (the Job
    // controller sets completionTime a little after the operator has moved on, so the
    // spans overlap by a few seconds).
    let jobs = wait_for("every Job to have its completion time", MINUTE, || {
        let jobs = s.jobs();
        let open: Vec<String> = jobs
            .iter()
            .filter(|j| j["status"]["completionTime"].is_null())
            .map(|j| {
                j["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if open.is_empty() {
            Ok(jobs)
        } else {
            Err(format!("not complete: {open:?}"))
        }
    });
    let span = |name: &str| {
        jobs.iter()
            .find(|j| j["metadata"]["name"] == name)
            .and_then(|j| {
                let start = epoch(j["status"]["startTime"].as_str()?)?;
                let end = epoch(j["status"]["completionTime"].as_str()?)?;
                Some(end - start)
            })
            .unwrap_or(-1)
    };
    let mut profile = vec![format!("prepare {}s", span("seed-prepare"))];
    let (mut pods, mut merges) = (0, 0);
    for k in 0..levels.len() {
        let (l, m) = (
            span(&format!("seed-level-{k}")),
            span(&format!("seed-merge-{k}")),
        );
        pods += l;
        merges += m;
        profile.push(format!("level {k}: pods {l}s merge {m}s"));
    }
    profile.push(format!("sum: level pods {pods}s, merges {merges}s"));
    s.log(&format!("PROFILE {}", profile.join("; ")));
    s.log(&format!(
        "WALL TIME 166 modules / 7 levels: {:.0}s (startTime {} completionTime {}; levels {})",
        wall.as_secs_f64(),
        done["status"]["startTime"],
        done["status"]["completionTime"],
        levels.join(" ")
    ));
}

#[test]
fn permanent_failure_fails_the_module_and_skips_its_dependents() {
    let s = Scenario::start("permanent");
    let ex = Example::generate(s.e2e, "permanent", 12, 3);
    let modules = ex.modules();
    let victim = modules
        .iter()
        .filter(|m| m.depends_on.is_empty())
        .max_by_key(|m| dependents(&modules, &m.name).len())
        .unwrap()
        .clone();
    let skipped = dependents(&modules, &victim.name);
    assert!(
        !skipped.is_empty(),
        "the example has no level-0 module with dependents"
    );
    // Its target already exists: the integrator fails it with the permanent exit code.
    if victim.target.ends_with(".py") {
        write_file(&ex.work_tree, &victim.target, "\"\"\"Already here.\"\"\"\n");
    } else {
        write_file(
            &ex.work_tree,
            &format!("{}/__init__.py", victim.target),
            "\"\"\"Already here.\"\"\"\n",
        );
    }
    ex.commit_all("the target of one module already exists");
    ex.publish(s.e2e, "e2e-permanent");
    let mut run = ex.run_object(
        "permanent",
        &s.ns,
        &format!("{}/e2e-permanent.git", s.e2e.git_url),
    );
    run["spec"]["parallelism"] = json!(50);
    run["spec"]["retries"] = json!(2);
    s.apply(&run);
    s.log(&format!(
        "victim {} ({}), dependents {skipped:?}",
        victim.name, victim.target
    ));

    let done = s.wait_phase("permanent", &["Failed"], 20 * MINUTE);
    let st = module_status(&done, &victim.name);
    assert_eq!(st["phase"], "Failed", "{st}");
    assert_eq!(
        int(&st["attempts"]),
        1,
        "a permanent failure is not retried: {st}"
    );
    let message = st["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("already exists"),
        "module message: {message:?}"
    );
    assert!(
        done["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed")),
        "run message: {}",
        done["status"]["message"]
    );
    let mut expected: BTreeMap<String, &str> =
        skipped.iter().map(|n| (n.clone(), "Skipped")).collect();
    expected.insert(victim.name.clone(), "Failed");
    assert_module_phases(&done, &modules, &expected);
    let n = modules.len() as i64;
    let lost = skipped.len() as i64;
    assert_summary(&done, n, n - 1 - lost, 1, lost);
    // Everything else is on the integration branch.
    let bare = s.e2e.git_root.join("e2e-permanent.git");
    let integrated: Vec<&ModuleRef> = modules
        .iter()
        .filter(|m| !expected.contains_key(&m.name))
        .collect();
    assert_moved(&bare, &ex.integration_branch(), &integrated);
    // An Event names the module and says why.
    let event = wait_for("a ModuleFailed Event naming the module", MINUTE, || {
        let events = s.events();
        events
            .iter()
            .find(|e| {
                e["reason"] == "ModuleFailed"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&victim.name) && m.contains("already exists"))
            })
            .cloned()
            .ok_or_else(|| {
                format!(
                    "reasons: {:?}",
                    events
                        .iter()
                        .map(|e| e["reason"].clone())
                        .collect::<Vec<_>>()
                )
            })
    });
    assert_eq!(event["type"], "Warning", "{event}");
}

#[test]
fn transient_failure_is_retried_and_succeeds() {
    let s = Scenario::start("transient");
    let ex = Example::generate(s.e2e, "transient", 12, 3);
    let modules = ex.modules();
    let victim = modules
        .iter()
        .find(|m| !m.depends_on.is_empty())
        .unwrap()
        .clone();
    let bare = ex.publish(s.e2e, "e2e-transient");
    // The first push of the victim's branch loses its connection: the hook kills the
    // receive-pack serving it, as a network failure would.
    let marker = s.e2e.work_dir.join("transient-dropped");
    let _ = std::fs::remove_file(&marker);
    let branch_ref = format!(
        "refs/heads/{}-modules/{}",
        ex.integration_branch(),
        victim.name
    );
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = \"{branch_ref}\" ] && [ ! -e \"{m}\" ]; then\n    : > \"{m}\"\n    kill -9 $PPID\n    exit 1\n  fi\ndone\nexit 0\n",
            m = marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut run = ex.run_object(
        "transient",
        &s.ns,
        &format!("{}/e2e-transient.git", s.e2e.git_url),
    );
    run["spec"]["parallelism"] = json!(50);
    run["spec"]["retries"] = json!(2);
    s.apply(&run);
    s.log(&format!(
        "victim {} (push of {branch_ref} fails once)",
        victim.name
    ));

    let done = s.wait_phase("transient", &["Succeeded"], 20 * MINUTE);
    assert!(
        marker.exists(),
        "the hook never saw the push of {branch_ref}"
    );
    assert_summary(&done, 12, 12, 0, 0);
    for m in &modules {
        let st = module_status(&done, &m.name);
        let want = if m.name == victim.name { 2 } else { 1 };
        assert_eq!(int(&st["attempts"]), want, "attempts of {}: {st}", m.name);
    }
    assert_moved(
        &bare,
        &ex.integration_branch(),
        &modules.iter().collect::<Vec<_>>(),
    );
}

#[test]
fn operator_restarts_mid_level_and_mid_merge_without_duplicating_jobs() {
    let s = Scenario::start("restart");
    let (ex, _) = start_run(&s, "restart", 24, 4, |_| {});
    // Every Job seen, by name: its uid and creation time must never change.
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut record = |s: &Scenario| -> Vec<Value> {
        let jobs = s.jobs();
        for j in &jobs {
            let name = j["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let id = (
                j["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                j["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            match seen.get(&name) {
                Some(old) => assert_eq!(old, &id, "Job {name} was created twice"),
                None => {
                    seen.insert(name, id);
                }
            }
        }
        jobs
    };
    let finished = |run: &Value| {
        if matches!(phase(run), "Succeeded" | "Failed") {
            panic!(
                "the run finished ({}) before the operator could be deleted",
                phase(run)
            );
        }
    };
    let level = wait_for(
        "a level Job with active pods after level 0",
        15 * MINUTE,
        || {
            let jobs = record(&s);
            let run = s.run("restart");
            finished(&run);
            let k = int(&run["status"]["currentLevel"]);
            let name = format!("restart-level-{k}");
            let active = jobs.iter().any(|j| {
                j["metadata"]["name"] == name.as_str() && int(&j["status"]["active"]) >= 1
            });
            if phase(&run) == "Running" && k >= 1 && active {
                Ok(k)
            } else {
                Err(format!("phase {} level {k}", phase(&run)))
            }
        },
    );
    let deleted = s.delete_operator_pods();
    s.log(&format!(
        "deleted the operator pods {deleted:?} while level {level} runs"
    ));
    // A merge is in progress while its Job exists and has not finished.
    let merge = wait_for("a merge Job running after the restart", 15 * MINUTE, || {
        let jobs = record(&s);
        let run = s.run("restart");
        finished(&run);
        jobs.iter()
            .find(|j| {
                j["metadata"]["labels"]["lapidary.dev/role"] == "merge"
                    && j["status"]["completionTime"].is_null()
                    && j["status"]["failed"].is_null()
            })
            .map(|j| {
                j["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .ok_or_else(|| format!("phase {}", phase(&run)))
    });
    let deleted = s.delete_operator_pods();
    s.log(&format!(
        "deleted the operator pods {deleted:?} while {merge} runs"
    ));
    let done = wait_for("run restart to succeed", 20 * MINUTE, || {
        record(&s);
        let run = s.run("restart");
        match phase(&run) {
            "Succeeded" => Ok(run),
            "Failed" => panic!("run failed: {}", run["status"]["message"]),
            p => Err(format!("phase {p}")),
        }
    });
    record(&s);
    let modules = ex.modules();
    assert_summary(&done, 24, 24, 0, 0);
    let levels = done["status"]["levels"].as_array().map_or(0, Vec::len);
    assert_eq!(levels, 4);
    // One prepare Job, one Job and one merge Job per level; none replaced.
    let names: BTreeSet<String> = s
        .jobs()
        .iter()
        .map(|j| {
            j["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(names.len(), 1 + 2 * levels, "Jobs: {names:?}");
    assert_eq!(
        names,
        seen.keys().cloned().collect(),
        "Jobs seen during the run: {seen:?}"
    );
    // Every module ran once and was merged once.
    for m in &modules {
        assert_eq!(
            int(&module_status(&done, &m.name)["attempts"]),
            1,
            "module {}",
            m.name
        );
    }
    let level_pods = s.pods(Some("lapidary.dev/run=restart,lapidary.dev/role=level"));
    assert_eq!(level_pods.len(), 24, "one pod per module");
    let bare = s.e2e.git_root.join("e2e-restart.git");
    let branch = ex.integration_branch();
    let merged: Vec<String> = git::merges(&bare, &branch)
        .into_iter()
        .filter_map(|(_, p)| p.get(1).cloned())
        .collect();
    for m in &modules {
        // status.modules[].commit may be abbreviated: match it as a prefix.
        let commit = module_status(&done, &m.name)["commit"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            commit.len() >= 7,
            "module {} has no commit in status",
            m.name
        );
        let times = merged.iter().filter(|c| c.starts_with(&commit)).count();
        assert_eq!(
            times, 1,
            "module {} (commit {commit}) merged {times} times",
            m.name
        );
    }
    assert_eq!(merged.len(), 24, "merge commits on {branch}");
    assert_moved(&bare, &branch, &modules.iter().collect::<Vec<_>>());
}

#[test]
fn invalid_specs_are_refused() {
    let s = Scenario::start("invalid");
    let module = |name: &str, deps: &[&str]| json!({"name": name, "path": format!("candidate/{name}.py"), "target": format!("lukhas/{name}.py"), "dependsOn": deps});
    let run = json!({
        "apiVersion": "lapidary.dev/v1alpha1",
        "kind": "IntegrationRun",
        "metadata": {"name": "cycle"},
        "spec": {
            "repository": {"url": format!("{}/none.git", s.e2e.git_url)},
            "modules": [
                module("alpha", &["gamma"]),
                module("beta", &["alpha"]),
                module("gamma", &["beta"]),
                module("delta", &[]),
            ],
        },
    });
    s.apply(&run);
    let cond = wait_for("SpecValid=False", 2 * MINUTE, || {
        let r = s.run("cycle");
        match condition(&r, "SpecValid") {
            Some(c) if c["status"] == "False" => Ok(c.clone()),
            other => Err(format!("SpecValid {other:?}")),
        }
    });
    let message = cond["message"].as_str().unwrap_or_default();
    assert!(message.contains("cycle"), "SpecValid message: {message:?}");
    for name in ["alpha", "beta", "gamma"] {
        assert!(
            message.contains(name),
            "SpecValid message does not name {name}: {message:?}"
        );
    }
    assert!(
        !message.contains("delta"),
        "delta is not in the cycle: {message:?}"
    );
    assert_eq!(phase(&s.run("cycle")), "Failed");
    let event = wait_for("a SpecInvalid Event", MINUTE, || {
        s.events()
            .into_iter()
            .find(|e| e["reason"] == "SpecInvalid")
            .ok_or_else(|| "none yet".to_owned())
    });
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("cycle")),
        "{event}"
    );
    assert!(
        s.jobs().is_empty(),
        "Jobs for an invalid spec: {:?}",
        s.jobs()
    );
    assert!(
        s.e2e
            .kubectl
            .get(&s.ns, "configmap", "cycle-plan")
            .is_none(),
        "a plan ConfigMap for an invalid spec"
    );

    // What the schema can check is refused by the API server, naming the field.
    let mut zero = run.clone();
    zero["metadata"]["name"] = json!("zero");
    zero["spec"]["modules"] = json!([module("delta", &[])]);
    zero["spec"]["parallelism"] = json!(0);
    let o = s.e2e.kubectl.try_apply(&s.ns, &zero);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "parallelism 0 was accepted");
    assert!(
        stderr.contains("spec.parallelism"),
        "the refusal does not name spec.parallelism: {stderr}"
    );
    assert!(s.e2e.kubectl.get(&s.ns, "integrationrun", "zero").is_none());
}

#[test]
fn deleting_a_run_mid_level_removes_its_jobs_pods_and_configmap() {
    let s = Scenario::start("delete");
    start_run(&s, "delete", 16, 2, |_| {});
    wait_for("a level pod running", 15 * MINUTE, || {
        let run = s.run("delete");
        if matches!(phase(&run), "Succeeded" | "Failed") {
            panic!("the run finished before it could be deleted mid-level");
        }
        if phase(&run) == "Running" && running_level_pod(&s, "delete") {
            Ok(())
        } else {
            Err(format!("phase {}", phase(&run)))
        }
    });
    assert!(s
        .e2e
        .kubectl
        .get(&s.ns, "configmap", "delete-plan")
        .is_some());
    s.e2e
        .kubectl
        .ok(&["-n", &s.ns, "delete", "integrationrun", "delete"]);
    s.log("deleted the run mid-level");
    wait_for(
        "the run's Jobs, pods and ConfigMap to be gone",
        5 * MINUTE,
        || {
            let jobs = s
                .e2e
                .kubectl
                .list(&s.ns, "jobs", Some("lapidary.dev/run=delete"))
                .len();
            let pods = s.pods(Some("lapidary.dev/run=delete")).len();
            let all_jobs = s.jobs().len();
            let cm = s
                .e2e
                .kubectl
                .get(&s.ns, "configmap", "delete-plan")
                .is_some();
            if jobs == 0 && all_jobs == 0 && pods == 0 && !cm {
                Ok(())
            } else {
                Err(format!("{jobs} Jobs, {pods} pods, ConfigMap {cm}"))
            }
        },
    );
}

#[test]
fn private_repository_through_the_credentials_secret() {
    let s = Scenario::start("private");
    let ex = Example::generate(s.e2e, "private", 8, 2);
    let bare = ex.publish(s.e2e, "e2e-private");
    let token = s.e2e.git_token.clone();
    s.secret("git-creds", "token", &token);
    let mut run = ex.run_object(
        "private",
        &s.ns,
        &format!("{}/e2e-private.git", s.e2e.git_http_url),
    );
    run["spec"]["repository"]["credentialsSecret"] = json!("git-creds");
    s.apply(&run);
    let done = s.wait_phase("private", &["Succeeded"], 15 * MINUTE);
    assert_summary(&done, 8, 8, 0, 0);
    let modules = ex.modules();
    assert_moved(
        &bare,
        &ex.integration_branch(),
        &modules.iter().collect::<Vec<_>>(),
    );
    // The token is nowhere the operator writes: logs, status, Events, pods, Jobs.
    let k = &s.e2e.kubectl;
    let places = [
        ("operator logs", s.e2e.operator_logs()),
        (
            "run",
            k.ok(&[
                "-n",
                &s.ns,
                "get",
                "integrationrun",
                "private",
                "-o",
                "json",
            ]),
        ),
        (
            "events",
            k.ok(&["-n", &s.ns, "get", "events", "-o", "json"]),
        ),
        ("pods", k.ok(&["-n", &s.ns, "get", "pods", "-o", "json"])),
        ("jobs", k.ok(&["-n", &s.ns, "get", "jobs", "-o", "json"])),
    ];
    for (what, text) in &places {
        assert!(
            !text.is_empty() || *what == "operator logs",
            "nothing read from {what}"
        );
        assert!(!text.contains(&token), "the token appears in the {what}");
    }
    assert!(
        places[0].1.lines().count() > 0,
        "no operator logs to search"
    );
}

#[test]
fn suspend_stops_the_pods_and_resume_finishes() {
    let s = Scenario::start("suspend");
    let (ex, _) = start_run(&s, "suspend", 24, 3, |_| {});
    wait_for("a level pod running", 15 * MINUTE, || {
        let run = s.run("suspend");
        if matches!(phase(&run), "Succeeded" | "Failed") {
            panic!("the run finished before it could be suspended");
        }
        if phase(&run) == "Running" && running_level_pod(&s, "suspend") {
            Ok(())
        } else {
            Err(format!("phase {}", phase(&run)))
        }
    });
    s.patch_run("suspend", json!({"spec": {"suspend": true}}));
    s.log("suspended mid-level");
    let run = wait_for("phase Suspended and no pod running", 5 * MINUTE, || {
        let run = s.run("suspend");
        let live = live_pods(&s, "suspend");
        if phase(&run) == "Suspended" && live.is_empty() {
            Ok(run)
        } else {
            Err(format!("phase {}, live pods {live:?}", phase(&run)))
        }
    });
    let current = int(&run["status"]["currentLevel"]);
    if let Some(job) = s
        .e2e
        .kubectl
        .get(&s.ns, "job", &format!("suspend-level-{current}"))
    {
        if job["status"]["completionTime"].is_null() {
            assert_eq!(
                job["spec"]["suspend"], true,
                "the running level's Job is not suspended"
            );
        }
    }
    s.patch_run("suspend", json!({"spec": {"suspend": false}}));
    s.log("resumed");
    let done = s.wait_phase("suspend", &["Succeeded"], 20 * MINUTE);
    assert_summary(&done, 24, 24, 0, 0);
    let bare = s.e2e.git_root.join("e2e-suspend.git");
    assert_moved(
        &bare,
        &ex.integration_branch(),
        &ex.modules().iter().collect::<Vec<_>>(),
    );
}

/// Run in both install phases of e2e.sh: Helm, then `kubectl apply -k deploy/`
/// (LAPIDARY_E2E_INSTALL says which one installed the operator).
#[test]
fn installed_operator_integrates_a_small_run() {
    let s = Scenario::start("install");
    let install = std::env::var("LAPIDARY_E2E_INSTALL").unwrap_or_default();
    let deploy = s
        .e2e
        .kubectl
        .get(
            &s.e2e.operator_namespace,
            "deployment",
            &s.e2e.operator_deployment,
        )
        .unwrap();
    let helm_release = &deploy["metadata"]["annotations"]["meta.helm.sh/release-name"];
    match install.as_str() {
        "helm" => assert_eq!(
            helm_release, "lapidary",
            "the operator is not the Helm release"
        ),
        "kustomize" => assert!(
            helm_release.is_null(),
            "the operator still belongs to a Helm release"
        ),
        other => panic!("LAPIDARY_E2E_INSTALL must be helm or kustomize, got {other:?}"),
    }
    let (ex, _) = start_run(&s, "install", 6, 2, |_| {});
    let done = s.wait_phase("install", &["Succeeded"], 15 * MINUTE);
    assert_summary(&done, 6, 6, 0, 0);
    let bare = s.e2e.git_root.join("e2e-install.git");
    assert_moved(
        &bare,
        &ex.integration_branch(),
        &ex.modules().iter().collect::<Vec<_>>(),
    );
    s.log(&format!(
        "installed with {install}: Succeeded after {:.0}s",
        s.elapsed().as_secs_f64()
    ));
}
