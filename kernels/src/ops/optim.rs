//! Optimiser steps as single ops, so that training loops (sparse autoencoders) update their parameters
//! in one pass on the device instead of a dozen element-wise ops.

use crate::cpu::optim::{self as cpu, AdamStep};
use crate::{DType, Error, Result, Tensor};

/// Adam's hyper-parameters, named as in `torch.optim.Adam`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl Tensor {
    /// One Adam step for `param` with gradient `grad` and moment estimates `m`, `v` (zeros before the
    /// first step); `step` counts from 1. Returns the new `(param, m, v)`. The arithmetic is PyTorch's:
    /// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `param ← param − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
    pub fn adam_step(
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        config: AdamConfig,
        step: u64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        crate::autodiff::refuse(
            "adam_step",
            &[param, grad, m, v],
            "an optimiser step has no gradient; apply it to detached parameters and gradients",
        )?;
        const OP: &str = "adam_step";
        for other in [grad, m, v] {
            super::same_device(OP, param, other)?;
            if other.shape != param.shape {
                return Err(Error::shapes(
                    OP,
                    &param.shape,
                    &other.shape,
                    "param, grad, m and v must have one shape",
                ));
            }
        }
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
        } = config;
        let valid = step >= 1
            && lr >= 0.0
            && lr.is_finite()
            && (0.0..1.0).contains(&beta1)
            && (0.0..1.0).contains(&beta2)
            && eps > 0.0;
        if !valid {
            return Err(Error::invalid(
                OP,
                format!(
                    "step {step}, lr {lr}, betas ({beta1}, {beta2}), eps {eps}: need step >= 1, lr >= 0, \
                     betas in [0, 1), eps > 0"
                ),
            ));
        }
        let t = step.min(i32::MAX as u64) as i32;
        let scalars = AdamStep {
            beta1,
            beta2,
            eps,
            step_size: (lr as f64 / (1.0 - (beta1 as f64).powi(t))) as f32,
            bias_correction2_sqrt: (1.0 - (beta2 as f64).powi(t)).sqrt() as f32,
        };
        let reserve = || Tensor::reserve(OP, param.shape.clone(), DType::F32);
        let out = [reserve()?, reserve()?, reserve()?];
        if param.numel() == 0 {
            let [p, m, v] = out.map(|o| Tensor::zeros_reserved(o, param.device()));
            return Ok((p?, m?, v?));
        }
        let [out_p, out_m, out_v] = out;
        if let Some(p) = param.gpu() {
            let (p, m, v) = crate::cuda::ops::nn::adam(
                p,
                grad.gpu_operand(OP)?,
                m.gpu_operand(OP)?,
                v.gpu_operand(OP)?,
                &scalars,
            )?;
            return Ok((
                Tensor::from_gpu(p, out_p)?,
                Tensor::from_gpu(m, out_m)?,
                Tensor::from_gpu(v, out_v)?,
            ));
        }
        let (p, m, v) = cpu::adam(
            param.f32_slice(OP)?,
            grad.f32_slice(OP)?,
            m.f32_slice(OP)?,
            v.f32_slice(OP)?,
            &scalars,
        );
        Ok((
            Tensor::cpu_f32(p, out_p)?,
            Tensor::cpu_f32(m, out_m)?,
            Tensor::cpu_f32(v, out_v)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::AdamConfig;
    use crate::{Device, Tensor};

    /// Adam in f64, written out from the paper with PyTorch's placement of epsilon.
    fn reference(p: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], c: AdamConfig, t: i32) {
        let (b1, b2) = (c.beta1 as f64, c.beta2 as f64);
        for i in 0..p.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + c.eps as f64;
            p[i] -= c.lr as f64 / (1.0 - b1.powi(t)) * m[i] / denom;
        }
    }

    #[test]
    fn three_steps_match_the_reference() {
        let n = 10_000; // over one chunk, through the parallel path
        let c = AdamConfig {
            lr: 3e-4,
            ..AdamConfig::default()
        };
        let mut param = Tensor::randn([n], 0.0, 1.0, 1, Device::Cpu).unwrap();
        let mut m = Tensor::zeros([n], Device::Cpu).unwrap();
        let mut v = Tensor::zeros([n], Device::Cpu).unwrap();
        let widen = |t: &Tensor| -> Vec<f64> {
            t.to_vec_f32().unwrap().into_iter().map(f64::from).collect()
        };
        let (mut rp, mut rm, mut rv) = (widen(&param), vec![0.0; n], vec![0.0; n]);
        for step in 1..=3u64 {
            let grad = Tensor::randn([n], 0.0, 0.1, 10 + step, Device::Cpu).unwrap();
            reference(&mut rp, &mut rm, &mut rv, &widen(&grad), c, step as i32);
            (param, m, v) = Tensor::adam_step(&param, &grad, &m, &v, c, step).unwrap();
        }
        for (got, want) in widen(&param).iter().zip(&rp) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        for (got, want) in widen(&v).iter().zip(&rv) {
            assert!(
                (got - want).abs() < 1e-9 + 1e-5 * want.abs(),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn the_first_step_moves_each_weight_by_about_lr() {
        let c = AdamConfig::default();
        let param = Tensor::from_vec_f32(vec![1.0, 1.0, 1.0], [3], Device::Cpu).unwrap();
        let grad = Tensor::from_vec_f32(vec![0.5, -2.0, 0.0], [3], Device::Cpu).unwrap();
        let zeros = Tensor::zeros([3], Device::Cpu).unwrap();
        let (p, _, _) = Tensor::adam_step(&param, &grad, &zeros, &zeros, c, 1).unwrap();
        let p = p.to_vec_f32().unwrap();
        assert!((p[0] - (1.0 - c.lr)).abs() < 1e-6 && (p[1] - (1.0 + c.lr)).abs() < 1e-6);
        assert_eq!(p[2], 1.0);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let a = Tensor::zeros([3], Device::Cpu).unwrap();
        let b = Tensor::zeros([4], Device::Cpu).unwrap();
        let c = AdamConfig::default();
        assert!(Tensor::adam_step(&a, &b, &a, &a, c, 1).is_err());
        assert!(Tensor::adam_step(&a, &a, &a, &a, c, 0).is_err());
        let bad = AdamConfig { beta1: 1.0, ..c };
        assert!(Tensor::adam_step(&a, &a, &a, &a, bad, 1).is_err());
    }
}
