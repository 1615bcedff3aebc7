//! Cancelling runs by id: the runner registers a switch for each run it starts, anyone holding the
//! [`Cancellations`] (the dashboard) can flip it, and the plugin stops at its next epoch check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::plugin::CancelFlag;

#[derive(Default)]
pub struct Cancellations(Mutex<HashMap<String, CancelFlag>>);

impl Cancellations {
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancelFlag>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The switch of a run about to start.
    pub fn register(&self, run: &str) -> CancelFlag {
        let flag = CancelFlag::new(AtomicBool::new(false));
        self.runs().insert(run.to_string(), flag.clone());
        flag
    }

    /// The run is over: its switch goes.
    pub fn finish(&self, run: &str) {
        self.runs().remove(run);
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
