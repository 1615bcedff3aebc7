use super::same_device;
use crate::cpu::matmul::{Operand, batched_matmul};
use crate::cuda::ops::matmul::{self as gpu, Gemm};
use crate::{DType, Error, Result, Shape, Tensor};

/// The precision a matmul multiplies in. Accumulation is always f32; method math uses `F32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// f32 products: the reference.
    #[default]
    F32,
    /// Operands rounded to bfloat16 (round to nearest even), products accumulated in f32: the
    /// tensor-core path on a GPU, its exact twin on the CPU (bf16 products are exact in f32).
    Bf16,
    /// Operands rounded to IEEE half precision, products accumulated in f32.
    F16,
}

impl MatmulPrecision {
    /// `x` rounded to this precision and widened back to f32.
    fn round(self, x: &[f32]) -> Vec<f32> {
        match self {
            MatmulPrecision::F32 => x.to_vec(),
            MatmulPrecision::Bf16 => x
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect(),
            MatmulPrecision::F16 => x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
        }
    }
}

impl Tensor {
    /// Batched matrix product `op(self) · op(rhs)` where `op` transposes the last two axes when its flag
    /// is set. Leading (batch) axes broadcast, so `[B, T, D] · [D, E]` applies one matrix to every batch.
    pub fn matmul_t(
        &self,
        rhs: &Tensor,
        transpose_lhs: bool,
        transpose_rhs: bool,
    ) -> Result<Tensor> {
        let rec = crate::autodiff::Recorder::new("matmul", &[self, rhs])?;
        let out = self.scaled_matmul("matmul", rhs, transpose_lhs, transpose_rhs, 1.0)?;
        // Each operand is kept only for the other's gradient.
        rec.finish(out, |_| crate::autodiff::MatmulVjp {
            a: rhs.is_tracked().then(|| self.detach()),
            b: self.is_tracked().then(|| rhs.detach()),
            a_shape: self.shape.clone(),
            b_shape: rhs.shape.clone(),
            transpose_a: transpose_lhs,
            transpose_b: transpose_rhs,
        })
    }

    /// [`Tensor::matmul_t`] multiplying in `precision` (bf16/f16: tensor cores on a GPU).
    pub fn matmul_with_precision(
        &self,
        rhs: &Tensor,
        transpose_lhs: bool,
        transpose_rhs: bool,
        precision: MatmulPrecision,
    ) -> Result<Tensor> {
        crate::autodiff::refuse(
            "matmul_with_precision",
            &[self, rhs],
            "reduced-precision products have no gradient; use matmul_t (f32)",
        )?;
        self.gemm("matmul", rhs, transpose_lhs, transpose_rhs, 1.0, precision)
    }

    /// `scale · op(self) · op(rhs)`, the scale applied inside the GEMM at no extra cost.
    pub(crate) fn scaled_matmul(
        &self,
        op: &'static str,
        rhs: &Tensor,
        transpose_lhs: bool,
        transpose_rhs: bool,
        scale: f32,
    ) -> Result<Tensor> {
        self.gemm(
            op,
            rhs,
            transpose_lhs,
            transpose_rhs,
            scale,
            MatmulPrecision::F32,
        )
    }

