//! The vector–Jacobian products of the ops that record themselves, written with engine ops on detached
//! tensors, so each runs on whichever device its tensors are on.

use super::Vjp;
use crate::{BinaryOp, Error, ReduceOp, Result, Shape, Tensor, UnaryOp};

/// `g` summed over the axes broadcasting added or stretched to reach its shape from `shape`.
pub(crate) fn sum_to_shape(g: &Tensor, shape: &Shape) -> Result<Tensor> {
    let mut g = g.clone();
    while g.rank() > shape.rank() {
        g = g.sum(0, false)?;
    }
    for (axis, &d) in shape.dims().iter().enumerate() {
        if d == 1 && g.dims()[axis] != 1 {
            g = g.sum(axis as isize, true)?;
        }
    }
    Ok(g)
}

fn scalar(v: f32, like: &Tensor) -> Result<Tensor> {
    Tensor::full([1usize], v, like.device())
}

/// `maximum`/`minimum`: the gradient goes to the operand chosen, half to each on a tie (PyTorch).
fn choice_weights(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<(Tensor, Tensor)> {
    let wins = match op {
        BinaryOp::Max => a.binary(BinaryOp::Greater, b)?,
        _ => a.binary(BinaryOp::Less, b)?,
    };
    let ties = a.binary(BinaryOp::Equal, b)?.affine(0.5, 0.0)?;
    let for_a = wins.add(&ties)?;
    let for_b = for_a.affine(-1.0, 1.0)?;
    Ok((for_a, for_b))
}

pub(crate) struct BinaryVjp {
    pub op: BinaryOp,
    pub a: Tensor,
    pub b: Tensor,
}

impl Vjp for BinaryVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (&self.a, &self.b);
        let (ga, gb) = match self.op {
            BinaryOp::Add => (g.clone(), g.clone()),
            BinaryOp::Sub => (g.clone(), g.affine(-1.0, 0.0)?),
            BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
            // d(a/b)/db = −a/b².
            BinaryOp::Div => (g.div(b)?, g.mul(a)?.div(&b.mul(b)?)?.affine(-1.0, 0.0)?),
            BinaryOp::Max | BinaryOp::Min => {
                let (wa, wb) = choice_weights(a, b, self.op)?;
                (g.mul(&wa)?, g.mul(&wb)?)
            }
            BinaryOp::Greater | BinaryOp::Less | BinaryOp::Equal => {
                return Err(Error::NotDifferentiable {
                    op: "binary",
                    why: "comparisons have no gradient".into(),
                });
            }
        };
        Ok(vec![
            needs[0].then(|| sum_to_shape(&ga, &a.shape)).transpose()?,
            needs[1].then(|| sum_to_shape(&gb, &b.shape)).transpose()?,
        ])
    }
}

pub(crate) struct UnaryVjp {
    pub op: UnaryOp,
    /// The input and output (each derivative needs one or the other).
    pub x: Tensor,
    pub y: Tensor,
}

impl Vjp for UnaryVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = (&self.x, &self.y);
        let zero = scalar(0.0, x)?;
        let dx = match self.op {
            // relu′(0) = 0, as in PyTorch.
            UnaryOp::Relu => g.mul(&x.binary(BinaryOp::Greater, &zero)?)?,
            // One fused pass each (`Tensor::gelu_backward`).
            UnaryOp::GeluTanh => x.gelu_backward(g, true)?,
            UnaryOp::GeluErf => x.gelu_backward(g, false)?,
            UnaryOp::Exp => g.mul(y)?,
            UnaryOp::Log => g.div(x)?,
            UnaryOp::Sqrt => g.div(y)?.affine(0.5, 0.0)?,
            // abs′(0) = 0, as in PyTorch: sign(x).
            UnaryOp::Abs => {
                let sign = x
                    .binary(BinaryOp::Greater, &zero)?
                    .sub(&x.binary(BinaryOp::Less, &zero)?)?;
                g.mul(&sign)?
            }
            UnaryOp::Neg => g.affine(-1.0, 0.0)?,
            UnaryOp::Tanh => g.mul(&y.mul(y)?.affine(-1.0, 1.0)?)?,
            UnaryOp::Sigmoid => g.mul(&y.mul(&y.affine(-1.0, 1.0)?)?)?,
            // erf′(x) = 2/√π · exp(−x²).
            UnaryOp::Erf => {
                let bell = x.mul(x)?.affine(-1.0, 0.0)?.exp()?;
                g.mul(&bell.affine(std::f32::consts::FRAC_2_SQRT_PI, 0.0)?)?
            }
        };
        Ok(vec![Some(dx)])
    }
}

