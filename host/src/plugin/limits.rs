//! What one run may use: linear memory, wall-clock time, tensor memory on the device.

use serde::{Deserialize, Serialize};

use super::bindings::{ApiError, ErrorKind};

/// Per-run limits, settable in an experiment's `[run.limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The plugin's own (linear) memory, in MiB.
    #[serde(default = "Limits::default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-clock time for the whole run, in seconds.
    #[serde(default = "Limits::default_time_s")]
    pub time_s: f64,
    /// Tensors the plugin holds on the device at once, in MiB.
    #[serde(default = "Limits::default_tensor_mb")]
    pub tensor_mb: u64,
}

impl Limits {
    fn default_memory_mb() -> u64 {
        1024
    }
    fn default_time_s() -> f64 {
        24.0 * 3600.0
    }
    fn default_tensor_mb() -> u64 {
        16 * 1024
    }

    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize).saturating_mul(1 << 20)
    }

    pub fn tensor_bytes(&self) -> u64 {
        self.tensor_mb.saturating_mul(1 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: Self::default_memory_mb(),
            time_s: Self::default_time_s(),
            tensor_mb: Self::default_tensor_mb(),
        }
    }
}

/// Caps the plugin's linear memory. Growing past the cap traps with a message that says which limit
/// was hit, and the run ends.
pub struct MemoryCap {
    max_bytes: usize,
    /// Set when the cap stopped a growth, so the run's error can say so.
    pub hit: Option<usize>,
}

impl MemoryCap {
    pub fn new(max_bytes: usize) -> Self {
        MemoryCap {
            max_bytes,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = Some(desired);
            return Err(wasmtime::Error::msg(format!(
                "the plugin asked for {} MiB of memory, over its limit of {} MiB",
                desired >> 20,
                self.max_bytes >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real plugin.
        Ok(desired <= 1 << 20)
    }
}

/// The bytes of tensors a run holds, against its quota. Weights are shared with the model and not
/// counted; everything a plugin creates is.
#[derive(Debug)]
pub struct TensorQuota {
    limit: u64,
    used: u64,
    live: usize,
}

/// More live handles than this is a leak, whatever their size.
const MAX_LIVE_TENSORS: usize = 1 << 20;

impl TensorQuota {
    pub fn new(limit: u64) -> Self {
        TensorQuota {
            limit,
            used: 0,
            live: 0,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    /// Refuses a tensor of `bytes` before it is made, naming the op and the shape.
    pub fn check(&self, op: &str, shape: &[usize], bytes: u64) -> Result<(), ApiError> {
        self.check_for(op, format_args!("a {shape:?} tensor"), bytes)
    }

    /// Refuses `what` (several tensors, say) of `bytes` in all before it is made.
    pub fn check_for(
        &self,
        op: &str,
        what: impl std::fmt::Display,
        bytes: u64,
    ) -> Result<(), ApiError> {
        if self.live >= MAX_LIVE_TENSORS {
            return Err(ApiError {
                kind: ErrorKind::OutOfQuota,
                op: op.to_string(),
                message: format!(
                    "the run holds {} tensors; drop handles it no longer needs",
                    self.live
                ),
            });
        }
        if self.used.saturating_add(bytes) > self.limit {
            return Err(ApiError {
                kind: ErrorKind::OutOfQuota,
                op: op.to_string(),
                message: format!(
                    "{what} needs {} MiB, but the run's tensor quota of {} MiB has {} MiB \
                     in use; drop tensors or raise [run.limits] tensor_mb",
                    bytes.div_ceil(1 << 20),
                    self.limit >> 20,
                    self.used >> 20
                ),
            });
        }
        Ok(())
    }

    pub fn add(&mut self, bytes: u64) {
        self.used += bytes;
        self.live += 1;
    }

    pub fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
        self.live = self.live.saturating_sub(1);
    }
}