    fn gemm(
        &self,
        op: &'static str,
        rhs: &Tensor,
        transpose_lhs: bool,
        transpose_rhs: bool,
        scale: f32,
        precision: MatmulPrecision,
    ) -> Result<Tensor> {
        same_device(op, self, rhs)?;
        if self.rank() < 2 || rhs.rank() < 2 {
            return Err(Error::shapes(
                op,
                &self.shape,
                &rhs.shape,
                "both operands need at least 2 axes",
            ));
        }
        let (la, lb) = last_two(&self.shape);
        let (ra, rb) = last_two(&rhs.shape);
        let (m, k) = if transpose_lhs { (lb, la) } else { (la, lb) };
        let (k2, n) = if transpose_rhs { (rb, ra) } else { (ra, rb) };
        if k != k2 {
            return Err(Error::shapes(
                op,
                &self.shape,
                &rhs.shape,
                format!("inner dimensions {k} and {k2} differ"),
            ));
        }
        let lhs_batch = Shape::new(&self.dims()[..self.rank() - 2]);
        let rhs_batch = Shape::new(&rhs.dims()[..rhs.rank() - 2]);
        let batch = Shape::broadcast(op, &lhs_batch, &rhs_batch).map_err(|_| {
            Error::shapes(op, &self.shape, &rhs.shape, "batch axes do not broadcast")
        })?;

        let mut dims = batch.dims().to_vec();
        dims.extend([m, n]);
        let out = Tensor::reserve(op, dims, DType::F32)?;
        // An empty product, or one over an empty inner axis (all zeros, as in PyTorch), needs no
        // GEMM: nothing is read, and no per-batch offsets are listed for a batch that may be huge.
        if out.numel() == 0 || k == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        // One matrix applied to a stack (`[B, T, D] · [D, E]`, the usual layer): the stacked rows are
        // one `[B·T, D]` matrix in memory, and one large product blocks and splits across threads
        // far better than B small ones.
        let (m, lhs_offsets, rhs_offsets) = if rhs_batch.numel() == 1 && !transpose_lhs {
            (m * batch.numel(), vec![0], vec![0])
        } else {
            (
                m,
                batch_offsets(&lhs_batch, &batch, la * lb),
                batch_offsets(&rhs_batch, &batch, ra * rb),
            )
        };
        if let Some(a) = self.gpu() {
            let gemm = Gemm {
                m,
                k,
                n,
                transpose_lhs,
                transpose_rhs,
                lhs_offsets: &lhs_offsets,
                rhs_offsets: &rhs_offsets,
                scale,
                precision,
            };
            return Tensor::from_gpu(gpu::matmul(a, rhs.gpu_operand(op)?, &gemm)?, out);
        }
        let (lhs_data, rhs_data) = (self.f32_slice(op)?, rhs.f32_slice(op)?);
        let rounded = (precision != MatmulPrecision::F32)
            .then(|| (precision.round(lhs_data), precision.round(rhs_data)));
        let (lhs_data, rhs_data) = match &rounded {
            Some((a, b)) => (&a[..], &b[..]),
            None => (lhs_data, rhs_data),
        };
        let lhs = Operand {
            data: lhs_data,
            batch_offsets: lhs_offsets,
            row_stride: if transpose_lhs { 1 } else { lb },
            col_stride: if transpose_lhs { lb } else { 1 },
        };
        let rhs_op = Operand {
            data: rhs_data,
            batch_offsets: rhs_offsets,
            row_stride: if transpose_rhs { 1 } else { rb },
            col_stride: if transpose_rhs { rb } else { 1 },
        };
        let stop = crate::guard::stop_signal();
        let product = batched_matmul(&lhs, &rhs_op, m, k, n, scale, &stop)
            .map_err(|reason| Error::Interrupted { op, reason })?;
        Tensor::cpu_f32(product, out)
    }

