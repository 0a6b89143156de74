//! The integrator's errors, and which of them are permanent (exit
//! [`EXIT_PERMANENT`](lapidary_api::contract::EXIT_PERMANENT): retrying cannot help) or
//! transient (exit 1: the Job retries the pod).

use std::path::PathBuf;

use lapidary_api::contract::ContractError;
use thiserror::Error;

/// Result alias of the integrator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a command. Messages never carry secrets: URLs are
/// redacted with [`crate::credentials::redact_url`] before they get here.
#[derive(Debug, Error)]
pub enum Error {
    /// The plan document, a flag or an environment variable is unusable.
    #[error("bad input: {0}")]
    Input(String),
    /// The plan document cannot be read or parsed.
    #[error("cannot use the plan {path}: {reason}")]
    Plan {
        /// Where the plan was read from.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// A contract document is malformed.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The module's path is not in the base commit.
    #[error("module {module:?}: path {path:?} does not exist in the base commit")]
    MissingPath {
        /// Module name.
        module: String,
        /// Its path.
        path: String,
    },
    /// The module's target already exists.
    #[error("module {module:?}: target {target:?} already exists in the base commit")]
    TargetExists {
        /// Module name.
        module: String,
        /// Its target.
        target: String,
    },
    /// A path that leaves the repository, goes through a symlink or a file, or is
    /// otherwise unusable.
    #[error("module {module:?}: {field} {path:?} is refused: {reason}")]
    UnsafePath {
        /// Module name.
        module: String,
        /// `path`, `target` or `file`.
        field: &'static str,
        /// The offending path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A symlink whose target lies outside the repository.
    #[error("module {module:?}: symlink {path:?} points outside the repository ({target:?}); refused, not followed")]
    SymlinkOutside {
        /// Module name.
        module: String,
        /// The symlink.
        path: String,
        /// Where it points.
        target: String,
    },
    /// A Python file that is not UTF-8.
    #[error("module {module:?}: {path:?} is not valid UTF-8 text; fix its encoding")]
    NotUtf8 {
        /// Module name.
        module: String,
        /// The file.
        path: String,
    },
    /// A binary file where text is expected.
    #[error(
        "module {module:?}: {path:?} is a binary file (contains NUL bytes), not Python source"
    )]
    Binary {
        /// Module name.
        module: String,
        /// The file.
        path: String,
    },
    /// The Python analysis refused a file.
    #[error("module {module:?}: {step} failed on {path:?}: {message}")]
    Python {
        /// Module name.
        module: String,
        /// The step.
        step: &'static str,
        /// The file.
        path: String,
        /// The analysis' message.
        message: String,
    },
    /// The revision does not name a branch, tag or commit of the repository.
    #[error("revision {revision:?} is not a branch, tag or commit of {url}")]
    UnknownRevision {
        /// The revision.
        revision: String,
        /// The (redacted) URL.
        url: String,
    },
    /// The `--base` commit cannot be found.
    #[error("base commit {base} is not on branch {branch} of {url}")]
    BaseNotFound {
        /// The commit.
        base: String,
        /// Branch searched.
        branch: String,
        /// The (redacted) URL.
        url: String,
    },
    /// A branch exists where the command expected it absent or elsewhere.
    #[error("branch {branch} already exists at {found}, expected {expected}; delete it or choose another integrationBranch")]
    BranchElsewhere {
        /// The branch.
        branch: String,
        /// Its commit on the remote.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// The remote refused a push.
    #[error("the remote refused to update {reference}: {message}")]
    PushRejected {
        /// The reference.
        reference: String,
        /// The remote's message.
        message: String,
    },
    /// The validation command failed.
    #[error("validate: {message}")]
    Validate {
        /// What happened, with the tail of its output.
        message: String,
    },
    /// Credentials are present but unusable.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A network operation failed.
    #[error("{op} {url}: {message}")]
    Remote {
        /// What was attempted (`fetch`, `push`, `list`).
        op: &'static str,
        /// The (redacted) URL.
        url: String,
        /// libgit2's message (redacted).
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// A local git operation failed.
    #[error("git {op}: {source}")]
    Git {
        /// What was attempted.
        op: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was attempted.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when retrying the same command cannot succeed.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Remote { transient, .. } => !transient,
            Error::Git { .. } | Error::Io { .. } => false,
            _ => true,
        }
    }

    /// A short fixed label per variant, for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Input(_) => "input",
            Error::Plan { .. } => "plan",
            Error::Contract(_) => "contract",
            Error::MissingPath { .. } => "missing_path",
            Error::TargetExists { .. } => "target_exists",
            Error::UnsafePath { .. } => "unsafe_path",
            Error::SymlinkOutside { .. } => "symlink_outside",
            Error::NotUtf8 { .. } => "not_utf8",
            Error::Binary { .. } => "binary",
            Error::Python { .. } => "python",
            Error::UnknownRevision { .. } => "unknown_revision",
            Error::BaseNotFound { .. } => "base_not_found",
            Error::BranchElsewhere { .. } => "branch_elsewhere",
            Error::PushRejected { .. } => "push_rejected",
            Error::Validate { .. } => "validate",
            Error::Credentials(_) => "credentials",
            Error::Remote { .. } => "remote",
            Error::Git { .. } => "git",
            Error::Io { .. } => "io",
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        if self.is_permanent() {
            lapidary_api::contract::EXIT_PERMANENT
        } else {
            1
        }
    }

    /// Wraps a libgit2 error of a local operation.
    pub fn git(op: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
        let op = op.into();
        move |source| Error::Git { op, source }
    }

    /// Wraps an I/O error.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
