use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal, Uniform};

use crate::cuda::{DeviceBuffer, backend};
use crate::storage::{CpuBuffer, Storage};
use crate::{DType, Device, Error, Result, Shape};

/// An n-dimensional array on a device. Cloning is cheap (the storage is shared and immutable);
/// every op returns a new tensor. Reading values back to the host is explicit: [`Tensor::to_vec_f32`].
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    pub(crate) shape: Shape,
}

impl Tensor {
    pub(crate) fn from_cpu(buffer: CpuBuffer, shape: Shape) -> Tensor {
        Tensor {
            storage: Arc::new(Storage::Cpu(buffer)),
            shape,
        }
    }

    pub(crate) fn from_gpu(buffer: DeviceBuffer, shape: impl Into<Shape>) -> Tensor {
        Tensor {
            storage: Arc::new(Storage::Cuda(buffer)),
            shape: shape.into(),
        }
    }

    /// The device buffer of a CUDA tensor; `None` on the CPU.
    pub(crate) fn gpu(&self) -> Option<&DeviceBuffer> {
        match &*self.storage {
            Storage::Cuda(b) => Some(b),
            Storage::Cpu(_) => None,
        }
    }

    /// The device buffer of an operand that was checked to share a CUDA tensor's device.
    pub(crate) fn gpu_operand(&self, op: &'static str) -> Result<&DeviceBuffer> {
        self.gpu().ok_or_else(|| {
            Error::invalid(
                op,
                "internal error: a CPU operand reached a CUDA kernel".to_string(),
            )
        })
    }

    pub(crate) fn cpu_f32(buffer: Vec<f32>, shape: impl Into<Shape>) -> Tensor {
        Tensor::from_cpu(CpuBuffer::F32(buffer), shape.into())
    }

    pub(crate) fn cpu_i32(buffer: Vec<i32>, shape: impl Into<Shape>) -> Tensor {
        Tensor::from_cpu(CpuBuffer::I32(buffer), shape.into())
    }

    /// Moves host data onto `device` as an f32 tensor. `data.len()` must equal the shape's element count.
    pub fn from_vec_f32(data: Vec<f32>, shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        Self::from_host(CpuBuffer::F32(data), shape.into(), device)
    }

    /// Moves host data onto `device` as an i32 tensor (token ids, indices).
    pub fn from_vec_i32(data: Vec<i32>, shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        Self::from_host(CpuBuffer::I32(data), shape.into(), device)
    }

    fn from_host(buffer: CpuBuffer, shape: Shape, device: Device) -> Result<Tensor> {
        let len = match &buffer {
            CpuBuffer::F32(v) => v.len(),
            CpuBuffer::I32(v) => v.len(),
        };
        if len != shape.numel() {
            return Err(Error::invalid(
                "from_vec",
                format!(
                    "{len} values cannot fill shape {shape} ({} elements)",
                    shape.numel()
                ),
            ));
        }
        match device {
            Device::Cpu => Ok(Tensor::from_cpu(buffer, shape)),
            Device::Cuda(ordinal) => {
                let gpu = backend(ordinal)?;
                let buffer = match &buffer {
                    CpuBuffer::F32(v) => DeviceBuffer::from_f32(&gpu, v)?,
                    CpuBuffer::I32(v) => DeviceBuffer::from_i32(&gpu, v)?,
                };
                Ok(Tensor::from_gpu(buffer, shape))
            }
        }
    }

    /// A tensor of `value` everywhere.
    pub fn full(shape: impl Into<Shape>, value: f32, device: Device) -> Result<Tensor> {
        let shape = shape.into();
        match device {
            Device::Cpu => Self::from_vec_f32(vec![value; shape.numel()], shape, device),
            // Filled on the device: no host copy, and a request too big for the GPU fails there.
            Device::Cuda(ordinal) => {
                let zeros =
                    DeviceBuffer::zeros("full", &backend(ordinal)?, DType::F32, shape.numel())?;
                let zeros = Tensor::from_gpu(zeros, shape);
                if value == 0.0 && value.is_sign_positive() {
                    Ok(zeros)
                } else {
                    zeros.affine(0.0, value)
                }
            }
        }
    }

    pub fn zeros(shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        Self::full(shape, 0.0, device)
    }

    pub fn ones(shape: impl Into<Shape>, device: Device) -> Result<Tensor> {
        Self::full(shape, 1.0, device)
    }