/// `affine(mul, add)`: the gradient scaled by `mul`.
pub(crate) struct ScaleVjp {
    pub mul: f32,
}

impl Vjp for ScaleVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.affine(self.mul, 0.0)?)])
    }
}

/// `sum` and `mean` along an axis: the gradient spread back over it.
pub(crate) struct ReduceVjp {
    pub op: ReduceOp,
    pub input: Shape,
    pub axis: usize,
    pub keepdim: bool,
}

impl Vjp for ReduceVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mut kept = self.input.dims().to_vec();
        let len = kept[self.axis];
        kept[self.axis] = 1;
        let g = if self.keepdim {
            g.clone()
        } else {
            g.reshape(kept)?
        };
        let g = match self.op {
            ReduceOp::Mean => g.affine(1.0 / len as f32, 0.0)?,
            _ => g,
        };
        Ok(vec![Some(
            Tensor::zeros(self.input.clone(), g.device())?.add(&g)?,
        )])
    }
}

/// `op(a) · op(b)`, each `op` an optional transpose of the last two axes; batch axes broadcast.
pub(crate) struct MatmulVjp {
    pub a: Option<Tensor>,
    pub b: Option<Tensor>,
    pub a_shape: Shape,
    pub b_shape: Shape,
    pub transpose_a: bool,
    pub transpose_b: bool,
}

impl Vjp for MatmulVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        // With A' = op(A), B' = op(B): dA' = g·B'ᵀ and dB' = A'ᵀ·g, then undo each op.
        let ga = match (needs[0], &self.b) {
            (true, Some(b)) => {
                let d = if self.transpose_a {
                    // A' = Aᵀ: dA = (g·B'ᵀ)ᵀ = B'·gᵀ.
                    b.matmul_t(g, self.transpose_b, true)?
                } else {
                    g.matmul_t(b, false, !self.transpose_b)?
                };
                Some(sum_to_shape(&d, &self.a_shape)?)
            }
            _ => None,
        };
        let gb = match (needs[1], &self.a) {
            // One matrix applied to a stack (`[B, T, D] · [D, E]`): the stacked rows are one matrix,
            // so dB is one product over all of them, not B products summed afterwards.
            (true, Some(a)) if self.b_shape.rank() == 2 && a.rank() > 2 && !self.transpose_a => {
                let (k, n) = (a.dims()[a.rank() - 1], g.dims()[g.rank() - 1]);
                let rows = a.numel() / k.max(1);
                let (a2, g2) = (a.reshape([rows, k])?, g.reshape([rows, n])?);
                Some(if self.transpose_b {
                    g2.matmul_t(&a2, true, false)?
                } else {
                    a2.matmul_t(&g2, true, false)?
                })
            }
            (true, Some(a)) => {
                let d = if self.transpose_b {
                    // B' = Bᵀ: dB = (A'ᵀ·g)ᵀ = gᵀ·A'.
                    g.matmul_t(a, true, self.transpose_a)?
                } else {
                    a.matmul_t(g, !self.transpose_a, false)?
                };
                Some(sum_to_shape(&d, &self.b_shape)?)
            }
            _ => None,
        };
        Ok(vec![ga, gb])
    }
}

/// `reshape`: the gradient in the input's shape.
pub(crate) struct ReshapeVjp {
    pub input: Shape,
}

impl Vjp for ReshapeVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.reshape(self.input.clone())?)])
    }
}

/// `permute`: the gradient permuted back.
pub(crate) struct PermuteVjp {
    pub perm: Vec<usize>,
}

impl Vjp for PermuteVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mut inverse = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(vec![Some(g.permute(&inverse)?)])
    }
}

/// `slice(axis, start, end)`: the gradient in place, zeros around it.
pub(crate) struct SliceVjp {
    pub input: Shape,
    pub axis: usize,
    pub start: usize,
}

