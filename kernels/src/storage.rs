//! Where a tensor's elements live. One variant per backend; ops match on it to pick the implementation.

use crate::cpu_memory::CPU_TENSORS;
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
    /// A CPU tensor's storage, counted in [`crate::cpu_memory`] until it is dropped.
    pub(crate) fn cpu(buffer: CpuBuffer) -> Storage {
        CPU_TENSORS.add(buffer.bytes());
        Storage::Cpu(buffer)
    }

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

impl CpuBuffer {
    fn bytes(&self) -> u64 {
        match self {
            CpuBuffer::F32(v) => std::mem::size_of_val(v.as_slice()) as u64,
            CpuBuffer::I32(v) => std::mem::size_of_val(v.as_slice()) as u64,
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::Cpu(buffer) = self {
            CPU_TENSORS.sub(buffer.bytes());
        }
    }
}