    /// The affine layer `self · weight + bias` for `self` of shape `[.., in]`, `weight` `[in, out]`
    /// (the Conv1D layout GPT-2 checkpoints store) and `bias` `[out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.affine_layer(weight, bias, false)
    }

    /// The affine layer `self · weightᵀ + bias` for `weight` `[out, in]`, the layout of PyTorch's
    /// `nn.Linear` (ViT, DeiT and most Hugging Face checkpoints): one product with the bias fused,
    /// as [`Tensor::linear`], without transposing the weight first.
    pub fn linear_t(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.affine_layer(weight, bias, true)
    }

    fn affine_layer(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        transposed: bool,
    ) -> Result<Tensor> {
        let mut operands = vec![self, weight];
        operands.extend(bias);
        let op = if transposed { "linear_t" } else { "linear" };
        let rec = crate::autodiff::Recorder::new(op, &operands)?;
        let out = self.linear_values(op, weight, bias, transposed)?;
        rec.finish(out, |_| crate::autodiff::LinearVjp {
            x: weight.is_tracked().then(|| self.detach()),
            w: self.is_tracked().then(|| weight.detach()),
            has_bias: bias.is_some(),
            transposed,
        })
    }

    fn linear_values(
        &self,
        op: &'static str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        transposed: bool,
    ) -> Result<Tensor> {
        same_device(op, self, weight)?;
        let k = *self
            .dims()
            .last()
            .ok_or_else(|| Error::invalid(op, "input has no axes"))?;
        let inner = if transposed { 1 } else { 0 };
        if weight.rank() != 2 || weight.dims()[inner] != k {
            return Err(Error::shapes(
                op,
                &self.shape,
                &weight.shape,
                if transposed {
                    format!("weight must be [out, {k}]")
                } else {
                    format!("weight must be [{k}, out]")
                },
            ));
        }
        let n = weight.dims()[1 - inner];
        if let Some(b) = bias {
            same_device(op, self, b)?;
            if b.dims() != [n] {
                return Err(Error::shapes(
                    op,
                    &weight.shape,
                    &b.shape,
                    format!("bias must be [{n}]"),
                ));
            }
        }
        // The rows are the leading axes' product, not numel / k: with k = 0 that would say 0 rows.
        let rows = self.dims()[..self.rank() - 1]
            .iter()
            .fold(1usize, |n, &d| n.saturating_mul(d));
        let mut dims = self.dims().to_vec();
        *dims.last_mut().expect("rank checked above") = n;
        let out = Tensor::reserve(op, dims, DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if k == 0 {
            // x · W over an empty inner axis is 0; the bias alone remains.
            let zeros = Tensor::zeros_reserved(out, self.device())?;
            return match bias {
                Some(b) => zeros.add(b),
                None => Ok(zeros),
            };
        }
        if let Some(x) = self.gpu() {
            let gemm = Gemm {
                m: rows,
                k,
                n,
                transpose_lhs: false,
                transpose_rhs: transposed,
                lhs_offsets: &[0],
                rhs_offsets: &[0],
                scale: 1.0,
                precision: MatmulPrecision::F32,
            };
            let product = Tensor::from_gpu(gpu::matmul(x, weight.gpu_operand(op)?, &gemm)?, out)?;
            return match bias {
                Some(b) => product.add(b),
                None => Ok(product),
            };
        }
        let bias = bias.map(|b| b.f32_slice(op)).transpose()?;
        let values = crate::cpu::matmul::linear(
            self.f32_slice(op)?,
            weight.f32_slice(op)?,
            bias,
            rows,
            k,
            n,
            transposed,
            &crate::guard::stop_signal(),
        )
        .map_err(|reason| Error::Interrupted { op, reason })?;
        Tensor::cpu_f32(values, out)
    }

    /// `self · rhs` without transposes.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }
}

fn last_two(shape: &Shape) -> (usize, usize) {
    let d = shape.dims();
    (d[d.len() - 2], d[d.len() - 1])
}

