//! The CUDA side of the engine, found at run time: cudarc loads the driver and NVRTC dynamically, so
//! loupe builds and runs without a CUDA toolkit, and says plainly what it found.
//!
//! - [`probe`](driver): the driver, its GPUs, NVRTC.
//! - `sources` / `nvrtc` / `cache`: the hand-written `.cu` kernels, compiled for a GPU architecture by
//!   NVRTC and cached on disk by (source hash, architecture, NVRTC version).
//! - `abi`: every kernel's parameter list, checked at each launch and against the compiled PTX.
//! - `backend` / `buffer`: a started GPU (context, stream, loaded kernels, memory count) and device
//!   buffers.
//! - `ops`: the CUDA twin of each engine op; the engine's op methods call them for CUDA tensors.

mod abi;
mod backend;
mod buffer;
mod cache;
mod nvrtc;
pub(crate) mod ops;
mod probe;
mod sources;
#[cfg(test)]
mod tc_emulation;

pub(crate) use backend::backend;
pub use backend::{MemoryUse, memory_use, unavailable_reason};
pub(crate) use buffer::DeviceBuffer;
pub use cache::{cache_base_dir, kernel_cache_dir};
pub use nvrtc::{CompiledKernel, check_arch, compile, nvrtc_version};
pub use probe::{Driver, GpuInfo, driver};
pub use sources::{KernelSource, SOURCES};
