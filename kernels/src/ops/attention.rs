use super::same_device;
use crate::cpu::attention::{self as cpu, Dims};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Attention weights `softmax(scale · q · kᵀ)` over keys, per head: `self` (queries) is
    /// `[batch, query, head, d_head]` and `k` is `[batch, key, head, d_head]` (TransformerLens' layout);
    /// the result is `[batch, head, query, key]`. With `causal`, query `i` sees keys
    /// `0..=i + key - query`, and masked weights are exactly 0. One fused op: the scale rides in the
    /// GEMM and the mask in the softmax pass.
    pub fn attention_pattern(&self, k: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
        let rec = crate::autodiff::Recorder::new("attention_pattern", &[self, k])?;
        let pattern = self.attention_pattern_unrecorded(k, scale, causal)?;
        // Queries are kept only for the keys' gradient, and keys only for the queries'.
        rec.finish(pattern, |p| crate::autodiff::AttentionPatternVjp {
            pattern: p.detach(),
            q: k.is_tracked().then(|| self.detach()),
            k: self.is_tracked().then(|| k.detach()),
            scale,
        })
    }

    fn attention_pattern_unrecorded(&self, k: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
        const OP: &str = "attention_pattern";
        same_device(OP, self, k)?;
        let heads_layout_agrees = self.rank() == 4
            && k.rank() == 4
            && self.dims()[0] == k.dims()[0]
            && self.dims()[2..] == k.dims()[2..];
        if !heads_layout_agrees {
            return Err(Error::shapes(
                OP,
                &self.shape,
                &k.shape,
                "expected [batch, pos, head, d_head] for both",
            ));
        }
        let [batch, q_len, heads, d_head] = [0, 1, 2, 3].map(|i| self.dims()[i]);
        let k_len = k.dims()[1];
        if causal && k_len < q_len {
            return Err(Error::shapes(
                OP,
                &self.shape,
                &k.shape,
                format!("fewer keys ({k_len}) than queries ({q_len})"),
            ));
        }
        let dims = Dims {
            batch,
            heads,
            q_len,
            k_len,
            d_head,
        };
        let out = Tensor::reserve(OP, [batch, heads, q_len, k_len], DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(q) = self.gpu() {
            let pattern = crate::cuda::ops::nn::attention_pattern(
                q,
                k.gpu_operand(OP)?,
                dims,
                scale,
                causal,
            )?;
            return Tensor::from_gpu(pattern, out);
        }
        let stop = crate::guard::stop_signal();
        let pattern = cpu::pattern(
            self.f32_slice(OP)?,
            k.f32_slice(OP)?,
            dims,
            scale,
            causal,
            &stop,
        )
        .map_err(|reason| Error::Interrupted { op: OP, reason })?;
        Tensor::cpu_f32(pattern, out)
    }

    /// The attention-weighted values `z = pattern · v` per head: `self` (the pattern) is
    /// `[batch, head, query, key]` and `v` is `[batch, key, head, d_head]`; `z` is
    /// `[batch, query, head, d_head]`.
    pub fn attention_values(&self, v: &Tensor) -> Result<Tensor> {
        let rec = crate::autodiff::Recorder::new("attention_values", &[self, v])?;
        let z = self.attention_values_unrecorded(v)?;
        rec.finish(z, |_| crate::autodiff::AttentionValuesVjp {
            pattern: v.is_tracked().then(|| self.detach()),
            v: self.is_tracked().then(|| v.detach()),
        })
    }

    fn attention_values_unrecorded(&self, v: &Tensor) -> Result<Tensor> {
        const OP: &str = "attention_values";
        same_device(OP, self, v)?;
        let agrees = self.rank() == 4
            && v.rank() == 4
            && self.dims()[0] == v.dims()[0]
            && self.dims()[1] == v.dims()[2]
            && self.dims()[3] == v.dims()[1];
        if !agrees {
            return Err(Error::shapes(
                OP,
                &self.shape,
                &v.shape,
                "expected pattern [batch, head, query, key] and values [batch, key, head, d_head]",
            ));
        }
        let [batch, heads, q_len, k_len] = [0, 1, 2, 3].map(|i| self.dims()[i]);
        let d_head = v.dims()[3];
        let dims = Dims {
            batch,
            heads,
            q_len,
            k_len,
            d_head,
        };
        let out = Tensor::reserve(OP, [batch, q_len, heads, d_head], DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(pattern) = self.gpu() {
            let z = crate::cuda::ops::nn::attention_values(pattern, v.gpu_operand(OP)?, dims)?;
            return Tensor::from_gpu(z, out);
        }
        let stop = crate::guard::stop_signal();
        let z = cpu::weighted_values(self.f32_slice(OP)?, v.f32_slice(OP)?, dims, &stop)
            .map_err(|reason| Error::Interrupted { op: OP, reason })?;
        Tensor::cpu_f32(z, out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::assert_close;
    use crate::{Device, Tensor};

    /// The unfused reference: move heads first, multiply, scale, mask, softmax, multiply, move back.
    fn reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f32,
        causal: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let heads_first = |x: &Tensor| x.permute(&[0, 2, 1, 3]).unwrap();
        let mut scores = heads_first(q)
            .matmul_t(&heads_first(k), false, true)
            .unwrap()
            .affine(scale, 0.)
            .unwrap();
        if causal {
            scores = scores.causal_mask(f32::NEG_INFINITY).unwrap();
        }
        let pattern = scores.softmax(-1).unwrap();
        let z = heads_first(&pattern.matmul(&heads_first(v)).unwrap());
        (pattern.to_vec_f32().unwrap(), z.to_vec_f32().unwrap())
    }

    #[test]
    fn fused_attention_matches_the_op_sequence() {
        let q = Tensor::randn([2, 5, 3, 4], 0., 1., 11, Device::Cpu).unwrap();
        let k = Tensor::randn([2, 7, 3, 4], 0., 1., 12, Device::Cpu).unwrap();
        let v = Tensor::randn([2, 7, 3, 4], 0., 1., 13, Device::Cpu).unwrap();
        for causal in [false, true] {
            let (pattern, z) = reference(&q, &k, &v, 0.5, causal);
            let fused = q.attention_pattern(&k, 0.5, causal).unwrap();
            assert_eq!(fused.dims(), &[2, 3, 5, 7]);
            assert_close(&fused, &pattern, 1e-6);
            let fused_z = fused.attention_values(&v).unwrap();
            assert_eq!(fused_z.dims(), &[2, 5, 3, 4]);
            assert_close(&fused_z, &z, 1e-5);
        }
    }

    #[test]
    fn causal_weights_above_the_diagonal_are_exactly_zero() {
        let q = Tensor::randn([1, 4, 2, 8], 0., 1., 1, Device::Cpu).unwrap();
        let p = q
            .attention_pattern(&q, 1.0, true)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        for (i, w) in p.iter().enumerate() {
            let (query, key) = ((i / 4) % 4, i % 4);
            assert_eq!(*w == 0.0, key > query, "entry {i}");
        }
    }

    #[test]
    fn shape_errors_name_the_layout() {
        let q = Tensor::zeros([1, 5, 2, 4], Device::Cpu).unwrap();
        let k = Tensor::zeros([1, 3, 2, 4], Device::Cpu).unwrap();
        let err = q.attention_pattern(&k, 1., true).unwrap_err();
        assert!(
            err.to_string().contains("fewer keys (3) than queries (5)"),
            "{err}"
        );
        let err = q
            .attention_pattern(
                &Tensor::zeros([1, 5, 3, 4], Device::Cpu).unwrap(),
                1.,
                false,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("[batch, pos, head, d_head]"),
            "{err}"
        );
        let p = Tensor::zeros([1, 2, 5, 5], Device::Cpu).unwrap();
        assert!(p.attention_values(&k).is_err());
    }
}
