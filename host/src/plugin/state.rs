//! What a plugin instance's store holds: its tensors, its limits and the run it belongs to.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::{Duration, Instant};

use loupe_kernels::{Device, StopSignal, Tensor};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{ApiError, ErrorKind};
use super::limits::{Limits, MemoryCap, TensorQuota};
use crate::artifacts::ArtifactDir;
use crate::data::Dataset;
use crate::model::LoadedModel;
use crate::runner::Recorder;

/// A tensor handle's host side: the tensor and the bytes it counts against the run's quota (0 for
/// model weights, which the model owns).
pub struct TensorEntry {
    pub(crate) tensor: Tensor,
    pub(crate) counted: u64,
}

/// Everything a run hands its plugin: model, datasets, event stream and artifact directory.
pub struct RunContext {
    pub id: String,
    pub seed: u64,
    pub device: Device,
    pub model: Option<Arc<LoadedModel>>,
    pub datasets: BTreeMap<String, Dataset>,
    pub recorder: Recorder,
    pub artifacts: ArtifactDir,
    /// Asked from outside (the dashboard, Ctrl-C) to stop the run: the plugin sees the request at its
    /// next `runtime.stop-requested`, and is stopped at its grace period's end.
    pub cancel: Option<CancelFlag>,
    /// The run this one continues (`resume = "runs/<id>"`): its id.
    pub resumed_from: Option<String>,
}

/// A run's stop switch, shared between the run and whoever may stop it.
pub type CancelFlag = Arc<loupe_kernels::StopSwitch>;

impl RunContext {
    /// A context that grants nothing: no model, no data, no artifacts, events discarded. For calls
    /// outside a run, such as reading a manifest.
    pub fn inert() -> Self {
        RunContext {
            id: "manifest".into(),
            seed: 0,
            device: Device::Cpu,
            model: None,
            datasets: BTreeMap::new(),
            recorder: Recorder::discard("manifest"),
            artifacts: ArtifactDir::with_budget(std::env::temp_dir().join("loupe-no-artifacts"), 0),
            cancel: None,
            resumed_from: None,
        }
    }
}

/// The data of one plugin instance's store. One per run: a run never shares tensors with another.
pub struct RunState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    /// What the plugin wrote to stderr (panic messages), kept for the run's error.
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) memory: MemoryCap,
    pub(crate) quota: TensorQuota,
    /// The run's deadline and cancel switch, for host work that must stop with the run: long ops,
    /// blocking WASI calls, forward passes.
    pub(crate) stop: StopSignal,
    /// How long the plugin may go on after a stop request, once it has shown it watches for one.
    pub(crate) stop_grace: Duration,
    pub(crate) ctx: RunContext,
}

/// How much of a plugin's stderr is kept.
const STDERR_CAPACITY: usize = 64 * 1024;

impl RunState {
    /// A locked-down WASI: no files, no network, no environment; stderr captured.
    pub fn new(ctx: RunContext, limits: &Limits) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let deadline = Instant::now()
            .checked_add(Duration::try_from_secs_f64(limits.time_s).unwrap_or(Duration::MAX));
        let stop = StopSignal::new(deadline, ctx.cancel.clone());
        RunState {
            stop,
            stop_grace: limits.stop_grace(),
            table: ResourceTable::new(),
            wasi,
            stderr,
            memory: MemoryCap::new(limits.memory_bytes()),
            quota: TensorQuota::new(limits.tensor_bytes()),
            ctx,
        }
    }

    /// The plugin's stderr so far, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }

    /// The tensor behind a handle (a cheap clone: storage is shared).
    pub(crate) fn tensor(&self, handle: &Resource<TensorEntry>) -> wasmtime::Result<Tensor> {
        Ok(self.table.get(handle)?.tensor.clone())
    }

    /// Hands a new tensor to the plugin, counted against the quota; refused if over it.
    pub(crate) fn hand_out(
        &mut self,
        op: &str,
        tensor: Tensor,
    ) -> wasmtime::Result<Result<Resource<TensorEntry>, ApiError>> {
        let bytes = tensor.size_in_bytes() as u64;
        if let Err(e) = self.quota.check(op, tensor.dims(), bytes) {
            return Ok(Err(e));
        }
        self.quota.add(bytes);
        let entry = TensorEntry {
            tensor,
            counted: bytes,
        };
        Ok(Ok(self.table.push(entry)?))
    }

    /// Hands out several tensors, or none: if one is over the quota, those already handed out are
    /// released again.
    pub(crate) fn hand_out_all(
        &mut self,
        op: &str,
        tensors: Vec<Tensor>,
    ) -> wasmtime::Result<Result<Vec<Resource<TensorEntry>>, ApiError>> {
        let mut handed = Vec::with_capacity(tensors.len());
        for t in tensors {
            match self.hand_out(op, t)? {
                Ok(h) => handed.push(h),
                Err(e) => {
                    for h in handed {
                        self.release(h)?;
                    }
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(handed))
    }

    /// Hands out a view of a model weight: not counted, since the model owns the memory.
    pub(crate) fn hand_out_weight(
        &mut self,
        tensor: Tensor,
    ) -> wasmtime::Result<Resource<TensorEntry>> {
        Ok(self.table.push(TensorEntry { tensor, counted: 0 })?)
    }

    pub(crate) fn release(&mut self, handle: Resource<TensorEntry>) -> wasmtime::Result<()> {
        let entry = self.table.delete(handle)?;
        if entry.counted > 0 {
            self.quota.release(entry.counted);
        }
        Ok(())
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An API error value (not a trap).
pub(crate) fn api_error(kind: ErrorKind, op: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        kind,
        op: op.to_string(),
        message: message.into(),
    }
}

/// An engine error as an API error value; the engine's message already names the op and shapes.
pub(crate) fn engine_error(op: &str, e: loupe_kernels::Error) -> ApiError {
    use loupe_kernels::Error as E;
    let kind = match &e {
        E::ShapeMismatch { .. } => ErrorKind::ShapeMismatch,
        E::DTypeMismatch { .. } => ErrorKind::DtypeMismatch,
        E::AxisOutOfRange { .. } | E::InvalidArgument { .. } | E::IndexOutOfRange { .. } => {
            ErrorKind::InvalidArgument
        }
        E::OutOfDeviceMemory { .. } | E::TooLarge { .. } | E::OverBudget { .. } => {
            ErrorKind::OutOfQuota
        }
        E::Interrupted { .. } | E::NotDifferentiable { .. } => ErrorKind::Internal,
        E::DeviceMismatch { .. } | E::DeviceUnavailable { .. } => ErrorKind::Internal,
    };
    // The engine names its op too (`binary: shapes ...`); once is enough.
    let message = e.to_string();
    let engine_op = op.rsplit('.').next().unwrap_or(op).replace('-', "_");
    let message = message
        .strip_prefix(&format!("{engine_op}: "))
        .unwrap_or(&message)
        .to_string();
    api_error(kind, op, message)
}
