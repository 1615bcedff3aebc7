use super::{BinaryOp, UnaryOp, same_device};
use crate::autodiff::{self, BinaryVjp, ClampVjp, Recorder, ScaleVjp, UnaryVjp, WhereVjp};
use crate::cpu::elementwise as cpu;
use crate::cuda::ops::elementwise as gpu;
use crate::{DType, Error, Result, Shape, Tensor};

impl Tensor {
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let rec = Recorder::new("unary", &[self])?;
        let y = self.unary_values(op)?;
        rec.finish(y, |y| UnaryVjp {
            op,
            x: self.detach(),
            y: y.clone(),
        })
    }

    fn unary_values(&self, op: UnaryOp) -> Result<Tensor> {
        let out = Tensor::reserve("unary", self.shape.clone(), DType::F32)?;
        if let Some(x) = self.gpu() {
            return Tensor::from_gpu(gpu::unary(op, x)?, out);
        }
        let x = self.f32_slice("unary")?;
        Tensor::cpu_f32(cpu::unary(op, x), out)
    }

    pub fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        if matches!(op, BinaryOp::Greater | BinaryOp::Less | BinaryOp::Equal) {
            autodiff::refuse(
                "binary",
                &[self, rhs],
                "a comparison has no gradient; detach() its inputs to build a mask",
            )?;
        }
        let rec = Recorder::new("binary", &[self, rhs])?;
        let out = self.binary_values(op, rhs)?;
        rec.finish(out, |_| BinaryVjp {
            op,
            a: self.detach(),
            b: rhs.detach(),
        })
    }

    fn binary_values(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary";
        same_device(OP, self, rhs)?;
        let out = Tensor::reserve(
            OP,
            Shape::broadcast(OP, &self.shape, &rhs.shape)?,
            DType::F32,
        )?;
        if let Some(a) = self.gpu() {
            let b = rhs.gpu_operand(OP)?;
            let buffer = gpu::binary(op, a, &self.shape, b, &rhs.shape, out.shape())?;
            return Tensor::from_gpu(buffer, out);
        }
        let (a, b) = (self.f32_slice(OP)?, rhs.f32_slice(OP)?);
        let values = cpu::binary(op, a, &self.shape, b, &rhs.shape, out.shape());
        Tensor::cpu_f32(values, out)
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, rhs)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, rhs)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, rhs)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, rhs)
    }
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Max, rhs)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Min, rhs)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluTanh)
    }
    pub fn gelu_erf(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluErf)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }

    /// `x * mul + add` with scalars.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        let rec = Recorder::new("affine", &[self])?;
        let out = Tensor::reserve("affine", self.shape.clone(), DType::F32)?;
        let out = match self.gpu() {
            Some(x) => Tensor::from_gpu(gpu::affine(x, mul, add)?, out)?,
            None => {
                let x = self.f32_slice("affine")?;
                Tensor::cpu_f32(cpu::map(x, |v| v * mul + add), out)?
            }
        };
        rec.finish(out, |_| ScaleVjp { mul })
    }

    /// Limits every element to `[min, max]`.
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        if min > max || min.is_nan() || max.is_nan() {
            return Err(Error::invalid(
                "clamp",
                format!("min {min} must not exceed max {max}"),
            ));
        }
        let rec = Recorder::new("clamp", &[self])?;
        let out = Tensor::reserve("clamp", self.shape.clone(), DType::F32)?;
        let out = match self.gpu() {
            Some(x) => Tensor::from_gpu(gpu::clamp(x, min, max)?, out)?,
            None => {
                let x = self.f32_slice("clamp")?;
                Tensor::cpu_f32(cpu::map(x, |v| v.clamp(min, max)), out)?
            }
        };
        rec.finish(out, |_| ClampVjp {
            x: self.detach(),
            min,
            max,
        })
    }

    /// `self != 0 ? on_true : on_false`, the three shapes broadcast together. `self` is the condition.
    pub fn where_(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        autodiff::refuse(
            "where",
            &[self],
            "a condition has no gradient; detach() the mask (the branches may be tracked)",
        )?;
        let rec = Recorder::new("where", &[self, on_true, on_false])?;
        let out = self.where_values(on_true, on_false)?;
        rec.finish(out, |_| WhereVjp {
            cond: self.detach(),
            on_true: on_true.shape.clone(),
            on_false: on_false.shape.clone(),
        })
    }

    fn where_values(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        const OP: &str = "where";
        same_device(OP, self, on_true)?;
        same_device(OP, self, on_false)?;
        let out = Shape::broadcast(OP, &self.shape, &on_true.shape)?;
        let out = Shape::broadcast(OP, &out, &on_false.shape)?;
        let out = Tensor::reserve(OP, out, DType::F32)?;
        if let Some(cond) = self.gpu() {
            let (a, b) = (on_true.gpu_operand(OP)?, on_false.gpu_operand(OP)?);
            let buffer = gpu::select(
                cond,
                &self.shape,
                a,
                &on_true.shape,
                b,
                &on_false.shape,
                out.shape(),
            )?;
            return Tensor::from_gpu(buffer, out);
        }
        let cond = self.f32_slice(OP)?;
        let (a, b) = (on_true.f32_slice(OP)?, on_false.f32_slice(OP)?);
        let values = cpu::select(
            cond,
            &self.shape,
            a,
            &on_true.shape,
            b,
            &on_false.shape,
            out.shape(),
        );
        Tensor::cpu_f32(values, out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, ids, t};
    use crate::Error;

    #[test]
    fn same_shape_binary_ops() {
        let a = t(&[1., -2., 3., 4.], &[2, 2]);
        let b = t(&[2., 2., -1., 8.], &[2, 2]);
        assert_close(&a.add(&b).unwrap(), &[3., 0., 2., 12.], 0.);
        assert_close(&a.sub(&b).unwrap(), &[-1., -4., 4., -4.], 0.);
        assert_close(&a.mul(&b).unwrap(), &[2., -4., -3., 32.], 0.);
        assert_close(&a.div(&b).unwrap(), &[0.5, -1., -3., 0.5], 0.);
        assert_close(&a.maximum(&b).unwrap(), &[2., 2., 3., 8.], 0.);
        assert_close(&a.minimum(&b).unwrap(), &[1., -2., -1., 4.], 0.);
    }

    #[test]
    fn comparisons_give_zero_one_masks() {
        use crate::BinaryOp;
        let a = t(&[1., 2., 3., f32::NAN], &[4]);
        let b = t(&[2., 2., 2., 2.], &[4]);
        assert_close(
            &a.binary(BinaryOp::Greater, &b).unwrap(),
            &[0., 0., 1., 0.],
            0.,
        );
        assert_close(
            &a.binary(BinaryOp::Less, &b).unwrap(),
            &[1., 0., 0., 0.],
            0.,
        );
        assert_close(
            &a.binary(BinaryOp::Equal, &b).unwrap(),
            &[0., 1., 0., 0.],
            0.,
        );
    }

    #[test]
    fn binary_ops_broadcast_both_ways() {
        let col = t(&[10., 20.], &[2, 1]);
        let row = t(&[1., 2., 3.], &[3]);
        let sum = col.add(&row).unwrap();
        assert_eq!(sum.dims(), &[2, 3]);
        assert_close(&sum, &[11., 12., 13., 21., 22., 23.], 0.);
        let scalar = t(&[2.], &[1]);
        assert_close(&row.mul(&scalar).unwrap(), &[2., 4., 6.], 0.);
    }

    #[test]
    fn large_broadcast_matches_scalar_loop() {
        // Big enough to take the parallel paths.
        let (r, c) = (300, 257);
        let a: Vec<f32> = (0..r * c).map(|i| (i % 97) as f32 * 0.5).collect();
        let b: Vec<f32> = (0..c).map(|i| i as f32).collect();
        let out = t(&a, &[r, c]).sub(&t(&b, &[c])).unwrap();
        let expected: Vec<f32> = (0..r * c).map(|i| a[i] - b[i % c]).collect();
        assert_close(&out, &expected, 0.);
    }

    #[test]
    fn incompatible_shapes_are_typed_errors() {
        let err = t(&[1., 2., 3.], &[3]).add(&t(&[1., 2.], &[2])).unwrap_err();
        assert!(
            matches!(err, Error::ShapeMismatch { op: "binary", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("[3] and [2]"), "{err}");
    }

    #[test]
    fn dtype_errors_are_typed() {
        let err = ids(&[1, 2], &[2]).relu().unwrap_err();
        assert!(matches!(err, Error::DTypeMismatch { .. }), "{err}");
    }

    #[test]
    fn unary_ops() {
        let x = t(&[-1., 0., 1., 4.], &[4]);
        assert_close(&x.relu().unwrap(), &[0., 0., 1., 4.], 0.);
        assert_close(&x.abs().unwrap(), &[1., 0., 1., 4.], 0.);
        assert_close(&t(&[1., 4.], &[2]).sqrt().unwrap(), &[1., 2.], 1e-7);
        assert_close(
            &t(&[0., 1.], &[2]).exp().unwrap(),
            &[1., std::f32::consts::E],
            1e-6,
        );
        assert_close(
            &t(&[1., std::f32::consts::E], &[2]).log().unwrap(),
            &[0., 1.],
            1e-6,
        );
        assert!(t(&[-1.], &[1]).log().unwrap().to_vec_f32().unwrap()[0].is_nan());
    }

    #[test]
    fn gelu_variants_match_reference_values() {
        // Values from torch.nn.functional.gelu(x) and gelu(x, approximate="tanh").
        let x = t(&[-3., -1., 0., 0.5, 2.], &[5]);
        assert_close(
            &x.gelu_erf().unwrap(),
            &[-0.004_049_7, -0.158_655_3, 0., 0.345_731_1, 1.954_5],
            1e-5,
        );
        assert_close(
            &x.gelu_tanh().unwrap(),
            &[-0.003_637_4, -0.158_808, 0., 0.345_714, 1.954_597_7],
            1e-5,
        );
    }

    #[test]
    fn clamp_affine_and_where() {
        let x = t(&[-2., 0.5, 3.], &[3]);
        assert_close(&x.clamp(-1., 1.).unwrap(), &[-1., 0.5, 1.], 0.);
        assert!(x.clamp(1., -1.).is_err());
        assert_close(&x.affine(2., 1.).unwrap(), &[-3., 2., 7.], 0.);
        let cond = t(&[1., 0., 1.], &[3]);
        let other = t(&[9.], &[1]);
        assert_close(&cond.where_(&x, &other).unwrap(), &[-2., 9., 3.], 0.);
    }
}
