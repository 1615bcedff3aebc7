use super::same_device;
use crate::autodiff::{CrossEntropyVjp, EmbeddingVjp, LayerNormVjp, Recorder, SoftmaxVjp};
use crate::cpu::{grad as cpu_grad, nn as cpu};
use crate::cuda::ops::{grad as gpu_grad, nn as gpu, rowwise as gpu_rows};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Softmax along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        let rec = Recorder::new("softmax", &[self])?;
        let y = self.softmax_impl("softmax", axis, false)?;
        rec.finish(y, |y| SoftmaxVjp {
            y: y.clone(),
            axis,
            log: false,
        })
    }

    /// `log(softmax(x))` along `axis`, computed stably.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        let rec = Recorder::new("log_softmax", &[self])?;
        let y = self.softmax_impl("log_softmax", axis, true)?;
        rec.finish(y, |y| SoftmaxVjp {
            y: y.clone(),
            axis,
            log: true,
        })
    }

    fn softmax_impl(&self, op: &'static str, axis: isize, log: bool) -> Result<Tensor> {
        let axis = self.shape.axis(op, axis)?;
        let (_, len, inner) = self.shape.split_at_axis(axis);
        let out = Tensor::reserve(op, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            return Tensor::from_gpu(gpu_rows::softmax(x, len, inner, log)?, out);
        }
        let x = self.f32_slice(op)?;
        Tensor::cpu_f32(cpu::softmax(x, len, inner, log), out)
    }

    /// Layer normalisation over the last axis, then `* weight + bias` (both of the last axis' length).
    pub fn layer_norm(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
        let rec = Recorder::new("layer_norm", &[self, weight, bias])?;
        let out = self.layer_norm_values(weight, bias, eps)?;
        rec.finish(out, |_| LayerNormVjp {
            x: self.detach(),
            w: weight.detach(),
            eps,
        })
    }

    fn layer_norm_values(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        same_device(OP, self, weight)?;
        same_device(OP, self, bias)?;
        let d = *self
            .dims()
            .last()
            .ok_or_else(|| Error::invalid(OP, "input has no axes"))?;
        for p in [weight, bias] {
            if p.dims() != [d] {
                return Err(Error::shapes(
                    OP,
                    &self.shape,
                    &p.shape,
                    format!("weight and bias must be [{d}]"),
                ));
            }
        }
        let out = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            let (w, b) = (weight.gpu_operand(OP)?, bias.gpu_operand(OP)?);
            return Tensor::from_gpu(gpu_rows::layer_norm(x, w, b, d, eps)?, out);
        }
        let normed = cpu::layer_norm(
            self.f32_slice(OP)?,
            weight.f32_slice(OP)?,
            bias.f32_slice(OP)?,
            d,
            eps,
        );
        Tensor::cpu_f32(normed, out)
    }

    /// The cross-entropy of each row of these logits `[.., classes]` against i32 `labels` (one per
    /// row, shaped as the leading axes): `−log softmax(row)[label]`, and 0 for a row labelled
    /// `ignore` (PyTorch's `ignore_index`, usually −100). Unreduced, as `F.cross_entropy(...,
    /// reduction="none")`; the gradient is `softmax(row) − onehot(label)` per unit of cotangent.
    pub fn cross_entropy(&self, labels: &Tensor, ignore: i32) -> Result<Tensor> {
        let rec = Recorder::new("cross_entropy", &[self])?;
        let (loss, lse) = self.cross_entropy_values(labels, ignore)?;
        rec.finish(loss, |_| CrossEntropyVjp {
            logits: self.detach(),
            lse,
            labels: labels.clone(),
            ignore,
        })
    }

    fn cross_entropy_values(&self, labels: &Tensor, ignore: i32) -> Result<(Tensor, Tensor)> {
        const OP: &str = "cross_entropy";
        same_device(OP, self, labels)?;
        let Some((&classes, leading)) = self.dims().split_last() else {
            return Err(Error::invalid(OP, "logits have no axes"));
        };
        if labels.dtype() != DType::I32 {
            return Err(Error::DTypeMismatch {
                op: OP,
                expected: DType::I32,
                got: labels.dtype(),
            });
        }
        if labels.dims() != leading {
            return Err(Error::shapes(
                OP,
                &self.shape,
                &labels.shape,
                "labels must have the logits' shape without its last (class) axis",
            ));
        }
        // Labels are few: checked on the host, as embedding ids are.
        if let Some(&bad) = labels
            .i32_host(OP)?
            .iter()
            .find(|&&l| l != ignore && (l < 0 || l as usize >= classes))
        {
            return Err(Error::IndexOutOfRange {
                op: OP,
                index: bad as i64,
                size: classes,
            });
        }
        let loss = Tensor::reserve(OP, labels.shape.clone(), DType::F32)?;
        let lse = Tensor::reserve(OP, labels.shape.clone(), DType::F32)?;
        if loss.numel() == 0 || classes == 0 {
            return Ok((
                Tensor::zeros_reserved(loss, self.device())?,
                Tensor::zeros_reserved(lse, self.device())?,
            ));
        }
        if let Some(x) = self.gpu() {
            let (l, s) = gpu_grad::cross_entropy(x, labels.gpu_operand(OP)?, classes, ignore)?;
            return Ok((Tensor::from_gpu(l, loss)?, Tensor::from_gpu(s, lse)?));
        }
        let (l, s) =
            cpu_grad::cross_entropy(self.f32_slice(OP)?, labels.i32_slice(OP)?, classes, ignore);
        Ok((Tensor::cpu_f32(l, loss)?, Tensor::cpu_f32(s, lse)?))
    }

    /// Gathers rows of this `[vocab, d]` table for i32 `ids` of any shape: the result is `[..ids, d]`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let rec = Recorder::new("embedding", &[self, ids])?;
        let out = self.embedding_values(ids)?;
        rec.finish(out, |_| EmbeddingVjp {
            ids: ids.detach(),
            table: self.shape.clone(),
        })
    }

    fn embedding_values(&self, ids: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        same_device(OP, self, ids)?;
        if self.rank() != 2 {
            return Err(Error::invalid(
                OP,
                format!("table must be [vocab, d], got {}", self.shape),
            ));
        }
        let (vocab, d) = (self.dims()[0], self.dims()[1]);
        let mut dims = ids.dims().to_vec();
        dims.push(d);
        let out = Tensor::reserve(OP, dims, DType::F32)?;
        // Ids are few: on a GPU they are read back for the range check, which keeps the kernel simple
        // and the error the CPU engine's.
        let id_values = ids.i32_host(OP)?;
        if let Some(&bad) = id_values.iter().find(|&&i| i < 0 || i as usize >= vocab) {
            return Err(Error::IndexOutOfRange {
                op: OP,
                index: bad as i64,
                size: vocab,
            });
        }
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(table) = self.gpu() {
            return Tensor::from_gpu(gpu::embedding(table, ids.gpu_operand(OP)?, d)?, out);
        }
        Tensor::cpu_f32(cpu::embedding(&id_values, self.f32_slice(OP)?, d), out)
    }

    /// The length of the last axis, which must hold at least `k` entries.
    fn row_len_for_k(&self, op: &'static str, k: usize) -> Result<usize> {
        let len = *self
            .dims()
            .last()
            .ok_or_else(|| Error::invalid(op, "input has no axes"))?;
        if k > len {
            return Err(Error::invalid(
                op,
                format!("k = {k} exceeds the last axis of {}", self.shape),
            ));
        }
        Ok(len)
    }

    /// Each row (last axis) with all but its `k` largest entries set to 0; ties keep the lower index.
    /// The TopK activation of sparse autoencoders (followed by `relu` for SAELens' TopK); on a batch
    /// flattened to one row, BatchTopK.
    pub fn keep_top_k(&self, k: usize) -> Result<Tensor> {
        let rec = crate::autodiff::Recorder::new("keep_top_k", &[self])?;
        let kept = self.keep_top_k_unrecorded(k)?;
        rec.finish(kept, |_| crate::autodiff::KeepTopKVjp {
            x: self.detach(),
            k,
        })
    }

    fn keep_top_k_unrecorded(&self, k: usize) -> Result<Tensor> {
        const OP: &str = "keep_top_k";
        let len = self.row_len_for_k(OP, k)?;
        let out = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            return Tensor::from_gpu(gpu::keep_top_k(x, len, k)?, out);
        }
        Tensor::cpu_f32(cpu::keep_top_k(self.f32_slice(OP)?, len, k), out)
    }

    /// The `k` largest entries of each row (last axis), largest first: `(values f32, indices i32)`.
    /// The values are tracked when `self` is; the indices never are (integers have no gradient).
    pub fn top_k(&self, k: usize) -> Result<(Tensor, Tensor)> {
        let rec = crate::autodiff::Recorder::new("top_k", &[self])?;
        let (values, indices) = self.top_k_unrecorded(k)?;
        let values = rec.finish(values, |_| crate::autodiff::TopKVjp {
            indices: indices.clone(),
            input: self.shape.clone(),
        })?;
        Ok((values, indices))
    }

    fn top_k_unrecorded(&self, k: usize) -> Result<(Tensor, Tensor)> {
        const OP: &str = "top_k";
        let len = self.row_len_for_k(OP, k)?;
        let mut dims = self.dims().to_vec();
        *dims.last_mut().expect("rank checked above") = k;
        let out_values = Tensor::reserve(OP, dims.clone(), DType::F32)?;
        let out_indices = Tensor::reserve(OP, dims, DType::I32)?;
        if out_values.numel() == 0 {
            return Ok((
                Tensor::zeros_reserved(out_values, self.device())?,
                Tensor::zeros_reserved(out_indices, self.device())?,
            ));
        }
        if let Some(x) = self.gpu() {
            let (values, indices) = gpu::top_k(x, len, k)?;
            return Ok((
                Tensor::from_gpu(values, out_values)?,
                Tensor::from_gpu(indices, out_indices)?,
            ));
        }
        let (values, indices) = cpu::top_k(self.f32_slice(OP)?, len, k);
        Ok((
            Tensor::cpu_f32(values, out_values)?,
            Tensor::cpu_i32(indices, out_indices)?,
        ))
    }

    /// Fills entries above the causal diagonal of the last two axes `[query, key]` with `fill`
    /// (query `i` keeps keys `0..=i + key_len - query_len`).
    pub fn causal_mask(&self, fill: f32) -> Result<Tensor> {
        let rec = crate::autodiff::Recorder::new("causal_mask", &[self])?;
        let masked = self.causal_mask_unrecorded(fill)?;
        rec.finish(masked, |_| crate::autodiff::CausalMaskVjp)
    }

    fn causal_mask_unrecorded(&self, fill: f32) -> Result<Tensor> {
        const OP: &str = "causal_mask";
        if self.rank() < 2 {
            return Err(Error::invalid(
                OP,
                format!("needs [.., query, key], got {}", self.shape),
            ));
        }
        let (q, k) = (self.dims()[self.rank() - 2], self.dims()[self.rank() - 1]);
        if k < q {
            return Err(Error::invalid(
                OP,
                format!("fewer keys ({k}) than queries ({q})"),
            ));
        }
        let out = Tensor::reserve(OP, self.shape.clone(), DType::F32)?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            let masked = crate::cuda::ops::elementwise::causal_mask(x, q, k, fill)?;
            return Tensor::from_gpu(masked, out);
        }
        Tensor::cpu_f32(cpu::causal_mask(self.f32_slice(OP)?, q, k, fill), out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, ids, t};
    use crate::{Error, Tensor};

    #[test]
    fn softmax_rows_sum_to_one_and_match_closed_form() {
        let x = t(&[1., 2., 3., 0., 0., 0.], &[2, 3]);
        let s = x.softmax(-1).unwrap();
        let e: Vec<f32> = [1f32, 2., 3.].iter().map(|v| v.exp()).collect();
        let z: f32 = e.iter().sum();
        assert_close(
            &s,
            &[e[0] / z, e[1] / z, e[2] / z, 1. / 3., 1. / 3., 1. / 3.],
            1e-6,
        );
        let ls = x.log_softmax(-1).unwrap();
        assert_close(
            &ls,
            &[
                1. - z.ln(),
                2. - z.ln(),
                3. - z.ln(),
                -(3f32.ln()),
                -(3f32.ln()),
                -(3f32.ln()),
            ],
            1e-6,
        );
    }

    #[test]
    fn cross_entropy_is_minus_log_softmax_at_the_label_and_zero_where_ignored() {
        let x = t(&[1., 2., 3., 0., 0., 0., 1000., -1000., 0.], &[3, 3]);
        let labels = ids(&[2, -100, 0], &[3]);
        let loss = x.cross_entropy(&labels, -100).unwrap();
        assert_eq!(loss.dims(), &[3]);
        let log_p = x.log_softmax(-1).unwrap().to_vec_f32().unwrap();
        // A logit of 1000 is exact: the row's max is subtracted first.
        assert_close(&loss, &[-log_p[2], 0.0, -log_p[6]], 1e-6);
        // Leading axes are kept: [2, 2, 3] logits take [2, 2] labels.
        let x = t(
            &(0..12).map(|i| i as f32 / 5.0).collect::<Vec<_>>(),
            &[2, 2, 3],
        );
        let loss = x.cross_entropy(&ids(&[0, 1, 2, 0], &[2, 2]), -100).unwrap();
        assert_eq!(loss.dims(), &[2, 2]);
    }

    #[test]
    fn cross_entropy_refuses_bad_labels_by_name() {
        let x = t(&[0.; 6], &[2, 3]);
        match x.cross_entropy(&ids(&[1, 3], &[2]), -100) {
            Err(Error::IndexOutOfRange { op, index, size }) => {
                assert_eq!((op, index, size), ("cross_entropy", 3, 3));
            }
            other => panic!("expected IndexOutOfRange, got {other:?}"),
        }
        assert!(matches!(
            x.cross_entropy(&ids(&[1, 2, 0], &[3]), -100),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            x.cross_entropy(&t(&[1., 2.], &[2]), -100),
            Err(Error::DTypeMismatch { .. })
        ));
    }

    #[test]
    fn softmax_is_stable_for_large_inputs_and_along_inner_axes() {
        let x = t(&[1000., 1001., -1000., -1001.], &[2, 2]);
        let s = x.softmax(0).unwrap();
        assert_close(&s, &[1., 1., 0., 0.], 1e-6);
        let s = x.softmax(1).unwrap();
        let a = 1. / (1. + 1f32.exp());
        assert_close(&s, &[a, 1. - a, 1. - a, a], 1e-6);
    }

    #[test]
    fn layer_norm_normalises_then_scales() {
        let x = t(&[1., 2., 3., 4., -1., 0., 1., 2.], &[2, 4]);
        let w = t(&[1., 2., 1., 1.], &[4]);
        let b = t(&[0., 0., 1., 0.], &[4]);
        let y = x.layer_norm(&w, &b, 0.0).unwrap();
        let inv = 1. / 1.25f32.sqrt();
        let expected = [-1.5 * inv, -0.5 * inv * 2., 0.5 * inv + 1., 1.5 * inv];
        let mut both = expected.to_vec();
        both.extend(expected);
        assert_close(&y, &both, 1e-6);
        let err = x.layer_norm(&t(&[1.; 3], &[3]), &b, 1e-5).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ShapeMismatch {
                    op: "layer_norm",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn embedding_gathers_rows_and_rejects_bad_ids() {
        let table = t(&[0., 0.5, 1., 1.5, 2., 2.5], &[3, 2]);
        let out = table.embedding(&ids(&[2, 0, 1, 2], &[2, 2])).unwrap();
        assert_eq!(out.dims(), &[2, 2, 2]);
        assert_close(&out, &[2., 2.5, 0., 0.5, 1., 1.5, 2., 2.5], 0.);
        let err = table.embedding(&ids(&[3], &[1])).unwrap_err();
        assert_eq!(
            err,
            Error::IndexOutOfRange {
                op: "embedding",
                index: 3,
                size: 3
            }
        );
        assert!(table.embedding(&ids(&[-1], &[1])).is_err());
    }

    #[test]
    fn top_k_sorts_descending_with_indices() {
        let x = t(&[0.1, 0.9, 0.5, 0.9, -1., 3., 2., 1.], &[2, 4]);
        let (v, i) = x.top_k(2).unwrap();
        assert_close(&v, &[0.9, 0.9, 3., 2.], 0.);
        assert_eq!(i.to_vec_i32().unwrap(), vec![1, 3, 1, 2]);
        assert!(x.top_k(5).is_err());
    }

    #[test]
    fn keep_top_k_zeroes_all_but_the_largest() {
        let x = t(&[0.1, 0.9, 0.5, 0.9, -1., 3., 2., 1.], &[2, 4]);
        assert_close(
            &x.keep_top_k(2).unwrap(),
            &[0., 0.9, 0., 0.9, 0., 3., 2., 0.],
            0.,
        );
        // Ties keep the lower index.
        assert_close(
            &x.keep_top_k(1).unwrap(),
            &[0., 0.9, 0., 0., 0., 3., 0., 0.],
            0.,
        );
        assert_close(&x.keep_top_k(4).unwrap(), &x.to_vec_f32().unwrap(), 0.);
        assert_close(&x.keep_top_k(0).unwrap(), &[0.; 8], 0.);
        assert!(x.keep_top_k(5).is_err());
        // Agrees with top_k on big rows, through the parallel path.
        let big = Tensor::randn([64, 1000], 0., 1., 3, crate::Device::Cpu).unwrap();
        let kept = big.keep_top_k(7).unwrap().to_vec_f32().unwrap();
        let (values, indices) = big.top_k(7).unwrap();
        let (values, indices) = (values.to_vec_f32().unwrap(), indices.to_vec_i32().unwrap());
        for r in 0..64 {
            let row = &kept[r * 1000..(r + 1) * 1000];
            assert_eq!(row.iter().filter(|v| **v != 0.).count(), 7);
            for j in 0..7 {
                assert_eq!(row[indices[r * 7 + j] as usize], values[r * 7 + j]);
            }
        }
    }

    #[test]
    fn causal_mask_hides_future_keys() {
        let x = t(&[1.; 9], &[1, 3, 3]);
        let m = x
            .causal_mask(f32::NEG_INFINITY)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let visible: Vec<bool> = m.iter().map(|v| v.is_finite()).collect();
        assert_eq!(
            visible,
            vec![true, false, false, true, true, false, true, true, true]
        );
        let p = x
            .causal_mask(f32::NEG_INFINITY)
            .unwrap()
            .softmax(-1)
            .unwrap();
        assert_close(
            &p,
            &[1., 0., 0., 0.5, 0.5, 0., 1. / 3., 1. / 3., 1. / 3.],
            1e-6,
        );
    }
}
