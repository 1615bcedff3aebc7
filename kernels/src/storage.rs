//! Where a tensor's elements live. One variant per backend; ops match on it to pick the implementation.

use crate::cuda::DeviceBuffer;
use crate::{DType, Device};

pub(crate) enum Storage {
    Cpu(CpuBuffer),
    Cuda(DeviceBuffer),
}

pub(crate) enum CpuBuffer {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl Storage {
    pub(crate) fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(b) => b.backend.device(),
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(CpuBuffer::F32(_)) => DType::F32,
            Storage::Cpu(CpuBuffer::I32(_)) => DType::I32,
            Storage::Cuda(b) => b.dtype(),
        }
    }
}