/// Element offset of each batch's matrix when `own` batch axes are broadcast to `batch`.
fn batch_offsets(own: &Shape, batch: &Shape, matrix_len: usize) -> Vec<usize> {
    let strides = own.broadcast_strides(batch);
    let dims = batch.dims();
    (0..batch.numel())
        .map(|b| {
            let mut rem = b;
            let mut offset = 0;
            for d in (0..dims.len()).rev() {
                offset += (rem % dims[d]) * strides[d];
                rem /= dims[d];
            }
            offset * matrix_len
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, t};
    use crate::{Device, Error, Tensor};

    /// Textbook triple loop, the reference for the GEMM path.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = x[r * cols + c];
            }
        }
        out
    }

    #[test]
    fn small_product() {
        let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let b = t(&[7., 8., 9., 10., 11., 12.], &[3, 2]);
        assert_close(&a.matmul(&b).unwrap(), &[58., 64., 139., 154.], 0.);
    }

    #[test]
    fn transpose_flags_match_explicit_transposes() {
        let (m, k, n) = (37, 53, 29);
        let a = Tensor::randn([m, k], 0., 1., 1, Device::Cpu).unwrap();
        let b = Tensor::randn([k, n], 0., 1., 2, Device::Cpu).unwrap();
        let (av, bv) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
        let expected = naive(&av, &bv, m, k, n);
        let at = t(&transpose(&av, m, k), &[k, m]);
        let bt = t(&transpose(&bv, k, n), &[n, k]);
        for (lhs, rhs, tl, tr) in [
            (&a, &b, false, false),
            (&at, &b, true, false),
            (&a, &bt, false, true),
            (&at, &bt, true, true),
        ] {
            assert_close(&lhs.matmul_t(rhs, tl, tr).unwrap(), &expected, 1e-5);
        }
    }

    #[test]
    fn large_product_uses_parallel_gemm_correctly() {
        let (m, k, n) = (130, 200, 150);
        let a = Tensor::randn([m, k], 0., 1., 3, Device::Cpu).unwrap();
        let b = Tensor::randn([k, n], 0., 1., 4, Device::Cpu).unwrap();
        let expected = naive(&a.to_vec_f32().unwrap(), &b.to_vec_f32().unwrap(), m, k, n);
        assert_close(&a.matmul(&b).unwrap(), &expected, 1e-4);
    }

    #[test]
    fn batched_with_broadcast_rhs() {
        let (bsz, m, k, n) = (3, 4, 5, 6);
        let a = Tensor::randn([bsz, m, k], 0., 1., 5, Device::Cpu).unwrap();
        let b = Tensor::randn([k, n], 0., 1., 6, Device::Cpu).unwrap();
        let out = a.matmul(&b).unwrap();
        assert_eq!(out.dims(), &[bsz, m, n]);
        let (av, bv) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
        let expected: Vec<f32> = (0..bsz)
            .flat_map(|i| naive(&av[i * m * k..(i + 1) * m * k], &bv, m, k, n))
            .collect();
        assert_close(&out, &expected, 1e-5);
    }

    #[test]
    fn batched_over_many_heads() {
        let (b, h, q, d) = (2, 5, 7, 3);
        let x = Tensor::randn([b, h, q, d], 0., 1., 7, Device::Cpu).unwrap();
        let scores = x.matmul_t(&x, false, true).unwrap();
        assert_eq!(scores.dims(), &[b, h, q, q]);
        let xv = x.to_vec_f32().unwrap();
        let expected: Vec<f32> = (0..b * h)
            .flat_map(|i| {
                let blk = &xv[i * q * d..(i + 1) * q * d];
                naive(blk, &transpose(blk, q, d), q, d, q)
            })
            .collect();
        assert_close(&scores, &expected, 1e-5);
    }

    #[test]
    fn linear_adds_bias_to_every_row() {
        let (rows, k, n) = (70, 90, 110);
        let x = Tensor::randn([2, rows / 2, k], 0., 1., 8, Device::Cpu).unwrap();
        let w = Tensor::randn([k, n], 0., 1., 9, Device::Cpu).unwrap();
        let b = Tensor::randn([n], 0., 1., 10, Device::Cpu).unwrap();
        let out = x.linear(&w, Some(&b)).unwrap();
        assert_eq!(out.dims(), &[2, rows / 2, n]);
        let reference = x.matmul(&w).unwrap().add(&b).unwrap();
        assert_close(&out, &reference.to_vec_f32().unwrap(), 1e-5);
        let no_bias = x.linear(&w, None).unwrap();
        assert_close(&no_bias, &x.matmul(&w).unwrap().to_vec_f32().unwrap(), 1e-5);
        assert!(x.linear(&w, Some(&w)).is_err());
        assert!(w.linear(&w, None).is_err());
    }

    #[test]
    fn linear_t_reads_the_weight_as_out_by_in() {
        let x = Tensor::randn([3, 5, 40], 0., 1., 11, Device::Cpu).unwrap();
        let w = Tensor::randn([70, 40], 0., 1., 12, Device::Cpu).unwrap();
        let b = Tensor::randn([70], 0., 1., 13, Device::Cpu).unwrap();
        let out = x.linear_t(&w, Some(&b)).unwrap();
        assert_eq!(out.dims(), &[3, 5, 70]);
        let reference = x.matmul_t(&w, false, true).unwrap().add(&b).unwrap();
        assert_close(&out, &reference.to_vec_f32().unwrap(), 1e-5);
        let err = x.linear_t(&x, None).unwrap_err().to_string();
        assert!(err.contains("linear_t"), "{err}");
        assert!(x.linear_t(&w.transpose(0, 1).unwrap(), None).is_err());
    }

    #[test]
    fn mismatched_inner_dims_are_errors() {
        let err = t(&[1.; 6], &[2, 3])
            .matmul(&t(&[1.; 6], &[2, 3]))
            .unwrap_err();
        assert!(
            matches!(err, Error::ShapeMismatch { op: "matmul", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("inner dimensions 3 and 2"),
            "{err}"
        );
        assert!(t(&[1.; 3], &[3]).matmul(&t(&[1.; 3], &[3, 1])).is_err());
        let err = t(&[1.; 12], &[2, 2, 3])
            .matmul(&t(&[1.; 27], &[3, 3, 3]))
            .unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
    }

    /// The 16-bit paths multiply the rounded operands exactly (16-bit products fit f32), so they equal
    /// the naive product of the rounded inputs up to summation order, and differ from f32 by about the
    /// format's precision.
    #[test]
    fn half_precisions_round_the_operands_and_accumulate_in_f32() {
        use super::MatmulPrecision;
        let (m, k, n) = (13, 70, 11);
        let a = Tensor::randn([k, m], 0.0, 1.0, 1, Device::Cpu).unwrap();
        let b = Tensor::randn([k, n], 0.0, 1.0, 2, Device::Cpu).unwrap();
        let exact = a.matmul_t(&b, true, false).unwrap().to_vec_f32().unwrap();
        for (precision, unit) in [
            (MatmulPrecision::Bf16, 2f32.powi(-8)),
            (MatmulPrecision::F16, 2f32.powi(-11)),
        ] {
            let got = a
                .matmul_with_precision(&b, true, false, precision)
                .unwrap()
                .to_vec_f32()
                .unwrap();
            let (ra, rb) = (
                precision.round(&a.to_vec_f32().unwrap()),
                precision.round(&b.to_vec_f32().unwrap()),
            );
            let at: Vec<f32> = (0..m * k).map(|i| ra[(i % k) * m + i / k]).collect();
            let reference = naive(&at, &rb, m, k, n);
            let scale = (k as f32).sqrt();
            let mut worst_vs_f32 = 0.0f32;
            for i in 0..m * n {
                assert!(
                    (got[i] - reference[i]).abs() <= 1e-5 * scale,
                    "{precision:?} element {i}: {} vs {}",
                    got[i],
                    reference[i]
                );
                worst_vs_f32 = worst_vs_f32.max((got[i] - exact[i]).abs());
            }
            // Rounding shows (the path is not f32 in disguise) but stays within a few units.
            assert!(worst_vs_f32 > 0.0, "{precision:?} equals f32 exactly");
            assert!(
                worst_vs_f32 <= 4.0 * unit * scale,
                "{precision:?}: {worst_vs_f32} from f32"
            );
        }
    }
}
