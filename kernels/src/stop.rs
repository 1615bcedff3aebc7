//! A run's stop switch: someone asks the run to stop (Ctrl-C, the dashboard's cancel), and the hard
//! stop — long ops giving up, the plugin interrupted — comes a grace period later, so a plugin that
//! watches for the request can save what it has first. A plugin that never looks gets no grace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Not asked yet, in [`StopSwitch::asked_ns`].
const NOT_ASKED: u64 = u64::MAX;

/// Shared between a run and whoever may stop it; every method takes `&self` and is cheap (atomics
/// and, once asked, a clock read).
#[derive(Debug)]
pub struct StopSwitch {
    origin: Instant,
    /// Nanoseconds from `origin` to the first request, or [`NOT_ASKED`].
    asked_ns: AtomicU64,
    /// The time the run gets between the request and the hard stop.
    grace_ns: AtomicU64,
    /// Set by [`stop_now`](Self::stop_now): no grace at all.
    now: AtomicBool,
}

impl Default for StopSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSwitch {
    /// Not asked; no grace until [`grant_grace`](Self::grant_grace).
    pub fn new() -> Self {
        StopSwitch {
            origin: Instant::now(),
            asked_ns: AtomicU64::new(NOT_ASKED),
            grace_ns: AtomicU64::new(0),
            now: AtomicBool::new(false),
        }
    }

    /// Asks the run to stop. The first request starts the grace period; later ones change nothing.
    pub fn request(&self) {
        let at = self
            .origin
            .elapsed()
            .as_nanos()
            .min(u128::from(NOT_ASKED - 1)) as u64;
        let _ = self
            .asked_ns
            .compare_exchange(NOT_ASKED, at, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Stops the run at its next check, grace or not.
    pub fn stop_now(&self) {
        self.request();
        self.now.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.asked_ns.load(Ordering::SeqCst) != NOT_ASKED
    }

    /// The run watches for requests: after one, it has `grace` before the hard stop.
    pub fn grant_grace(&self, grace: Duration) {
        let ns = grace.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.grace_ns.store(ns, Ordering::SeqCst);
    }

    /// Whether the run must stop now: asked, and its grace (if any) is over.
    pub fn hard_stop_due(&self) -> bool {
        let asked = self.asked_ns.load(Ordering::SeqCst);
        if asked == NOT_ASKED {
            return false;
        }
        if self.now.load(Ordering::SeqCst) {
            return true;
        }
        let grace = self.grace_ns.load(Ordering::SeqCst);
        let due = asked.saturating_add(grace);
        self.origin.elapsed().as_nanos() >= u128::from(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_grace_a_request_stops_at_once() {
        let s = StopSwitch::new();
        assert!(!s.requested() && !s.hard_stop_due());
        s.request();
        assert!(s.requested() && s.hard_stop_due());
    }

    #[test]
    fn grace_delays_the_hard_stop_and_stop_now_ends_it() {
        let s = StopSwitch::new();
        s.grant_grace(Duration::from_secs(3600));
        s.request();
        assert!(s.requested());
        assert!(!s.hard_stop_due(), "inside the grace period");
        s.stop_now();
        assert!(s.hard_stop_due());
    }

    #[test]
    fn the_grace_period_runs_from_the_first_request() {
        let s = StopSwitch::new();
        s.grant_grace(Duration::from_millis(30));
        s.request();
        std::thread::sleep(Duration::from_millis(40));
        s.request();
        assert!(
            s.hard_stop_due(),
            "a second request does not restart the grace"
        );
    }
}
