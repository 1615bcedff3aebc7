//! Facts about the run: its id, seed and device, whether it continues an earlier run, and whether the
//! user has asked it to stop.

use crate::bindings::loupe::plugin::runtime as wit;

pub use wit::RunInfo;

pub fn info() -> RunInfo {
    wit::info()
}

/// The experiment's seed for this run; derive every random choice from it.
pub fn seed() -> u64 {
    wit::info().seed
}

/// Whether the user asked the run to stop (Ctrl-C, the dashboard's cancel). Once it says yes, the
/// plugin has the run's grace period to save what it has and return; check it every step.
pub fn stop_requested() -> bool {
    wit::stop_requested()
}

/// The id of the run this one continues, whose checkpoint is the directory dataset `resume`.
pub fn resumed_from() -> Option<String> {
    wit::info().resumed_from
}
