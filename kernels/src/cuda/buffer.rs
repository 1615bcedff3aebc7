//! A tensor's elements in device memory. Allocation is counted on its device and released when the
//! last handle drops; running out of memory is an error naming the op and the request.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, DriverError, sys::CUresult};

use super::abi::Arg;
use super::backend::CudaBackend;
use crate::{DType, Error, Result};

pub(crate) enum DeviceData {
    F32(CudaSlice<f32>),
    I32(CudaSlice<i32>),
}

pub(crate) struct DeviceBuffer {
    /// At least one element: drivers refuse zero-byte allocations, so empty tensors hold one unused.
    pub(crate) data: DeviceData,
    /// The tensor's element count (`data` may be longer by that one element).
    len: usize,
    pub(crate) backend: Arc<CudaBackend>,
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.backend.count_free(self.size_in_bytes());
    }
}

fn out_of_memory(op: &'static str, backend: &CudaBackend, bytes: usize, e: DriverError) -> Error {
    if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfDeviceMemory {
            op,
            device: backend.device(),
            bytes,
            in_use: backend.in_use(),
        }
    } else {
        Error::invalid(
            op,
            format!(
                "allocating {bytes} bytes on {} failed: {e}",
                backend.device()
            ),
        )
    }
}

impl DeviceBuffer {
    /// `len` uninitialised elements of `dtype`, for a kernel to fill completely.
    pub(crate) fn alloc(
        op: &'static str,
        backend: &Arc<CudaBackend>,
        dtype: DType,
        len: usize,
    ) -> Result<DeviceBuffer> {
        let bytes = len * dtype.size_in_bytes();
        let room = len.max(1);
        // SAFETY: every caller launches a kernel that writes all `len` elements before any read.
        let data = unsafe {
            match dtype {
                DType::F32 => backend.stream.alloc::<f32>(room).map(DeviceData::F32),
                DType::I32 => backend.stream.alloc::<i32>(room).map(DeviceData::I32),
            }
        }
        .map_err(|e| out_of_memory(op, backend, bytes, e))?;
        Ok(Self::counted(data, len, backend))
    }

    /// `len` zeros of `dtype`.
    pub(crate) fn zeros(
        op: &'static str,
        backend: &Arc<CudaBackend>,
        dtype: DType,
        len: usize,
    ) -> Result<DeviceBuffer> {
        let bytes = len * dtype.size_in_bytes();
        let room = len.max(1);
        let data = match dtype {
            DType::F32 => backend.stream.alloc_zeros::<f32>(room).map(DeviceData::F32),
            DType::I32 => backend.stream.alloc_zeros::<i32>(room).map(DeviceData::I32),
        }
        .map_err(|e| out_of_memory(op, backend, bytes, e))?;
        Ok(Self::counted(data, len, backend))
    }

    pub(crate) fn from_f32(backend: &Arc<CudaBackend>, host: &[f32]) -> Result<DeviceBuffer> {
        Self::upload(backend, host, DType::F32, DeviceData::F32)
    }

    pub(crate) fn from_i32(backend: &Arc<CudaBackend>, host: &[i32]) -> Result<DeviceBuffer> {
        Self::upload(backend, host, DType::I32, DeviceData::I32)
    }

    /// Copies `host` to the device as `dtype` (`wrap` names its variant).
    fn upload<T: DeviceRepr>(
        backend: &Arc<CudaBackend>,
        host: &[T],
        dtype: DType,
        wrap: fn(CudaSlice<T>) -> DeviceData,
    ) -> Result<DeviceBuffer> {
        if host.is_empty() {
            return Self::zeros("upload", backend, dtype, 0);
        }
        let data = backend
            .stream
            .clone_htod(host)
            .map_err(|e| out_of_memory("upload", backend, std::mem::size_of_val(host), e))?;
        Ok(Self::counted(wrap(data), host.len(), backend))
    }

    fn counted(data: DeviceData, len: usize, backend: &Arc<CudaBackend>) -> DeviceBuffer {
        let buffer = DeviceBuffer {
            data,
            len,
            backend: backend.clone(),
        };
        backend.count_alloc(buffer.size_in_bytes());
        buffer
    }

    pub(crate) fn dtype(&self) -> DType {
        match self.data {
            DeviceData::F32(_) => DType::F32,
            DeviceData::I32(_) => DType::I32,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn size_in_bytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }

    /// The device address, as a kernel argument.
    pub(crate) fn ptr(&self) -> Arg {
        let stream = &self.backend.stream;
        let (ptr, _sync) = match &self.data {
            DeviceData::F32(s) => s.device_ptr(stream),
            DeviceData::I32(s) => s.device_ptr(stream),
        };
        Arg::Ptr(ptr)
    }

    /// The address `offset` elements in, for kernels that work on one part of a buffer.
    pub(crate) fn ptr_at(&self, offset: usize) -> Arg {
        match self.ptr() {
            Arg::Ptr(p) => Arg::Ptr(p + (offset * self.dtype().size_in_bytes()) as u64),
            other => other,
        }
    }

    /// This buffer's address if it holds `dtype`, else the op's dtype error.
    pub(crate) fn typed(&self, op: &'static str, dtype: DType) -> Result<Arg> {
        if self.dtype() != dtype {
            return Err(self.wrong_dtype(op, dtype));
        }
        Ok(self.ptr())
    }

    /// Copies the values back to the host, waiting for the work queued before.
    pub(crate) fn to_vec_f32(&self, op: &'static str) -> Result<Vec<f32>> {
        match &self.data {
            DeviceData::F32(s) => self.download(op, s),
            DeviceData::I32(_) => Err(self.wrong_dtype(op, DType::F32)),
        }
    }

    pub(crate) fn to_vec_i32(&self, op: &'static str) -> Result<Vec<i32>> {
        match &self.data {
            DeviceData::I32(s) => self.download(op, s),
            DeviceData::F32(_) => Err(self.wrong_dtype(op, DType::I32)),
        }
    }

    /// The tensor's `len` elements of `slice` (an empty tensor's one unused element stays behind).
    fn download<T: DeviceRepr + Default + Clone>(
        &self,
        op: &'static str,
        slice: &CudaSlice<T>,
    ) -> Result<Vec<T>> {
        if self.len == 0 {
            return Ok(Vec::new());
        }
        self.backend
            .stream
            .clone_dtoh(&slice.slice(..self.len))
            .map_err(|e| self.failed(op, e))
    }

    fn wrong_dtype(&self, op: &'static str, expected: DType) -> Error {
        Error::DTypeMismatch {
            op,
            expected,
            got: self.dtype(),
        }
    }

    fn failed(&self, op: &'static str, e: DriverError) -> Error {
        Error::invalid(
            op,
            format!(
                "copying from {} failed: {e} (a kernel before it may have failed)",
                self.backend.device()
            ),
        )
    }
}
