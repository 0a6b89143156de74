//! Harness of lapidary's end-to-end tests: a real cluster driven with `kubectl`, git
//! repositories served to the pods by `kind-tests/git-server.sh`, example repositories
//! made by `lapidary-integrator example-repo`, and one namespace per scenario that is
//! kept (with its pods, Events and the operator's logs printed) when the scenario fails.
//!
//! This is test code: every helper panics with a message saying what went wrong, which
//! fails the calling test. Nothing here skips: without a cluster the tests fail.

pub mod env;
pub mod example;
pub mod git;
pub mod kubectl;
pub mod scenario;
pub mod times;
pub mod wait;

pub use env::E2e;
pub use example::Example;
pub use kubectl::Kubectl;
pub use scenario::Scenario;
pub use wait::wait_for;
