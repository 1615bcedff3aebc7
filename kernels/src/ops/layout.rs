use crate::autodiff::{self, ConcatVjp, PermuteVjp, Recorder, ReshapeVjp, SliceVjp};
use crate::cpu::layout as cpu;
use crate::cuda::ops::{elementwise as gpu_cast, layout as gpu};
use crate::storage::{CpuBuffer, Storage};
use crate::{DType, Error, Result, Shape, Tensor};

impl Tensor {
    /// The same elements under a new shape with the same element count. Shares storage: no copy.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = Shape::checked("reshape", shape.into().dims())?;
        if shape.numel() != self.numel() {
            return Err(Error::shapes(
                "reshape",
                &self.shape,
                &shape,
                "element counts differ",
            ));
        }
        let rec = Recorder::new("reshape", &[self])?;
        rec.finish(self.view("reshape", shape)?, |_| ReshapeVjp {
            input: self.shape.clone(),
        })
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm
                .iter()
                .all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the axes of {}",
                    self.shape
                ),
            ));
        }
        let rec = Recorder::new("permute", &[self])?;
        let dims: Vec<usize> = perm.iter().map(|&p| self.dims()[p]).collect();
        let out = Tensor::reserve("permute", dims, self.dtype())?;
        let out = match &*self.storage {
            Storage::Cpu(CpuBuffer::F32(x)) => {
                Tensor::from_cpu(CpuBuffer::F32(cpu::permute(x, &self.shape, perm)), out)?
            }
            Storage::Cpu(CpuBuffer::I32(x)) => {
                Tensor::from_cpu(CpuBuffer::I32(cpu::permute(x, &self.shape, perm)), out)?
            }
            Storage::Cuda(x) => Tensor::from_gpu(gpu::permute(x, &self.shape, perm)?, out)?,
        };
        rec.finish(out, |_| PermuteVjp {
            perm: perm.to_vec(),
        })
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = self.shape.axis("transpose", a)?;
        let b = self.shape.axis("transpose", b)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Entries `start..end` along `axis`.
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        let rec = Recorder::new("slice", &[self])?;
        let out = self.slice_values(axis, start, end)?;
        let axis = self.shape.axis("slice", axis)?;
        rec.finish(out, |_| SliceVjp {
            input: self.shape.clone(),
            axis,
            start,
        })
    }

    fn slice_values(&self, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        let axis = self.shape.axis("slice", axis)?;
        let (outer, len, inner) = self.shape.split_at_axis(axis);
        if start > end || end > len {
            return Err(Error::invalid(
                "slice",
                format!(
                    "range {start}..{end} is outside axis {axis} of {}",
                    self.shape
                ),
            ));
        }
        let mut dims = self.dims().to_vec();
        dims[axis] = end - start;
        let out = Tensor::reserve("slice", dims, self.dtype())?;
        let buffer = match &*self.storage {
            Storage::Cpu(CpuBuffer::F32(x)) => {
                CpuBuffer::F32(cpu::slice(x, outer, len, inner, start, end))
            }
            Storage::Cpu(CpuBuffer::I32(x)) => {
                CpuBuffer::I32(cpu::slice(x, outer, len, inner, start, end))
            }
            Storage::Cuda(x) => {
                return Tensor::from_gpu(gpu::slice(x, outer, len, inner, start, end)?, out);
            }
        };
        Tensor::from_cpu(buffer, out)
    }

    /// Joins tensors along `axis`; all other axes must agree, and so must dtypes and devices.
    pub fn concat(parts: &[&Tensor], axis: isize) -> Result<Tensor> {
        let rec = Recorder::new("concat", parts)?;
        let out = Tensor::concat_values(parts, axis)?;
        let axis = out.shape.axis("concat", axis)?;
        rec.finish(out, |_| ConcatVjp {
            axis,
            lengths: parts.iter().map(|p| p.dims()[axis]).collect(),
        })
    }

    fn concat_values(parts: &[&Tensor], axis: isize) -> Result<Tensor> {
        const OP: &str = "concat";
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid(OP, "no tensors to join"))?;
        let axis = first.shape.axis(OP, axis)?;
        for p in parts {
            super::same_device(OP, first, p)?;
            let other_axes_agree = p.rank() == first.rank()
                && (0..p.rank()).all(|i| i == axis || p.dims()[i] == first.dims()[i]);
            if !other_axes_agree {
                return Err(Error::shapes(
                    OP,
                    &first.shape,
                    &p.shape,
                    format!("only axis {axis} may differ"),
                ));
            }
            if p.dtype() != first.dtype() {
                return Err(Error::DTypeMismatch {
                    op: OP,
                    expected: first.dtype(),
                    got: p.dtype(),
                });
            }
        }
        let (outer, _, inner) = first.shape.split_at_axis(axis);
        let mut dims = first.dims().to_vec();
        // Many references to one large tensor must not overflow the joined length.
        dims[axis] = parts
            .iter()
            .try_fold(0usize, |n, p| n.checked_add(p.dims()[axis]))
            .unwrap_or(usize::MAX);
        let out = Tensor::reserve(OP, dims, first.dtype())?;
        if first.gpu().is_some() {
            let parts = parts
                .iter()
                .map(|p| Ok((p.gpu_operand(OP)?, p.dims()[axis])))
                .collect::<Result<Vec<_>>>()?;
            return Tensor::from_gpu(gpu::concat(&parts, outer, inner)?, out);
        }
        let buffer = match first.dtype() {
            DType::F32 => {
                let slices = parts
                    .iter()
                    .map(|p| Ok((p.f32_slice(OP)?, p.dims()[axis])))
                    .collect::<Result<Vec<_>>>()?;
                CpuBuffer::F32(cpu::concat(&slices, outer, inner))
            }
            DType::I32 => {
                let slices = parts
                    .iter()
                    .map(|p| Ok((p.i32_slice(OP)?, p.dims()[axis])))
                    .collect::<Result<Vec<_>>>()?;
                CpuBuffer::I32(cpu::concat(&slices, outer, inner))
            }
        };
        Tensor::from_cpu(buffer, out)
    }

    /// Picks the entries at i32 `indices` (1-D) along `axis`, in that order (repeats allowed).
    pub fn index_select(&self, axis: isize, indices: &Tensor) -> Result<Tensor> {
        let rec = autodiff::Recorder::new("index_select", &[self, indices])?;
        let picked = self.index_select_unrecorded(axis, indices)?;
        let axis = self.shape.axis("index_select", axis)?;
        rec.finish(picked, |_| autodiff::IndexSelectVjp {
            indices: indices.detach(),
            input: self.shape.clone(),
            axis,
        })
    }

    fn index_select_unrecorded(&self, axis: isize, indices: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_select";
        super::same_device(OP, self, indices)?;
        let axis = self.shape.axis(OP, axis)?;
        if indices.rank() != 1 {
            return Err(Error::invalid(
                OP,
                format!("indices must be 1-D, got {}", indices.shape),
            ));
        }
        // On a GPU the (few) indices are read back for the range check.
        let idx = indices.i32_host(OP)?;
        let (outer, len, inner) = self.shape.split_at_axis(axis);
        if let Some(&bad) = idx.iter().find(|&&i| i < 0 || i as usize >= len) {
            return Err(Error::IndexOutOfRange {
                op: OP,
                index: bad as i64,
                size: len,
            });
        }
        let mut dims = self.dims().to_vec();
        dims[axis] = idx.len();
        let out = Tensor::reserve(OP, dims, self.dtype())?;
        let buffer = match &*self.storage {
            Storage::Cpu(CpuBuffer::F32(x)) => {
                CpuBuffer::F32(cpu::index_select(x, outer, len, inner, &idx))
            }
            Storage::Cpu(CpuBuffer::I32(x)) => {
                CpuBuffer::I32(cpu::index_select(x, outer, len, inner, &idx))
            }
            Storage::Cuda(x) => {
                let values = gpu::index_select(x, outer, len, inner, indices.gpu_operand(OP)?)?;
                return Tensor::from_gpu(values, out);
            }
        };
        Tensor::from_cpu(buffer, out)
    }

    /// Converts between f32 and i32 (f32 → i32 truncates toward zero).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        autodiff::refuse(
            "to_dtype",
            &[self],
            "a dtype cast has no gradient; detach() first",
        )?;
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = Tensor::reserve("to_dtype", self.shape.clone(), dtype)?;
        let buffer = match (&*self.storage, dtype) {
            (Storage::Cuda(x), to) => {
                return Tensor::from_gpu(gpu_cast::cast(x, to)?, out);
            }
            (Storage::Cpu(CpuBuffer::F32(x)), DType::I32) => {
                CpuBuffer::I32(x.iter().map(|&v| v as i32).collect())
            }
            (Storage::Cpu(CpuBuffer::I32(x)), DType::F32) => {
                CpuBuffer::F32(x.iter().map(|&v| v as f32).collect())
            }
            _ => unreachable!("same-dtype conversions return early"),
        };
        Tensor::from_cpu(buffer, out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, ids, t};
    use crate::{DType, Error, Tensor};

    fn iota(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        t(&(0..n).map(|v| v as f32).collect::<Vec<_>>(), shape)
    }

    #[test]
    fn reshape_keeps_elements() {
        let x = iota(&[2, 3]);
        let r = x.reshape([3, 2]).unwrap();
        assert_eq!(r.dims(), &[3, 2]);
        assert_close(&r, &[0., 1., 2., 3., 4., 5.], 0.);
        assert!(x.reshape([4]).is_err());
    }

    #[test]
    fn permute_moves_axes() {
        let x = iota(&[2, 3, 4]);
        let p = x.permute(&[2, 0, 1]).unwrap();
        assert_eq!(p.dims(), &[4, 2, 3]);
        let v = p.to_vec_f32().unwrap();
        // p[k, i, j] = x[i, j, k] = 12 i + 4 j + k
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    assert_eq!(v[k * 6 + i * 3 + j], (12 * i + 4 * j + k) as f32);
                }
            }
        }
        assert!(x.permute(&[0, 0, 1]).is_err());
        assert!(x.permute(&[0, 1]).is_err());
        assert_close(
            &iota(&[2, 3]).transpose(0, 1).unwrap(),
            &[0., 3., 1., 4., 2., 5.],
            0.,
        );
    }

    #[test]
    fn slice_and_concat_round_trip() {
        let x = iota(&[2, 5, 3]);
        let a = x.slice(1, 0, 2).unwrap();
        let b = x.slice(1, 2, 5).unwrap();
        assert_eq!(a.dims(), &[2, 2, 3]);
        assert_close(
            &a.slice(0, 1, 2).unwrap(),
            &[15., 16., 17., 18., 19., 20.],
            0.,
        );
        let joined = Tensor::concat(&[&a, &b], 1).unwrap();
        assert_close(&joined, &x.to_vec_f32().unwrap(), 0.);
        assert!(x.slice(1, 3, 6).is_err());
        let err = Tensor::concat(&[&a, &iota(&[3, 2, 3])], 1).unwrap_err();
        assert!(
            matches!(err, Error::ShapeMismatch { op: "concat", .. }),
            "{err}"
        );
    }

    #[test]
    fn index_select_picks_in_order() {
        let x = iota(&[3, 2]);
        let s = x.index_select(0, &ids(&[2, 0, 2], &[3])).unwrap();
        assert_close(&s, &[4., 5., 0., 1., 4., 5.], 0.);
        let s = x.index_select(1, &ids(&[1], &[1])).unwrap();
        assert_close(&s, &[1., 3., 5.], 0.);
        let err = x.index_select(0, &ids(&[3], &[1])).unwrap_err();
        assert!(
            matches!(err, Error::IndexOutOfRange { size: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn i32_tensors_move_too() {
        let x = ids(&[1, 2, 3, 4], &[2, 2]);
        assert_eq!(
            x.transpose(0, 1).unwrap().to_vec_i32().unwrap(),
            vec![1, 3, 2, 4]
        );
        assert_eq!(
            x.to_dtype(DType::F32).unwrap().to_vec_f32().unwrap(),
            vec![1., 2., 3., 4.]
        );
    }
}
