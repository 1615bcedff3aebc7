//! One GPU as the engine drives it: its context and stream, its kernels (compiled by NVRTC for its
//! architecture at first use, cached on disk, loaded once per process) and the count of device memory
//! loupe holds there.
//!
//! All work goes to one stream per device, so launches, copies and frees run in the order they were
//! issued; reading values back waits for that stream. Device pointers are passed to kernels as plain
//! integers, which is sound exactly because of that single stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use super::abi::{self, Arg};
use super::probe::{Driver, driver};
use super::{SOURCES, compile, kernel_cache_dir};
use crate::{Device, Error, Result};

/// A GPU ready for work.
pub(crate) struct CudaBackend {
    pub(crate) ordinal: usize,
    pub(crate) stream: Arc<CudaStream>,
    /// The architecture kernels are compiled for (`sm_90`, ...).
    arch: &'static str,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// Bytes of device memory held by live tensors.
    in_use: AtomicUsize,
    /// The most ever held at once.
    peak: AtomicUsize,
    total_memory: usize,
}

/// Device memory loupe holds on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub in_use: usize,
    pub peak: usize,
    pub total: usize,
}

type Registry = Mutex<HashMap<usize, Arc<CudaBackend>>>;

fn registry() -> &'static Registry {
    static BACKENDS: OnceLock<Registry> = OnceLock::new();
    BACKENDS.get_or_init(Registry::default)
}

/// The backend of CUDA device `ordinal`, started at first use; or why that device cannot be used.
pub(crate) fn backend(ordinal: usize) -> Result<Arc<CudaBackend>> {
    let mut backends = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = backends.get(&ordinal) {
        return Ok(b.clone());
    }
    let b = Arc::new(CudaBackend::start(ordinal)?);
    backends.insert(ordinal, b.clone());
    Ok(b)
}

/// Device memory loupe holds on CUDA device `ordinal`, if that device has been used.
pub fn memory_use(ordinal: usize) -> Option<MemoryUse> {
    let backends = registry().lock().unwrap_or_else(|p| p.into_inner());
    backends.get(&ordinal).map(|b| MemoryUse {
        in_use: b.in_use.load(Ordering::Relaxed),
        peak: b.peak.load(Ordering::Relaxed),
        total: b.total_memory,
    })
}

/// Why CUDA device `ordinal` is unusable, or `None` when it can be started.
pub fn unavailable_reason(ordinal: usize) -> Option<String> {
    backend(ordinal).err().map(|e| match e {
        Error::DeviceUnavailable { why, .. } => why,
        other => other.to_string(),
    })
}

fn unavailable(ordinal: usize, why: impl Into<String>) -> Error {
    Error::DeviceUnavailable {
        device: Device::Cuda(ordinal),
        why: why.into(),
    }
}

/// The newest architecture loupe compiles for that a GPU of compute capability `cc` runs (PTX is
/// forward compatible, so a newer GPU runs the newest known architecture's code).
fn arch_for(cc: (i32, i32)) -> Option<&'static str> {
    const KNOWN: &[((i32, i32), &str)] = &[
        ((8, 0), "sm_80"),
        ((8, 6), "sm_86"),
        ((8, 7), "sm_87"),
        ((8, 9), "sm_89"),
        ((9, 0), "sm_90"),
        ((10, 0), "sm_100"),
        ((12, 0), "sm_120"),
    ];
    KNOWN
        .iter()
        .rev()
        .find(|(min, _)| cc >= *min)
        .map(|(_, arch)| *arch)
}

