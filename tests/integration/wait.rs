//! Waiting for something to happen, with a deadline: the one polling loop of the
//! tests. Runs on whichever test thread calls it.
//!
//! A test never sleeps to let something happen: it names what it waits for, and
//! if that does not come in time it fails saying so. (Also used by
//! `tests/allocations.rs`, so it polls without allocating.)

use std::fmt;
use std::time::{Duration, Instant};

/// The longest pause between two polls: slow events (a VM, a window manager) are
/// not asked too often, and no wait overshoots by more than this.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Calls `probe` until it returns `Some`, and returns its value; panics with
/// "timed out after TIMEOUT waiting for WHAT" when `timeout` passes first.
/// `what` is formatted only then, so a [`Lazy`] can show the state at that moment.
pub fn wait_until<T>(
    timeout: Duration,
    what: impl fmt::Display,
    probe: impl FnMut() -> Option<T>,
) -> T {
    match poll_until(timeout, probe) {
        Some(value) => value,
        None => {
            // Formatted before panicking: a `Lazy` that panics itself must not
            // do so inside the panic (which aborts every test).
            let what = what.to_string();
            panic!("timed out after {timeout:?} waiting for {what}")
        }
    }
}

/// [`wait_until`] for callers with something to do at the deadline before they
/// fail, or that go on without: `None` when `timeout` passed first.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    // Quick to notice what comes at once, then backing off to MAX_PAUSE.
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // The probe runs once more at the deadline itself.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A description made only when shown: `Lazy(|| format!("... {}", p.stderr()))`
/// shows a process's output as it is when the wait fails, not when it began.
pub struct Lazy<F>(pub F);

impl<F: Fn() -> String> fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}
