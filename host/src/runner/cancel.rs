//! Cancelling runs by id: the runner registers a switch for each run it starts, anyone holding the
//! [`Cancellations`] (the dashboard) can flip it, and the plugin stops at its next epoch check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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
        let flag = CancelFlag::new(AtomicBool::new(self.closed.load(Ordering::SeqCst)));
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
            flag.store(true, Ordering::Relaxed);
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
                flag.store(true, Ordering::Relaxed);
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
        assert!(!going.load(Ordering::Relaxed));
        assert_eq!(c.cancel_all(), 1);
        assert!(going.load(Ordering::Relaxed));
        assert!(
            c.register("b").load(Ordering::Relaxed),
            "a later run starts cancelled"
        );
        assert!(c.all_cancelled());
    }
}