impl Vjp for SliceVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let len = self.input.dims()[self.axis];
        let taken = g.dims()[self.axis];
        let zeros = |n: usize| -> Result<Tensor> {
            let mut dims = g.dims().to_vec();
            dims[self.axis] = n;
            Tensor::zeros(dims, g.device())
        };
        let (before, after) = (zeros(self.start)?, zeros(len - self.start - taken)?);
        let dx = Tensor::concat(&[&before, g, &after], self.axis as isize)?;
        Ok(vec![Some(dx)])
    }
}

/// `concat(parts, axis)`: each part's stretch of the gradient.
pub(crate) struct ConcatVjp {
    pub axis: usize,
    pub lengths: Vec<usize>,
}

impl Vjp for ConcatVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mut start = 0;
        let mut out = Vec::with_capacity(self.lengths.len());
        for (i, &len) in self.lengths.iter().enumerate() {
            out.push(
                needs[i]
                    .then(|| g.slice(self.axis as isize, start, start + len))
                    .transpose()?,
            );
            start += len;
        }
        Ok(out)
    }
}

/// `cond.where_(on_true, on_false)`: the gradient goes to the branch each element took; the condition
/// (a mask) gets none.
pub(crate) struct WhereVjp {
    pub cond: Tensor,
    pub on_true: Shape,
    pub on_false: Shape,
}

impl Vjp for WhereVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let zero = scalar(0.0, g)?;
        // Selected, never multiplied: a −∞ in the branch not taken cannot make a NaN here.
        let taken = self.cond.where_(g, &zero)?;
        let not_taken = self.cond.where_(&zero, g)?;
        Ok(vec![
            None,
            needs[1]
                .then(|| sum_to_shape(&taken, &self.on_true))
                .transpose()?,
            needs[2]
                .then(|| sum_to_shape(&not_taken, &self.on_false))
                .transpose()?,
        ])
    }
}

/// `clamp(min, max)`: the gradient where `min ≤ x ≤ max` (bounds included, as PyTorch), else 0.
pub(crate) struct ClampVjp {
    pub x: Tensor,
    pub min: f32,
    pub max: f32,
}

impl Vjp for ClampVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let below = self.x.binary(BinaryOp::Less, &scalar(self.min, g)?)?;
        let above = self.x.binary(BinaryOp::Greater, &scalar(self.max, g)?)?;
        let outside = below.add(&above)?;
        Ok(vec![Some(outside.where_(&scalar(0.0, g)?, g)?)])
    }
}

/// `x · w + b` with `x` `[.., in]`, `w` `[in, out]`, `b` `[out]` (optional). Each of `x` and `w` is
/// kept only for the other's gradient.
pub(crate) struct LinearVjp {
    pub x: Option<Tensor>,
    pub w: Option<Tensor>,
    /// Whether a bias `[out]` was added (its gradient is g summed over every row).
    pub has_bias: bool,
    /// `linear_t`: the weight is stored `[out, in]`.
    pub transposed: bool,
}

impl Vjp for LinearVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let out = *g.dims().last().expect("linear's output has axes");
        // y = x·W (W [in, out]) or x·Wᵀ (W [out, in]): dx = g·Wᵀ or g·W.
        let dx = match (needs[0], &self.w) {
            (true, Some(w)) => Some(g.matmul_t(w, false, !self.transposed)?),
            _ => None,
        };
        // dW = xᵀ·g, or its transpose gᵀ·x, over the rows of every leading axis.
        let dw = match (needs[1], &self.x) {
            (true, Some(x)) => {
                let inputs = *x.dims().last().expect("linear's input has axes");
                let rows = x.numel() / inputs.max(1);
                let (x2, g2) = (x.reshape([rows, inputs])?, g.reshape([rows, out])?);
                Some(if self.transposed {
                    g2.matmul_t(&x2, true, false)?
                } else {
                    x2.matmul_t(&g2, true, false)?
                })
            }
            _ => None,
        };
        let mut grads = vec![dx, dw];
        if self.has_bias {
            grads.push(
                needs
                    .get(2)
                    .copied()
                    .unwrap_or(false)
                    .then(|| g.reshape([g.numel() / out.max(1), out])?.sum(0, false))
                    .transpose()?,
            );
        }
        Ok(grads)
    }
}
