//! Cancelling runs by id: the runner registers a switch for each run it starts, and anyone holding
//! the [`Cancellations`] (the dashboard, the signal handler) can ask it to stop. A plugin that watches
//! for the request (`runtime.stop-requested`) gets its grace period to save what it has; one that
//! does not is stopped at its next epoch check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use loupe_kernels::StopSwitch;

use crate::plugin::CancelFlag;

#[derive(Default)]
pub struct Cancellations {
    runs: Mutex<HashMap<String, CancelFlag>>,
    /// Set by [`cancel_all`](Self::cancel_all): runs registered afterwards start cancelled, so a
    /// file's later runs end at once, each with its summary, instead of starting work.
    closed: AtomicBool,
}

impl Cancellations {
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancelFlag>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The switch of a run about to start.
    pub fn register(&self, run: &str) -> CancelFlag {
        let flag: CancelFlag = Arc::new(StopSwitch::new());
        if self.closed.load(Ordering::SeqCst) {
            flag.request();
        }
        self.runs().insert(run.to_string(), flag.clone());
        flag
    }

    /// The run is over: its switch goes.
    pub fn finish(&self, run: &str) {
        self.runs().remove(run);
    }

    /// Asks every run going, and every run yet to start, to stop; how many were going.
    pub fn cancel_all(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let runs = self.runs();
        for flag in runs.values() {
            flag.request();
        }
        runs.len()
    }

    /// Stops every run going at its next check, without waiting out any grace period: the second
    /// Ctrl-C.
    pub fn stop_all_now(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let runs = self.runs();
        for flag in runs.values() {
            flag.stop_now();
        }
        runs.len()
    }

    /// Whether [`cancel_all`](Self::cancel_all) was called.
    pub fn all_cancelled(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Asks `run` to stop; false when no such run is going.
    pub fn cancel(&self, run: &str) -> bool {
        match self.runs().get(run) {
            Some(flag) => {
                flag.request();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_all_stops_the_runs_going_and_those_still_to_start() {
        let c = Cancellations::new();
        let going = c.register("a");
        assert!(!going.requested());
        assert_eq!(c.cancel_all(), 1);
        assert!(going.requested());
        assert!(c.register("b").requested(), "a later run starts cancelled");
        assert!(c.all_cancelled());
    }

    #[test]
    fn stop_all_now_overrides_the_grace_period() {
        let c = Cancellations::new();
        let going = c.register("a");
        going.grant_grace(std::time::Duration::from_secs(3600));
        c.cancel_all();
        assert!(!going.hard_stop_due(), "asked, inside its grace");
        assert_eq!(c.stop_all_now(), 1);
        assert!(going.hard_stop_due());
    }
}
