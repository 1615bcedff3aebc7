//! loupe's tensor engine.
//!
//! A [`Tensor`] lives on a [`Device`]. Ops are methods that validate shapes and dtypes, enqueue the work on
//! the tensor's device and return a new tensor; reading values back to the host is always explicit
//! ([`Tensor::to_vec_f32`] and friends). On the CPU the work runs at once on a rayon pool; on a CUDA
//! device ([`cuda`]) it is queued on the GPU's stream as hand-written kernels, and reading back waits
//! for it. Callers do not change between the two.
//!
//! Every failure is a typed [`Error`] naming the op and the shapes involved — never a panic.

mod autodiff;
mod cpu;
pub mod cpu_memory;
pub mod cuda;
mod device;
mod dtype;
mod error;
pub mod guard;
mod ops;
pub mod selftest;
mod shape;
mod stop;
mod storage;
mod tensor;

pub use autodiff::Tape;
pub use cpu_memory::{CpuMemoryUse, cpu_memory_use};
pub use device::Device;
pub use dtype::DType;
pub use error::{Error, Result};
pub use guard::{StopReason, StopSignal, guarded};
pub use ops::AdamConfig;
pub use ops::BinaryOp;
pub use ops::MatmulPrecision;
pub use ops::ReduceOp;
pub use ops::UnaryOp;
pub use shape::Shape;
pub use stop::StopSwitch;
pub use tensor::Tensor;
