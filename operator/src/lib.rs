//! lapidary's Kubernetes operator: runs `IntegrationRun`s as Jobs, level by level.
//!
//! Pure steps (planning, [`render`], [`decide`]) are separate from the client steps
//! ([`reconcile`]); [`cli`] holds the `lapidary-operator` command line.
#![warn(missing_docs)]

pub mod cli;
pub mod decide;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod results;
pub mod status;

pub use error::{Error, Result};

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scenarios;
