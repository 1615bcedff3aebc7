//! Headless runs: experiment files in, run directories and an event stream out.

mod cancel;
mod console;
mod execute;
mod experiment;
mod params;
mod recorder;
mod rundir;
mod slots;

pub use cancel::Cancellations;
pub use console::{HumanConsole, JsonLines};
pub use execute::{RunReport, Runner, RunnerOptions};
pub use experiment::{DataSpec, Experiment, RunConfig};
pub use params::Override;
pub use recorder::{Recorder, SharedSink};
pub use rundir::RunDir;
pub use slots::{DeviceSlots, Slot};
