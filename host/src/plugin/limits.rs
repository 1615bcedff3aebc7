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
    /// Seconds between a stop request (Ctrl-C, cancel) and the hard stop, for a plugin that watches
    /// for requests to save a checkpoint and return.
    #[serde(default = "Limits::default_stop_grace_s")]
    pub stop_grace_s: f64,
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
    fn default_stop_grace_s() -> f64 {
        10.0
    }

    /// The grace period as a duration (a bad value, refused when the experiment is read, as none).
    pub fn stop_grace(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.stop_grace_s).unwrap_or_default()
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
            stop_grace_s: Self::default_stop_grace_s(),
        }
    }
}

/// Memories one instance of a plugin may declare (a module built by a compiler declares one).
pub const MAX_MEMORIES: usize = 16;
/// Tables one instance may declare (a component's glue adds a few per module).
pub const MAX_TABLES: usize = 64;
/// Core instances one plugin may create (each module of a component is one).
pub const MAX_INSTANCES: usize = 128;
/// What a table element is counted as against the memory cap: a function reference's size.
pub const TABLE_ELEMENT_BYTES: usize = 8;

/// Caps the memory of a plugin instance: the total over all its linear memories and tables (a
/// component may declare many; each is charged), and how many of them it may declare. Growing past
/// the cap traps with a message that says which limit was hit, and the run ends.
pub struct MemoryCap {
    max_bytes: usize,
    /// Bytes of every memory and table of the instance, as last allowed to grow.
    used: usize,
    /// The growth allowed last, taken back if the allocation then fails.
    pending: usize,
    /// Set when the cap stopped a growth (the total that was asked for), so the run's error can say so.
    pub hit: Option<usize>,
}

impl MemoryCap {
    pub fn new(max_bytes: usize) -> Self {
        MemoryCap {
            max_bytes,
            used: 0,
            pending: 0,
            hit: None,
        }
    }

    /// Charges growing one memory or table from `current` to `desired` bytes, or refuses it.
    fn grow(
        &mut self,
        what: &str,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            // Past its own declared maximum: the growth fails anyway, and is not charged.
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        let total = self.used.saturating_add(more);
        if total > self.max_bytes {
            self.hit = Some(total);
            return Err(wasmtime::Error::msg(format!(
                "the plugin asked for {} MiB of {what} in all, over its memory limit of {} MiB",
                total >> 20,
                self.max_bytes >> 20
            )));
        }
        self.used = total;
        self.pending = more;
        Ok(true)
    }

    /// Takes back the growth allowed last, which the runtime then failed to make.
    fn grow_failed(&mut self) {
        self.used = self.used.saturating_sub(self.pending);
        self.pending = 0;
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow("memory", current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(
            "memory and tables",
            bytes(current),
            bytes(desired),
            maximum.map(bytes),
        )
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The message for an instantiation refused because the plugin declares more memories, tables or
/// instances than [`MemoryCap`] allows; `None` for any other error.
pub fn count_limit_message(e: &wasmtime::Error) -> Option<String> {
    // wasmtime words it `resource limit exceeded: memory count too high at 17`.
    let text = format!("{e:#}");
    let (_, declared, limit) = [
        ("memory count too high", "linear memories", MAX_MEMORIES),
        ("table count too high", "tables", MAX_TABLES),
        ("instance count too high", "module instances", MAX_INSTANCES),
    ]
    .into_iter()
    .find(|(needle, _, _)| text.contains(needle))?;
    Some(format!(
        "the plugin declares more {declared} than a plugin may have (at most {limit}), and was refused"
    ))
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
