//! lapidary-integrator: the per-module steps (`integrate`), the level merges
//! (`merge`), the run's start (`prepare`), local mode (`local`) and the example
//! repository. Git goes through libgit2; the Python analysis is in [`python`].

pub mod cli;
pub mod credentials;
pub mod error;
pub mod example_repo;
pub mod git;
pub mod local;
pub mod merge;
pub mod prepare;
pub mod python;
pub mod result;
pub mod steps;

pub use error::{Error, Result};
