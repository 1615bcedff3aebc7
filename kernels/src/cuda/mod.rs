//! The CUDA side of the engine, found at run time: cudarc loads the driver and NVRTC dynamically, so
//! loupe builds and runs without a CUDA toolkit, and says plainly what it found.
//!
//! So far: the probe (driver, GPUs, NVRTC) and the kernel sources with their NVRTC compilation and
//! on-disk PTX cache. Ops do not run on the GPU yet.

mod cache;
mod nvrtc;
mod probe;
mod sources;

pub use cache::{cache_base_dir, kernel_cache_dir};
pub use nvrtc::{CompiledKernel, check_arch, compile, nvrtc_version};
pub use probe::{Driver, GpuInfo, driver};
pub use sources::{KernelSource, SOURCES};
