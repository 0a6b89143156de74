//! lapidary's API: the `IntegrationRun` resource, the planner and the pod contract.
//! Shared by the operator and the integrator; performs no I/O.
#![warn(missing_docs)]

pub mod contract;
pub mod crd;
pub mod planner;

pub use contract::{Outcome, PlanDocument, ResultDocument, Role, StepResult};
pub use crd::{IntegrationRun, IntegrationRunSpec, IntegrationRunStatus, ModuleSpec, Step};
pub use planner::{plan, Plan, PlanError, PlannedModule};