    /// Normal(mean, std) samples from a seeded, portable generator: the same seed gives the same tensor
    /// on every machine and backend.
    pub fn randn(
        shape: impl Into<Shape>,
        mean: f32,
        std: f32,
        seed: u64,
        device: Device,
    ) -> Result<Tensor> {
        if !(std >= 0.0 && std.is_finite() && mean.is_finite()) {
            return Err(Error::invalid(
                "randn",
                format!("mean {mean} and std {std} must be finite, std >= 0"),
            ));
        }
        let shape = shape.into();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let data = (0..shape.numel())
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut rng);
                mean + std * z
            })
            .collect();
        Self::from_vec_f32(data, shape, device)
    }

    /// Uniform samples in `[low, high)` from a seeded, portable generator.
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        low: f32,
        high: f32,
        seed: u64,
        device: Device,
    ) -> Result<Tensor> {
        let dist = Uniform::new(low, high)
            .map_err(|e| Error::invalid("rand_uniform", format!("bounds [{low}, {high}): {e}")))?;
        let shape = shape.into();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let data = (0..shape.numel()).map(|_| dist.sample(&mut rng)).collect();
        Self::from_vec_f32(data, shape, device)
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// Bytes of element storage this tensor refers to (shared storage is counted once per handle).
    pub fn size_in_bytes(&self) -> usize {
        self.numel() * self.dtype().size_in_bytes()
    }

    /// Copies the values back to the host. Waits for pending work on the tensor's device.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(self.f32_host("to_vec_f32")?.into_owned())
    }

    pub fn to_vec_i32(&self) -> Result<Vec<i32>> {
        Ok(self.i32_host("to_vec_i32")?.into_owned())
    }

    /// The f32 elements on the host: a CPU tensor's own, a CUDA tensor's copied back. For the few ops
    /// that check or solve their (small) inputs on the host.
    pub(crate) fn f32_host(&self, op: &'static str) -> Result<Cow<'_, [f32]>> {
        match &*self.storage {
            Storage::Cuda(b) => Ok(Cow::Owned(b.to_vec_f32(op)?)),
            Storage::Cpu(_) => Ok(Cow::Borrowed(self.f32_slice(op)?)),
        }
    }

    /// The i32 elements on the host, as [`Tensor::f32_host`]: indices range-checked before a kernel.
    pub(crate) fn i32_host(&self, op: &'static str) -> Result<Cow<'_, [i32]>> {
        match &*self.storage {
            Storage::Cuda(b) => Ok(Cow::Owned(b.to_vec_i32(op)?)),
            Storage::Cpu(_) => Ok(Cow::Borrowed(self.i32_slice(op)?)),
        }
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar_f32(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::invalid(
                "to_scalar_f32",
                format!("tensor of shape {} is not a single value", self.shape),
            ));
        }
        match self.to_vec_f32()?.as_slice() {
            [v] => Ok(*v),
            _ => Err(Error::invalid(
                "to_scalar_f32",
                format!("tensor of shape {} is not a single value", self.shape),
            )),
        }
    }

    /// Moves the tensor to another device (a cheap handle copy when it is already there).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let buffer = match self.dtype() {
            DType::F32 => CpuBuffer::F32(self.to_vec_f32()?),
            DType::I32 => CpuBuffer::I32(self.to_vec_i32()?),
        };
        Self::from_host(buffer, self.shape.clone(), device)
    }

    /// The f32 elements of a CPU tensor.
    pub(crate) fn f32_slice(&self, op: &'static str) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(CpuBuffer::F32(v)) => Ok(v),
            Storage::Cuda(_) => Err(no_cpu_view(op)),
            Storage::Cpu(CpuBuffer::I32(_)) => Err(Error::DTypeMismatch {
                op,
                expected: DType::F32,
                got: DType::I32,
            }),
        }
    }

    /// The i32 elements of a CPU tensor.
    pub(crate) fn i32_slice(&self, op: &'static str) -> Result<&[i32]> {
        match &*self.storage {
            Storage::Cpu(CpuBuffer::I32(v)) => Ok(v),
            Storage::Cuda(_) => Err(no_cpu_view(op)),
            Storage::Cpu(CpuBuffer::F32(_)) => Err(Error::DTypeMismatch {
                op,
                expected: DType::I32,
                got: DType::F32,
            }),
        }
    }
}

/// A CUDA tensor reached CPU code: every op dispatches on the device first, so this is a bug.
fn no_cpu_view(op: &'static str) -> Error {
    Error::invalid(
        op,
        "internal error: a CUDA tensor reached the CPU path (please report this)",
    )
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}, {}, {})",
            self.shape,
            self.dtype(),
            self.device()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_is_reproducible_and_well_distributed() {
        let a = Tensor::randn([20_000], 1.0, 2.0, 42, Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let b = Tensor::randn([20_000], 1.0, 2.0, 42, Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let c = Tensor::randn([20_000], 1.0, 2.0, 43, Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "std {}", var.sqrt());

        let u = Tensor::rand_uniform([10_000], -1.0, 3.0, 7, Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        assert!(u.iter().all(|&v| (-1.0..3.0).contains(&v)));
        let mean = u.iter().sum::<f32>() / u.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
        assert!(Tensor::rand_uniform([2], 1.0, 1.0, 0, Device::Cpu).is_err());
        assert!(Tensor::randn([2], 0.0, -1.0, 0, Device::Cpu).is_err());
    }

    #[test]
    fn construction_checks_lengths_and_devices() {
        let err = Tensor::from_vec_f32(vec![1.0; 5], [2, 3], Device::Cpu).unwrap_err();
        assert!(
            err.to_string()
                .contains("5 values cannot fill shape [2, 3]"),
            "{err}"
        );
        // A device that exists nowhere is a clear error, with or without a GPU.
        let err = Tensor::zeros([2], Device::Cuda(4096)).unwrap_err();
        assert!(matches!(err, Error::DeviceUnavailable { .. }), "{err}");
        let x = Tensor::full([2, 2], 3.0, Device::Cpu).unwrap();
        assert_eq!(x.to_vec_f32().unwrap(), vec![3.0; 4]);
        assert!(x.to_scalar_f32().is_err());
        assert!(x.to_vec_i32().is_err());
        assert_eq!(
            Tensor::ones([1], Device::Cpu)
                .unwrap()
                .to_scalar_f32()
                .unwrap(),
            1.0
        );
    }
}
