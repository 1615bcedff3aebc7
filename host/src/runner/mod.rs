//! Headless runs: experiment files in, run directories and an event stream out.

mod cancel;
mod console;
mod execute;
mod experiment;
mod params;
mod recorder;
mod resume;
mod rundir;
mod slots;

pub use cancel::Cancellations;
pub use console::{HumanConsole, JsonLines};
pub use execute::{MAX_ERROR_BYTES, MAX_SUMMARY_BYTES, RunReport, Runner, RunnerOptions};
pub use experiment::{DataSpec, Experiment, RunConfig};
pub use params::Override;
pub use recorder::{
    MAX_EVENT_NAME_BYTES, MAX_LOG_BYTES, MAX_PLUGIN_EVENT_BYTES, MAX_PLUGIN_EVENTS,
    MAX_PROGRESS_STAGES, Recorder, SharedSink,
};
pub use resume::{CHECKPOINT_DIR, RESUME_DATASET};
pub use rundir::RunDir;
pub use slots::{DeviceSlots, Slot};
