//! Facts about the run: its id, seed and device.

use crate::bindings::loupe::plugin::runtime as wit;

pub use wit::RunInfo;

pub fn info() -> RunInfo {
    wit::info()
}

/// The experiment's seed for this run; derive every random choice from it.
pub fn seed() -> u64 {
    wit::info().seed
}
