use super::ReduceOp;
use crate::cpu::reduce as cpu;
use crate::cuda::ops::rowwise as gpu;
use crate::{DType, Result, Shape, Tensor};

impl Tensor {
    /// Reduces along `axis` (negative counts from the end). With `keepdim` the axis stays with size 1.
    pub fn reduce(&self, op: ReduceOp, axis: isize, keepdim: bool) -> Result<Tensor> {
        use crate::autodiff::{ExtremeVjp, L2NormVjp, Recorder, ReduceVjp};
        let rec = Recorder::new("reduce", &[self])?;
        let out = self.reduce_values(op, axis, keepdim)?;
        let axis = self.shape.axis("reduce", axis)?;
        match op {
            ReduceOp::Sum | ReduceOp::Mean => rec.finish(out, |_| ReduceVjp {
                op,
                input: self.shape.clone(),
                axis,
                keepdim,
            }),
            ReduceOp::Max | ReduceOp::Min => rec.finish(out, |_| ExtremeVjp {
                x: self.detach(),
                op,
                axis,
                keepdim,
            }),
            ReduceOp::L2Norm => {
                let mut kept = self.dims().to_vec();
                kept[axis] = 1;
                let norm = out.detach().reshape(kept)?;
                rec.finish(out, |_| L2NormVjp {
                    x: self.detach(),
                    norm,
                    axis,
                    keepdim,
                })
            }
        }
    }

    fn reduce_values(&self, op: ReduceOp, axis: isize, keepdim: bool) -> Result<Tensor> {
        let axis = self.shape.axis("reduce", axis)?;
        let (outer, len, inner) = self.shape.split_at_axis(axis);
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            // As in PyTorch: an empty axis has a sum (0) and a norm (0), a mean (NaN), but no extremes.
            return Err(crate::Error::invalid(
                "reduce",
                format!(
                    "axis {axis} of {} is empty: {op:?} of no values is undefined",
                    self.shape
                ),
            ));
        }
        let out = Tensor::reserve(
            "reduce",
            reduced_shape(&self.shape, axis, keepdim),
            DType::F32,
        )?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if len == 0 {
            let empty = if op == ReduceOp::Mean { f32::NAN } else { 0.0 };
            return Tensor::full(out.shape().clone(), empty, self.device());
        }
        if let Some(x) = self.gpu() {
            return Tensor::from_gpu(gpu::reduce(op, x, outer, len, inner)?, out);
        }
        let x = self.f32_slice("reduce")?;
        Tensor::cpu_f32(cpu::reduce(op, x, outer, len, inner), out)
    }

    pub fn sum(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, axis, keepdim)
    }
    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, axis, keepdim)
    }
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, axis, keepdim)
    }
    pub fn l2_norm(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::L2Norm, axis, keepdim)
    }

    /// Position of the largest value along `axis` (the first on ties), as i32.
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        crate::autodiff::refuse(
            "argmax",
            &[self],
            "argmax has no gradient; detach() its input",
        )?;
        let axis = self.shape.axis("argmax", axis)?;
        let (outer, len, inner) = self.shape.split_at_axis(axis);
        if len == 0 {
            return Err(crate::Error::invalid(
                "argmax",
                format!("axis {axis} of {} is empty", self.shape),
            ));
        }
        let out = Tensor::reserve(
            "argmax",
            reduced_shape(&self.shape, axis, keepdim),
            DType::I32,
        )?;
        if out.numel() == 0 {
            return Tensor::zeros_reserved(out, self.device());
        }
        if let Some(x) = self.gpu() {
            return Tensor::from_gpu(gpu::argmax(x, outer, len, inner)?, out);
        }
        let x = self.f32_slice("argmax")?;
        Tensor::cpu_i32(cpu::argmax(x, outer, len, inner), out)
    }
}

fn reduced_shape(shape: &Shape, axis: usize, keepdim: bool) -> Shape {
    let mut dims = shape.dims().to_vec();
    if keepdim {
        dims[axis] = 1;
    } else {
        dims.remove(axis);
    }
    Shape::new(dims)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, t};
    use crate::Error;

    /// Along a middle axis wide enough to be split into column blocks across threads (and with a
    /// ragged last block), every op equals the column walk it replaces, bit for bit.
    #[test]
    fn middle_axis_reductions_equal_the_column_walk() {
        use crate::ReduceOp;
        let (outer, len, inner) = (3, 301, 533);
        let data: Vec<f32> = (0..outer * len * inner)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let x = t(&data, &[outer, len, inner]);
        for op in [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::L2Norm,
        ] {
            let got = x.reduce(op, 1, false).unwrap().to_vec_f32().unwrap();
            for o in 0..outer {
                for i in 0..inner {
                    let column = (0..len).map(|j| data[(o * len + j) * inner + i]);
                    let want = match op {
                        ReduceOp::Sum => column.fold(0.0, |a, v| a + v),
                        ReduceOp::Mean => column.fold(0.0, |a, v| a + v) / len as f32,
                        ReduceOp::Max => column.fold(f32::NEG_INFINITY, f32::max),
                        ReduceOp::Min => column.fold(f32::INFINITY, f32::min),
                        ReduceOp::L2Norm => column.fold(0.0, |a, v| a + v * v).sqrt(),
                    };
                    assert_eq!(got[o * inner + i], want, "{op:?} at ({o}, {i})");
                }
            }
        }
    }

    #[test]
    fn reductions_along_each_axis() {
        let x = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_close(&x.sum(0, false).unwrap(), &[5., 7., 9.], 0.);
        assert_close(&x.sum(-1, false).unwrap(), &[6., 15.], 0.);
        assert_close(&x.mean(1, false).unwrap(), &[2., 5.], 0.);
        assert_close(&x.max(0, false).unwrap(), &[4., 5., 6.], 0.);
        assert_close(
            &x.l2_norm(1, false).unwrap(),
            &[14f32.sqrt(), 77f32.sqrt()],
            1e-6,
        );
        assert_eq!(x.sum(1, true).unwrap().dims(), &[2, 1]);
        assert_eq!(x.sum(0, false).unwrap().dims(), &[3]);
    }

    #[test]
    fn middle_axis_of_a_3d_tensor() {
        let x = t(&(0..24).map(|v| v as f32).collect::<Vec<_>>(), &[2, 3, 4]);
        let s = x.sum(1, false).unwrap();
        assert_eq!(s.dims(), &[2, 4]);
        assert_close(&s, &[12., 15., 18., 21., 48., 51., 54., 57.], 0.);
    }

    #[test]
    fn argmax_picks_first_of_ties() {
        let x = t(&[1., 3., 3., 0., -1., -2.], &[2, 3]);
        assert_eq!(
            x.argmax(1, false).unwrap().to_vec_i32().unwrap(),
            vec![1, 0]
        );
        assert_eq!(
            x.argmax(0, false).unwrap().to_vec_i32().unwrap(),
            vec![0, 0, 0]
        );
    }

    #[test]
    fn bad_axis_is_a_typed_error() {
        let err = t(&[1., 2.], &[2]).sum(1, false).unwrap_err();
        assert!(matches!(err, Error::AxisOutOfRange { .. }), "{err}");
    }
}