impl CudaBackend {
    fn start(ordinal: usize) -> Result<CudaBackend> {
        match driver() {
            Driver::Missing => {
                return Err(unavailable(
                    ordinal,
                    "no CUDA driver (libcuda) could be loaded on this machine",
                ));
            }
            Driver::Unusable(why) => return Err(unavailable(ordinal, why)),
            Driver::Ready(gpus) if ordinal >= gpus.len() => {
                return Err(unavailable(
                    ordinal,
                    format!(
                        "this machine has {} CUDA device(s), numbered from 0",
                        gpus.len()
                    ),
                ));
            }
            Driver::Ready(_) => {}
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(ordinal, e.to_string()))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| unavailable(ordinal, e.to_string()))?;
        let arch = arch_for(cc).ok_or_else(|| {
            unavailable(
                ordinal,
                format!(
                    "compute capability {}.{} is older than loupe's minimum, 8.0 (Ampere)",
                    cc.0, cc.1
                ),
            )
        })?;
        if let Err(why) = super::nvrtc_version() {
            return Err(unavailable(ordinal, why));
        }
        let total_memory = ctx
            .total_mem()
            .map_err(|e| unavailable(ordinal, e.to_string()))?;
        // One stream, so ordering is the stream's: cudarc's per-buffer events would only cost time.
        // SAFETY: no other stream of this context ever touches loupe's buffers.
        unsafe { ctx.disable_event_tracking() };
        Ok(CudaBackend {
            ordinal,
            stream: ctx.default_stream(),
            arch,
            functions: Mutex::default(),
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            total_memory,
        })
    }

    pub(crate) fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    /// Waits for all work queued on this device.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| {
            Error::invalid(
                "synchronize",
                format!("{} reported a failure: {e}", self.device()),
            )
        })
    }

    /// Kernel `name`, compiling and loading its module on first use.
    fn function(&self, sig: &'static abi::KernelSig) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = functions.get(sig.name) {
            return Ok(f.clone());
        }
        let source = SOURCES
            .iter()
            .find(|s| s.name == sig.module)
            .ok_or_else(|| Error::invalid(sig.name, format!("no kernel source {}", sig.module)))?;
        let cache = kernel_cache_dir();
        let compiled = compile(source, self.arch, cache.as_deref())
            .map_err(|why| unavailable(self.ordinal, why))?;
        let module = self
            .stream
            .context()
            .load_module(Ptx::from_src(compiled.ptx))
            .map_err(|e| {
                unavailable(
                    self.ordinal,
                    format!("loading {}.cu for {}: {e}", source.name, self.arch),
                )
            })?;
        // Register every kernel of the module at once: each module is compiled and loaded once.
        for k in abi::KERNELS.iter().filter(|k| k.module == sig.module) {
            let f = module.load_function(k.name).map_err(|e| {
                unavailable(
                    self.ordinal,
                    format!("kernel {} in {}.cu: {e}", k.name, k.module),
                )
            })?;
            functions.insert(k.name, f);
        }
        functions
            .get(sig.name)
            .cloned()
            .ok_or_else(|| Error::invalid(sig.name, "kernel missing from its module"))
    }

    /// Launches kernel `name` on `grid` blocks of `block` threads. Arguments are checked against the
    /// kernel's signature first; an empty grid launches nothing.
    pub(crate) fn launch(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<()> {
        let sig = abi::kernel(name)
            .ok_or_else(|| Error::invalid(name, "internal error: unknown kernel"))?;
        abi::check_args(sig, args).map_err(|why| Error::invalid(name, why))?;
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        let function = self.function(sig)?;
        let mut builder = self.stream.launch_builder(&function);
        for arg in args {
            match arg {
                Arg::Ptr(p) => builder.arg(p),
                Arg::I64(v) => builder.arg(v),
                Arg::I32(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
                Arg::Strides(s) => builder.arg(s),
                Arg::Strides3(s) => builder.arg(s),
                Arg::Layout(l) => builder.arg(l),
            };
        }
        let config = LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's parameter list (checked above, and the list is
        // checked against the PTX in the tests); pointers are live buffers of this device whose
        // lengths the calling op validated, and the single stream orders every use before any free.
        unsafe { builder.launch(config) }
            .map(|_| ())
            .map_err(|e| Error::invalid(name, format!("launch on {} failed: {e}", self.device())))
    }

    /// Records `bytes` more held; the peak follows.
    pub(crate) fn count_alloc(&self, bytes: usize) {
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn count_free(&self, bytes: usize) {
        self.in_use.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_follow_compute_capability() {
        assert_eq!(arch_for((9, 0)), Some("sm_90"));
        assert_eq!(arch_for((8, 0)), Some("sm_80"));
        assert_eq!(arch_for((8, 6)), Some("sm_86"));
        assert_eq!(arch_for((10, 3)), Some("sm_100"));
        assert_eq!(arch_for((7, 5)), None);
        for (_, arch) in [((8, 0), "sm_80"), ((9, 0), "sm_90")] {
            assert!(super::super::check_arch(arch).is_ok());
        }
    }

    #[test]
    fn a_missing_device_is_an_error_naming_why() {
        // Ordinal 4096 exists nowhere: with or without a GPU this is a clear error, not a panic.
        match backend(4096) {
            Err(Error::DeviceUnavailable { device, why }) => {
                assert_eq!(device, Device::Cuda(4096));
                assert!(!why.is_empty());
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("device 4096 should not exist"),
        }
        assert!(unavailable_reason(4096).is_some());
        assert!(memory_use(4096).is_none());
    }
}
