//! Local mode: the same plan, steps and merges as the cluster, run by worker
//! processes on this machine. Each module is a child `lapidary-integrator integrate`
//! with its own result file, given its module the way a level Job gives it (module
//! indexes and a completion index), and a per-worker work directory; levels run in
//! order, each followed by its merge; dependents of lost modules are skipped.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lapidary_api::contract::{
    self, Outcome, PlanDocument, ResultDocument, ENV_COMPLETION_INDEX, ENV_CREDENTIALS_DIR,
    ENV_MODULE_INDEXES, EXIT_PERMANENT,
};
use lapidary_api::crd::IntegrationRunSpec;
use serde::Serialize;

use crate::cli::LocalArgs;
use crate::error::{Error, Result};
use crate::result;

/// Final state of one module in a local run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSummary {
    /// Module name.
    pub name: String,
    /// Its level.
    pub level: usize,
    /// `succeeded`, `failed`, `skipped` or `conflict`.
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// Its branch.
    pub branch: String,
    /// Commit on its branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Files its commit changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<u32>,
    /// Milliseconds of its last attempt (process start to exit).
    pub ms: u64,
    /// Why it failed, was skipped or conflicted; or its first warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One level's merge.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelSummary {
    /// Level index.
    pub index: usize,
    /// Modules run in it.
    pub modules: usize,
    /// Integration-branch head after its merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_commit: Option<String>,
    /// Milliseconds for the level's modules.
    pub modules_ms: u64,
    /// Milliseconds for its merge.
    pub merge_ms: u64,
}

/// What a local run did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Run name.
    pub run: String,
    /// The integration branch.
    pub integration_branch: String,
    /// Where the integration branch started (prepare's commit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// Its head after the last merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_commit: Option<String>,
    /// Worker processes.
    pub workers: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Counts.
    pub total: usize,
    /// Integrated modules.
    pub succeeded: usize,
    /// Failed modules.
    pub failed: usize,
    /// Skipped modules.
    pub skipped: usize,
    /// Conflicting modules.
    pub conflicts: usize,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per level.
    pub levels: Vec<LevelSummary>,
    /// Per module, in plan order.
    pub modules: Vec<ModuleSummary>,
}

/// Reads an IntegrationRun (full resource, or only its spec) and its name.
pub fn read_run(path: &Path) -> Result<(String, IntegrationRunSpec)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::Input(format!("{} is not YAML: {e}", path.display())))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("local")
        .to_owned();
    let (name, spec_value) = match value.get("spec") {
        Some(spec) => {
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_owned)
                .unwrap_or(stem);
            (name, spec.clone())
        }
        None => (stem, value),
    };
    let spec: IntegrationRunSpec = serde_yaml::from_value(spec_value).map_err(|e| {
        Error::Input(format!(
            "{}: not an IntegrationRun spec: {e}",
            path.display()
        ))
    })?;
    Ok((name, spec))
}

/// A child command: what it is for, and where its result goes.
struct Task {
    role: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    result_file: PathBuf,
    log_file: PathBuf,
}

/// Runs child commands of the current executable.
struct Runner {
    exe: PathBuf,
    plan_file: PathBuf,
    workdir: PathBuf,
    credentials_dir: PathBuf,
    /// The repository is a local path: the children use no TLS.
    local_repo: bool,
}

impl Runner {
    fn spawn(&self, task: &Task, worker_dir: &Path) -> Result<Child> {
        let log = std::fs::File::create(&task.log_file)
            .map_err(Error::io(format!("create {}", task.log_file.display())))?;
        let mut command = Command::new(&self.exe);
        command
            .arg(task.role)
            .arg("--plan")
            .arg(&self.plan_file)
            .arg("--result-file")
            .arg(&task.result_file)
            .arg("--workdir")
            .arg(worker_dir)
            .args(&task.args)
            .env(ENV_CREDENTIALS_DIR, &self.credentials_dir)
            .env_remove(ENV_MODULE_INDEXES)
            .env_remove(ENV_COMPLETION_INDEX)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in &task.env {
            command.env(key, value);
        }
        if self.local_repo {
            // libgit2 sets OpenSSL up when it starts, loading the whole CA bundle
            // (~50 ms a process); children that only reach a local repository never
            // open a TLS connection.
            command.env("SSL_CERT_FILE", "/dev/null");
        }
        command
            .spawn()
            .map_err(Error::io(format!("start {}", self.exe.display())))
    }

