use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal, Uniform};

use crate::cuda::{DeviceBuffer, backend};
use crate::storage::{CpuBuffer, Storage};
use crate::{DType, Device, Error, Result, Shape, guard};

/// An n-dimensional array on a device. Cloning is cheap (the storage is shared and immutable);
/// every op returns a new tensor. Reading values back to the host is explicit: [`Tensor::to_vec_f32`].
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    pub(crate) shape: Shape,
    /// Its node when a [`Tape`](crate::Tape) tracks it; `None` for almost every tensor.
    pub(crate) node: Option<crate::autodiff::Tracked>,
}

/// A tensor an op is about to make: its shape checked ([`Shape::checked`]) and its bytes charged to the
/// caller's budget ([`guard`](crate::guard)). Ops reserve their outputs before computing them, and a
/// tensor can only be built from a new buffer through a reservation, whose shape the buffer must fill
/// exactly: no op can allocate first and check later, and no tensor's shape can disagree with its
/// buffer.
#[derive(Debug)]
pub(crate) struct Reserved {
    op: &'static str,
    shape: Shape,
    dtype: DType,
}

impl Reserved {
    pub(crate) fn shape(&self) -> &Shape {
        &self.shape
    }

    pub(crate) fn numel(&self) -> usize {
        self.shape.numel()
    }
}

impl Tensor {
    /// Checks `shape` and charges a `dtype` tensor of it to the current budget.
    pub(crate) fn reserve(
        op: &'static str,
        shape: impl Into<Shape>,
        dtype: DType,
    ) -> Result<Reserved> {
        let shape = Shape::checked(op, shape.into().dims())?;
        guard::reserve(op, &shape, dtype)?;
        Ok(Reserved { op, shape, dtype })
    }

    /// A CPU tensor from a buffer that must fill its reservation.
    pub(crate) fn from_cpu(buffer: CpuBuffer, out: Reserved) -> Result<Tensor> {
        let (len, dtype) = match &buffer {
            CpuBuffer::F32(v) => (v.len(), DType::F32),
            CpuBuffer::I32(v) => (v.len(), DType::I32),
        };
        filled(&out, len, dtype)?;
        Ok(Tensor {
            storage: Arc::new(Storage::cpu(buffer)),
            shape: out.shape,
            node: None,
        })
    }

    /// A CUDA tensor from a device buffer that must fill its reservation.
    pub(crate) fn from_gpu(buffer: DeviceBuffer, out: Reserved) -> Result<Tensor> {
        filled(&out, buffer.len(), buffer.dtype())?;
        Ok(Tensor {
            storage: Arc::new(Storage::Cuda(buffer)),
            shape: out.shape,
            node: None,
        })
    }

    /// The same storage under another shape of the same element count (no allocation).
    pub(crate) fn view(&self, op: &'static str, shape: Shape) -> Result<Tensor> {
        let shape = Shape::checked(op, shape.dims())?;
        if shape.numel() != self.numel() {
            return Err(Error::invalid(
                op,
                format!(
                    "internal error: a view of {} as {shape} (please report this)",
                    self.shape
                ),
            ));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            shape,
            node: None,
        })
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

    pub(crate) fn cpu_f32(buffer: Vec<f32>, out: Reserved) -> Result<Tensor> {
        Tensor::from_cpu(CpuBuffer::F32(buffer), out)
    }

    pub(crate) fn cpu_i32(buffer: Vec<i32>, out: Reserved) -> Result<Tensor> {
        Tensor::from_cpu(CpuBuffer::I32(buffer), out)
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
        let (len, dtype) = match &buffer {
            CpuBuffer::F32(v) => (v.len(), DType::F32),
            CpuBuffer::I32(v) => (v.len(), DType::I32),
        };
        let shape = Shape::checked("from_vec", shape.dims())?;
        if len != shape.numel() {
            return Err(Error::invalid(
                "from_vec",
                format!(
                    "{len} values cannot fill shape {shape} ({} elements)",
                    shape.numel()
                ),
            ));
        }
        let out = Tensor::reserve("from_vec", shape, dtype)?;
        Tensor::place(buffer, out, device)
    }

    /// Puts a host buffer that fills its reservation on `device`.
    pub(crate) fn place(buffer: CpuBuffer, out: Reserved, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::from_cpu(buffer, out),
            Device::Cuda(ordinal) => {
                let gpu = backend(ordinal)?;
                let buffer = match &buffer {
                    CpuBuffer::F32(v) => DeviceBuffer::from_f32(&gpu, v)?,
                    CpuBuffer::I32(v) => DeviceBuffer::from_i32(&gpu, v)?,
                };
                Tensor::from_gpu(buffer, out)
            }
        }
    }

    /// A tensor of `value` everywhere.
    pub fn full(shape: impl Into<Shape>, value: f32, device: Device) -> Result<Tensor> {
        let out = Tensor::reserve("full", shape, DType::F32)?;
        match device {
            Device::Cpu => Tensor::cpu_f32(vec![value; out.numel()], out),
            // Filled on the device: no host copy, and a request too big for the GPU fails there.
            Device::Cuda(ordinal) => {
                let gpu = backend(ordinal)?;
                let zeros = DeviceBuffer::zeros("full", &gpu, DType::F32, out.numel())?;
                if value == 0.0 && value.is_sign_positive() {
                    Tensor::from_gpu(zeros, out)
                } else {
                    let filled = crate::cuda::ops::elementwise::affine(&zeros, 0.0, value)?;
                    Tensor::from_gpu(filled, out)
                }
            }
        }
    }

    /// A reserved tensor of zeros on `device`: the result of ops over empty axes, and the empty
    /// results that need no kernel at all.
    pub(crate) fn zeros_reserved(out: Reserved, device: Device) -> Result<Tensor> {
        match (device, out.dtype) {
            (Device::Cpu, DType::F32) => Tensor::cpu_f32(vec![0.0; out.numel()], out),
            (Device::Cpu, DType::I32) => Tensor::cpu_i32(vec![0; out.numel()], out),
            (Device::Cuda(ordinal), dtype) => {
                let zeros = DeviceBuffer::zeros(out.op, &backend(ordinal)?, dtype, out.numel())?;
                Tensor::from_gpu(zeros, out)
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
        let out = Tensor::reserve("randn", shape, DType::F32)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let data = (0..out.numel())
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut rng);
                mean + std * z
            })
            .collect();
        Tensor::place(CpuBuffer::F32(data), out, device)
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
        let out = Tensor::reserve("rand_uniform", shape, DType::F32)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let data = (0..out.numel()).map(|_| dist.sample(&mut rng)).collect();
        Tensor::place(CpuBuffer::F32(data), out, device)
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
        crate::autodiff::refuse(
            "to_device",
            &[self],
            "a move between devices has no gradient yet; watch the tensor on the device it is used on",
        )?;
        let out = Tensor::reserve("to_device", self.shape.clone(), self.dtype())?;
        let buffer = match self.dtype() {
            DType::F32 => CpuBuffer::F32(self.to_vec_f32()?),
            DType::I32 => CpuBuffer::I32(self.to_vec_i32()?),
        };
        Tensor::place(buffer, out, device)
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

/// Checks that a new buffer fills its reservation exactly: the one place a shape meets its storage.
fn filled(out: &Reserved, len: usize, dtype: DType) -> Result<()> {
    if len != out.numel() || dtype != out.dtype {
        return Err(Error::invalid(
            out.op,
            format!(
                "internal error: a {dtype} buffer of {len} elements for a {} tensor of shape {} (please report this)",
                out.dtype, out.shape
            ),
        ));
    }
    Ok(())
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
