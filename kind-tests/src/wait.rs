//! Polling with a deadline: correctness never rests on a fixed sleep, only on a state
//! observed before the deadline.

use std::time::{Duration, Instant};

/// Pause between two looks at the cluster.
pub const POLL: Duration = Duration::from_millis(500);

/// Calls `check` until it returns `Ok`, and returns that value. `Err` describes the
/// state seen; the last one is in the panic message when `timeout` passes first.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {}s waiting for {what}; last state: {last}",
                timeout.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}