    /// Runs one task to the end (prepare and merges).
    fn run_one(&self, task: &Task, worker_dir: &Path) -> Result<(i32, ResultDocument, u64)> {
        let started = Instant::now();
        let mut child = self.spawn(task, worker_dir)?;
        let status = child.wait().map_err(Error::io("wait for a child"))?;
        let ms = elapsed_ms(started);
        Ok((exit_code(status), read_result(task), ms))
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(-1)
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The child's result document, or a failed one saying why there is none.
fn read_result(task: &Task) -> ResultDocument {
    result::read(&task.result_file).unwrap_or_else(|e| {
        let mut doc = ResultDocument::new(contract::Role::Module, Outcome::Failed);
        let tail = std::fs::read_to_string(&task.log_file).unwrap_or_default();
        let tail: String = tail.lines().last().unwrap_or_default().to_owned();
        doc.error = Some(format!("{e}; log: {tail}"));
        doc
    })
}

/// Progress: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    done: usize,
    total: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} modules {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            done: 0,
            total,
        }
    }

    fn message(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_owned()),
            None => eprintln!("{text}"),
        }
    }

    fn module_done(&mut self, summary: &ModuleSummary) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => eprintln!(
                "[{}/{}] level {} {} {} {}ms{}",
                self.done,
                self.total,
                summary.level,
                summary.name,
                summary.outcome,
                summary.ms,
                summary
                    .message
                    .as_deref()
                    .filter(|_| summary.outcome != "succeeded")
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs `local`; returns the exit code (0 when every module was integrated).
pub fn run(args: &LocalArgs) -> Result<i32> {
    let (name, mut spec) = read_run(&args.run)?;
    if let Some(url) = &args.repo {
        spec.repository.url = url.clone();
    }
    if crate::git::is_local_url(&spec.repository.url) && !spec.repository.url.starts_with("file://")
    {
        let path = std::path::absolute(&spec.repository.url)
            .map_err(Error::io(format!("resolve {}", spec.repository.url)))?;
        spec.repository.url = path.to_string_lossy().into_owned();
    }
    let plan = PlanDocument::from_spec(&name, &spec)
        .map_err(|e| Error::Input(format!("{}: {e}", args.run.display())))?;
    let (workdir, temporary) = match &args.workdir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("lapidary-local-{}", std::process::id())),
            true,
        ),
    };
    for sub in ["results", "logs", "workers"] {
        std::fs::create_dir_all(workdir.join(sub))
            .map_err(Error::io(format!("create {}", workdir.join(sub).display())))?;
    }
    let plan_file = workdir.join("plan.json");
    let plan_json =
        serde_json::to_string_pretty(&plan).map_err(|e| Error::Input(format!("plan: {e}")))?;
    std::fs::write(&plan_file, plan_json).map_err(Error::io("write plan.json"))?;
    let runner = Runner {
        exe: std::env::current_exe().map_err(Error::io("find the current executable"))?,
        plan_file,
        workdir: workdir.clone(),
        credentials_dir: args.credentials_dir.clone(),
        local_repo: crate::git::is_local_url(&plan.repository.url),
    };
    let workers = args
        .workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let summary = execute(&runner, &plan, &spec, workers)?;
    report(&summary, args.json);
    if temporary {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    let ok = summary.error.is_none() && summary.succeeded == summary.total;
    Ok(if ok { 0 } else { 1 })
}

