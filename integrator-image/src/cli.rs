//! The command line (the Jobs' commands and local mode) and the dispatch that turns
//! every command's outcome into a result document and an exit code.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use lapidary_api::contract::{
    self, Outcome, PlanDocument, ResultDocument, Role, CREDENTIALS_DIR, DEFAULT_RESULT_PATH,
    ENV_COMPLETION_INDEX, ENV_CREDENTIALS_DIR, ENV_MODULE_INDEXES, WORK_DIR,
};

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::git::RemoteRepo;
use crate::{local, merge, prepare, result, steps};

/// lapidary's integrator: prepares a run, integrates one module, merges a level, or
/// runs a whole plan locally.
#[derive(Debug, Parser)]
#[command(name = "lapidary-integrator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin the revision to a commit and create the integration branch there.
    Prepare(JobArgs),
    /// Integrate one module of a level (the level Jobs' pods).
    Integrate(LevelArgs),
    /// Merge a level's module branches into the integration branch.
    Merge(LevelArgs),
    /// Run a whole IntegrationRun on this machine with worker processes.
    Local(LocalArgs),
    /// Generate the example repository (a Python code base with modules to integrate).
    ExampleRepo(ExampleArgs),
}

/// Flags every Job command takes.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// The plan document.
    #[arg(long, default_value_t = contract::plan_path())]
    pub plan: String,
    /// Where the result document goes.
    #[arg(long, env = "LAPIDARY_RESULT_FILE", default_value = DEFAULT_RESULT_PATH)]
    pub result_file: PathBuf,
    /// Writable work directory.
    #[arg(long, env = "LAPIDARY_WORKDIR", default_value = WORK_DIR)]
    pub workdir: PathBuf,
    /// Directory with the git credentials (`token`, `ssh-privatekey`, `known_hosts`).
    #[arg(long, env = ENV_CREDENTIALS_DIR, default_value = CREDENTIALS_DIR)]
    pub credentials_dir: PathBuf,
}

/// Flags of `integrate` and `merge`.
#[derive(Debug, Clone, Args)]
pub struct LevelArgs {
    /// Common flags.
    #[command(flatten)]
    pub job: JobArgs,
    /// The level, from 0.
    #[arg(long)]
    pub level: usize,
    /// The integration branch's commit the level starts from.
    #[arg(long)]
    pub base: String,
    /// Seconds the validate command may run.
    #[arg(long, env = "LAPIDARY_VALIDATE_TIMEOUT", default_value_t = 600)]
    pub validate_timeout: u64,
}

/// Flags of `local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// The IntegrationRun (a full resource or just its spec) in YAML.
    pub run: PathBuf,
    /// Worker processes (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Use this repository URL (or path) instead of the run's.
    #[arg(long)]
    pub repo: Option<String>,
    /// Work directory (default: a new temporary directory, removed afterwards).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Directory with the git credentials.
    #[arg(long, env = ENV_CREDENTIALS_DIR, default_value = CREDENTIALS_DIR)]
    pub credentials_dir: PathBuf,
}

/// Flags of `example-repo`.
#[derive(Debug, Clone, Args)]
pub struct ExampleArgs {
    /// Directory to create.
    pub dir: PathBuf,
    /// Number of modules.
    #[arg(long, default_value_t = 166)]
    pub modules: usize,
    /// Number of dependency levels.
    #[arg(long, default_value_t = 7)]
    pub levels: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What a Job command needs: the plan, the repository and a work directory.
#[derive(Debug, Clone)]
pub struct Context {
    /// The plan.
    pub plan: PlanDocument,
    /// The repository.
    pub remote: RemoteRepo,
    /// Work directory.
    pub workdir: PathBuf,
}

impl Context {
    /// Reads the plan and credentials named by `args`.
    pub fn load(args: &JobArgs) -> Result<Self> {
        let text = std::fs::read_to_string(&args.plan).map_err(|e| Error::Plan {
            path: PathBuf::from(&args.plan),
            reason: e.to_string(),
        })?;
        let plan = PlanDocument::parse(&text).map_err(|e| Error::Plan {
            path: PathBuf::from(&args.plan),
            reason: e.to_string(),
        })?;
        if plan.version != contract::CONTRACT_VERSION {
            return Err(Error::Plan {
                path: PathBuf::from(&args.plan),
                reason: format!(
                    "version {} is not the supported version {}",
                    plan.version,
                    contract::CONTRACT_VERSION
                ),
            });
        }
        let creds = Credentials::load(&args.credentials_dir)?;
        Ok(Context {
            remote: RemoteRepo::new(&plan.repository.url, creds),
            plan,
            workdir: args.workdir.clone(),
        })
    }
}

/// Module positions of this pod: `LAPIDARY_MODULE_INDEXES` (empty: identity) and
/// `JOB_COMPLETION_INDEX`.
pub fn env_indexes() -> Result<(Vec<usize>, Option<usize>)> {
    let indexes = match std::env::var(ENV_MODULE_INDEXES) {
        Ok(text) => contract::parse_indexes(&text)?,
        Err(_) => Vec::new(),
    };
    let completion = match std::env::var(ENV_COMPLETION_INDEX) {
        Ok(text) if !text.trim().is_empty() => {
            Some(text.trim().parse::<usize>().map_err(|_| {
                Error::Input(format!("{ENV_COMPLETION_INDEX} is not a number: {text:?}"))
            })?)
        }
        _ => None,
    };
    Ok((indexes, completion))
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Prepare(args) => {
            let doc = ResultDocument::new(Role::Prepare, Outcome::Succeeded);
            job(&args, doc, prepare::prepare)
        }
        Command::Integrate(args) => {
            let mut doc = ResultDocument::new(Role::Module, Outcome::Succeeded);
            doc.level = u32::try_from(args.level).ok();
            job(&args.job, doc, |ctx, doc| steps::integrate(ctx, &args, doc))
        }
        Command::Merge(args) => {
            let mut doc = ResultDocument::new(Role::Merge, Outcome::Succeeded);
            doc.level = u32::try_from(args.level).ok();
            job(&args.job, doc, |ctx, doc| merge::merge(ctx, &args, doc))
        }
        Command::Local(args) => match local::run(&args) {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(error = %e, kind = e.label(), "local run failed");
                e.exit_code()
            }
        },
        Command::ExampleRepo(args) => match crate::example_repo::generate_cli(&args) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "example repository failed");
                1
            }
        },
    }
}

/// Runs a Job command: loads the context, runs `f`, writes the result document
/// whatever happens, and returns the exit code.
fn job(
    args: &JobArgs,
    mut doc: ResultDocument,
    f: impl FnOnce(&Context, &mut ResultDocument) -> Result<()>,
) -> i32 {
    let outcome = Context::load(args).and_then(|ctx| f(&ctx, &mut doc));
    let code = match &outcome {
        Ok(()) => 0,
        Err(e) => {
            result::fail(&mut doc, e);
            e.exit_code()
        }
    };
    if let Err(e) = result::write(&args.result_file, &doc) {
        tracing::error!(error = %e, "cannot write the result document");
    }
    let line = result::summary_line(&doc);
    match &outcome {
        Ok(()) => tracing::info!(exit = code, "{line}"),
        Err(e) => tracing::error!(exit = code, kind = e.label(), "{line}"),
    }
    code
}

/// Reads a path argument that must exist.
pub fn existing(path: &Path) -> Result<&Path> {
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::Input(format!("{} does not exist", path.display())))
    }
}
