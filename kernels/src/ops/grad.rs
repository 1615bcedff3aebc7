//! The fused backward ops the VJPs call: one kernel each for the softmax, layer-norm and GELU VJPs
//! (instead of a dozen element-wise ops and temporaries), on either backend. They run on detached
//! tensors inside a sweep and record nothing; shapes were fixed by the forward op they differentiate.

use super::same_device;
use crate::cpu::grad as cpu;
use crate::cuda::ops::grad as gpu;
use crate::{DType, Result, Tensor};

impl Tensor {
    /// The softmax (or log-softmax) VJP over the last axis, from the forward output `self`.
    pub(crate) fn softmax_backward(&self, g: &Tensor, log: bool) -> Result<Tensor> {
        const OP: &str = "softmax_backward";
        same_device(OP, self, g)?;
        let n = self.dims().last().copied().unwrap_or(1);
        let out = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(y) = self.gpu() {
            return Tensor::from_gpu(gpu::softmax_backward(y, g.gpu_operand(OP)?, n, log)?, out);
        }
        let dx = cpu::softmax_backward(self.f32_slice(OP)?, g.f32_slice(OP)?, n, log);
        Tensor::cpu_f32(dx, out)
    }

    /// The layer-norm VJP over the last axis at the forward input `self`: `(dx, g ⊙ x̂)`, the second
    /// summed over rows by the caller for the weight's gradient.
    pub(crate) fn layer_norm_backward(
        &self,
        weight: &Tensor,
        g: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "layer_norm_backward";
        same_device(OP, self, g)?;
        same_device(OP, self, weight)?;
        let d = self.dims().last().copied().unwrap_or(1);
        let dx = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        let g_xhat = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if dx.numel() == 0 {
            return Ok((
                Tensor::zeros_reserved(dx, self.device())?,
                Tensor::zeros_reserved(g_xhat, self.device())?,
            ));
        }
        if let Some(x) = self.gpu() {
            let (a, b) =
                gpu::layer_norm_backward(x, weight.gpu_operand(OP)?, g.gpu_operand(OP)?, d, eps)?;
            return Ok((Tensor::from_gpu(a, dx)?, Tensor::from_gpu(b, g_xhat)?));
        }
        let (a, b) = cpu::layer_norm_backward(
            self.f32_slice(OP)?,
            weight.f32_slice(OP)?,
            g.f32_slice(OP)?,
            d,
            eps,
        );
        Ok((Tensor::cpu_f32(a, dx)?, Tensor::cpu_f32(b, g_xhat)?))
    }

    /// `g ⊙ gelu′(self)`, the tanh or the exact form.
    pub(crate) fn gelu_backward(&self, g: &Tensor, tanh: bool) -> Result<Tensor> {
        const OP: &str = "gelu_backward";
        same_device(OP, self, g)?;
        let out = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            return Tensor::from_gpu(gpu::gelu_backward(x, g.gpu_operand(OP)?, tanh)?, out);
        }
        let dx = cpu::gelu_backward(self.f32_slice(OP)?, g.f32_slice(OP)?, tanh);
        Tensor::cpu_f32(dx, out)
    }

    /// The cross-entropy VJP at the forward logits `self`, from their rows' log-sum-exp: `g` per row.
    pub(crate) fn cross_entropy_backward(
        &self,
        lse: &Tensor,
        labels: &Tensor,
        g: &Tensor,
        ignore: i32,
    ) -> Result<Tensor> {
        const OP: &str = "cross_entropy_backward";
        same_device(OP, self, g)?;
        let n = self.dims().last().copied().unwrap_or(1);
        let out = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            let dx = gpu::cross_entropy_backward(
                x,
                lse.gpu_operand(OP)?,
                labels.gpu_operand(OP)?,
                g.gpu_operand(OP)?,
                n,
                ignore,
            )?;
            return Tensor::from_gpu(dx, out);
        }
        let dx = cpu::cross_entropy_backward(
            self.f32_slice(OP)?,
            lse.f32_slice(OP)?,
            labels.i32_slice(OP)?,
            g.f32_slice(OP)?,
            n,
            ignore,
        );
        Tensor::cpu_f32(dx, out)
    }
}