fn execute(
    runner: &Runner,
    plan: &PlanDocument,
    spec: &IntegrationRunSpec,
    workers: usize,
) -> Result<RunSummary> {
    let started = Instant::now();
    let modules = &plan.plan.modules;
    let mut states: Vec<ModuleSummary> = modules
        .iter()
        .map(|m| ModuleSummary {
            name: m.name.clone(),
            level: m.level,
            outcome: "pending".to_owned(),
            attempts: 0,
            branch: contract::module_branch(&plan.integration_branch, &m.name),
            commit: None,
            files_changed: None,
            ms: 0,
            message: None,
        })
        .collect();
    let mut summary = RunSummary {
        run: plan.run.clone(),
        integration_branch: plan.integration_branch.clone(),
        base_commit: None,
        head_commit: None,
        workers,
        seconds: 0.0,
        total: modules.len(),
        succeeded: 0,
        failed: 0,
        skipped: 0,
        conflicts: 0,
        error: None,
        levels: Vec::new(),
        modules: Vec::new(),
    };
    let mut progress = Progress::new(modules.len());
    progress.message(&format!(
        "{}: {} modules in {} levels, {} workers",
        plan.run,
        modules.len(),
        plan.plan.levels.len(),
        workers
    ));
    let retries = u32::try_from(spec.retries.max(0)).unwrap_or(0);
    let max_failed = spec
        .max_failed_modules
        .map(|n| usize::try_from(n.max(0)).unwrap_or(0));
    let index_of: HashMap<&str, usize> = modules
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();

    // prepare
    let prepare = Task {
        role: "prepare",
        args: Vec::new(),
        env: Vec::new(),
        result_file: runner.workdir.join("results/prepare.json"),
        log_file: runner.workdir.join("logs/prepare.log"),
    };
    let (code, doc, _) = run_with_retries(
        runner,
        &prepare,
        &runner.workdir.join("workers/prepare"),
        retries,
    )?;
    let mut base = if code == 0 {
        doc.commit
    } else {
        summary.error = Some(format!(
            "prepare failed: {}",
            doc.error.unwrap_or_else(|| format!("exit code {code}"))
        ));
        None
    };
    summary.base_commit = base.clone();

    for (k, positions) in plan.plan.levels.iter().enumerate() {
        let Some(level_base) = base.clone() else {
            break;
        };
        // Dependents of lost modules never run.
        let mut runnable: Vec<usize> = Vec::new();
        for (within, &p) in positions.iter().enumerate() {
            let m = &modules[p];
            let lost: Vec<&str> = m
                .depends_on
                .iter()
                .filter(|d| {
                    index_of
                        .get(d.as_str())
                        .is_none_or(|&i| states[i].outcome != "succeeded")
                })
                .map(String::as_str)
                .collect();
            let too_many = max_failed.is_some_and(|max| summary_failed(&states) > max);
            if too_many {
                states[p].outcome = "skipped".to_owned();
                states[p].message = Some("the run stopped: too many modules failed".to_owned());
                progress.module_done(&states[p]);
            } else if !lost.is_empty() {
                states[p].outcome = "skipped".to_owned();
                states[p].message = Some(format!("dependency not integrated: {}", lost.join(", ")));
                progress.module_done(&states[p]);
            } else {
                runnable.push(within);
            }
        }
        let level_started = Instant::now();
        let indexes = contract::format_indexes(&runnable);
        let mut queue: VecDeque<(usize, u32)> = (0..runnable.len()).map(|i| (i, 0)).collect();
        let mut running: Vec<(usize, Child, usize, u32, Instant, Task)> = Vec::new();
        let mut free: Vec<usize> = (0..workers).rev().collect();
        while !queue.is_empty() || !running.is_empty() {
            while let (Some(&(completion, attempt)), Some(&slot)) = (queue.front(), free.last()) {
                queue.pop_front();
                free.pop();
                let p = positions[runnable[completion]];
                let task = Task {
                    role: "integrate",
                    args: vec![
                        "--level".to_owned(),
                        k.to_string(),
                        "--base".to_owned(),
                        level_base.clone(),
                    ],
                    env: vec![
                        (ENV_MODULE_INDEXES, indexes.clone()),
                        (ENV_COMPLETION_INDEX, completion.to_string()),
                    ],
                    result_file: runner
                        .workdir
                        .join(format!("results/{}-{attempt}.json", modules[p].name)),
                    log_file: runner
                        .workdir
                        .join(format!("logs/{}-{attempt}.log", modules[p].name)),
                };
                let dir = runner.workdir.join(format!("workers/w{slot}"));
                let child = runner.spawn(&task, &dir)?;
                running.push((completion, child, slot, attempt, Instant::now(), task));
            }
            let mut i = 0;
            let mut progressed = false;
            while i < running.len() {
                let finished = running[i]
                    .1
                    .try_wait()
                    .map_err(Error::io("wait for a worker"))?;
                let Some(status) = finished else {
                    i += 1;
                    continue;
                };
                progressed = true;
                let (completion, _, slot, attempt, t0, task) = running.swap_remove(i);
                free.push(slot);
                let code = exit_code(status);
                let doc = read_result(&task);
                let p = positions[runnable[completion]];
                let state = &mut states[p];
                state.attempts = attempt + 1;
                state.ms = elapsed_ms(t0);
                if code == 0 {
                    state.outcome = "succeeded".to_owned();
                    state.commit = doc.commit;
                    state.files_changed = doc.files_changed;
                    state.message = doc.warnings.into_iter().next();
                    progress.module_done(state);
                } else if code != EXIT_PERMANENT && attempt < retries {
                    queue.push_back((completion, attempt + 1));
                } else {
                    state.outcome = "failed".to_owned();
                    state.message = Some(
                        doc.error
                            .unwrap_or_else(|| format!("exited with code {code}")),
                    );
                    progress.module_done(state);
                }
            }
            if !progressed {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let modules_ms = elapsed_ms(level_started);
        // merge
        let merged: Vec<usize> = runnable
            .iter()
            .copied()
            .filter(|&w| states[positions[w]].outcome == "succeeded")
            .collect();
        let mut level_summary = LevelSummary {
            index: k,
            modules: runnable.len(),
            merged_commit: None,
            modules_ms,
            merge_ms: 0,
        };
        if merged.is_empty() {
            level_summary.merged_commit = Some(level_base.clone());
            summary.levels.push(level_summary);
            continue;
        }
        progress.message(&format!("merging level {k} ({} modules)", merged.len()));
        let task = Task {
            role: "merge",
            args: vec![
                "--level".to_owned(),
                k.to_string(),
                "--base".to_owned(),
                level_base.clone(),
            ],
            env: vec![(ENV_MODULE_INDEXES, contract::format_indexes(&merged))],
            result_file: runner.workdir.join(format!("results/merge-{k}.json")),
            log_file: runner.workdir.join(format!("logs/merge-{k}.log")),
        };
        let (code, doc, ms) = run_with_retries(
            runner,
            &task,
            &runner.workdir.join("workers/merge"),
            retries,
        )?;
        level_summary.merge_ms = ms;
        if code != 0 {
            let message = format!(
                "merge of level {k} failed: {}",
                doc.error.unwrap_or_else(|| format!("exit code {code}"))
            );
            for &w in &merged {
                states[positions[w]].outcome = "failed".to_owned();
                states[positions[w]].message = Some(message.clone());
            }
            summary.error = Some(message);
            summary.levels.push(level_summary);
            base = None;
            continue;
        }
        for name in &doc.conflicts {
            if let Some(&i) = index_of.get(name.as_str()) {
                states[i].outcome = "conflict".to_owned();
                states[i].message =
                    Some("conflicts with the integration branch; left out".to_owned());
            }
        }
        base = doc.commit.clone();
        level_summary.merged_commit = doc.commit;
        summary.levels.push(level_summary);
    }
    // Anything never reached (prepare or a merge failed).
    for state in &mut states {
        if state.outcome == "pending" {
            state.outcome = "skipped".to_owned();
            state.message = Some("not run: the run stopped".to_owned());
        }
    }
    progress.finish();
    summary.head_commit = base;
    summary.succeeded = states.iter().filter(|s| s.outcome == "succeeded").count();
    summary.failed = summary_failed(&states);
    summary.skipped = states.iter().filter(|s| s.outcome == "skipped").count();
    summary.conflicts = states.iter().filter(|s| s.outcome == "conflict").count();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.modules = states;
    Ok(summary)
}

fn summary_failed(states: &[ModuleSummary]) -> usize {
    states.iter().filter(|s| s.outcome == "failed").count()
}

fn run_with_retries(
    runner: &Runner,
    task: &Task,
    dir: &Path,
    retries: u32,
) -> Result<(i32, ResultDocument, u64)> {
    let mut attempt = 0;
    loop {
        let (code, doc, ms) = runner.run_one(task, dir)?;
        if code == 0 || code == EXIT_PERMANENT || attempt >= retries {
            return Ok((code, doc, ms));
        }
        attempt += 1;
    }
}

/// Prints the summary table (stdout, or stderr with `--json`) and the JSON summary.
fn report(summary: &RunSummary, json: bool) {
    let mut table = String::new();
    table.push_str(&format!(
        "{:<28} {:>5} {:<10} {:>5} {:>7}  {}\n",
        "MODULE", "LEVEL", "OUTCOME", "FILES", "MS", "MESSAGE"
    ));
    for m in &summary.modules {
        let message = m.message.as_deref().unwrap_or("");
        table.push_str(&format!(
            "{:<28} {:>5} {:<10} {:>5} {:>7}  {}\n",
            m.name,
            m.level,
            m.outcome,
            m.files_changed.map(|f| f.to_string()).unwrap_or_default(),
            m.ms,
            contract::truncate_chars(message, 100)
        ));
    }
    table.push_str(&format!(
        "{} modules: {} succeeded, {} failed, {} skipped, {} conflicts in {:.2}s with {} workers; {} at {}\n",
        summary.total,
        summary.succeeded,
        summary.failed,
        summary.skipped,
        summary.conflicts,
        summary.seconds,
        summary.workers,
        summary.integration_branch,
        summary.head_commit.as_deref().unwrap_or("-"),
    ));
    if let Some(error) = &summary.error {
        table.push_str(&format!("run stopped: {error}\n"));
    }
    if json {
        eprint!("{table}");
        match serde_json::to_string_pretty(summary) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot print the JSON summary: {e}"),
        }
    } else {
        print!("{table}");
    }
}
