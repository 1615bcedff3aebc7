//! What CUDA this machine has: a driver that loads, and its GPUs.

use cudarc::driver::CudaContext;

/// One GPU as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_memory: usize,
}

/// The driver's state on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// No `libcuda` could be loaded.
    Missing,
    /// The driver loaded but failed (no device, a broken install): its message.
    Unusable(String),
    Ready(Vec<GpuInfo>),
}

/// Looks for the driver and its GPUs. cudarc panics on a missing library, so its presence is checked
/// first.
pub fn driver() -> Driver {
    // SAFETY: only tries to open the library by its candidate names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Driver::Missing;
    }
    let count = match CudaContext::device_count() {
        Ok(n) => n.max(0) as usize,
        Err(e) => return Driver::Unusable(e.to_string()),
    };
    if count == 0 {
        return Driver::Unusable("the driver reports no CUDA device".into());
    }
    let mut gpus = Vec::with_capacity(count);
    for ordinal in 0..count {
        let described = CudaContext::new(ordinal).and_then(|ctx| {
            Ok(GpuInfo {
                ordinal,
                name: ctx.name()?,
                compute_capability: ctx.compute_capability()?,
                total_memory: ctx.total_mem()?,
            })
        });
        match described {
            Ok(info) => gpus.push(info),
            Err(e) => return Driver::Unusable(format!("device {ordinal}: {e}")),
        }
    }
    Driver::Ready(gpus)
}
