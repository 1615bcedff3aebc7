//! The vector–Jacobian products of the ops that pick entries: `index_select`, max/min reductions,
//! `top_k`, `keep_top_k`, and the L2 norm. A picked entry's gradient goes to the index the forward
//! chose (the first on ties, as the forward's own rule), and scatters use `scatter_outer`, whose fixed
//! summation order makes them the same bit for bit on every run.

use super::Vjp;
use crate::{BinaryOp, DType, Error, ReduceOp, Result, Shape, Tensor};

/// `out[idx[i]] += rows[i]` for `rows` `[n, width]` and i32 `idx` `[n]`: `[len, width]`.
fn scatter_add_rows(rows: &Tensor, idx: &Tensor, len: usize) -> Result<Tensor> {
    let n = idx.numel();
    let ones = Tensor::ones([n, 1], rows.device())?;
    Tensor::scatter_outer(&ones, &idx.reshape([n, 1])?, rows, len)
}

/// `idx` (`[.., k]`, positions within rows of length `len`) as positions in the flattened tensor.
fn flat_positions(op: &'static str, idx: &Tensor, len: usize) -> Result<Tensor> {
    let k = idx.dims().last().copied().unwrap_or(1).max(1);
    let flat: Vec<i32> = idx
        .i32_host(op)?
        .iter()
        .enumerate()
        .map(|(i, &j)| i32::try_from((i / k) * len + j as usize))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::invalid(
                op,
                "the gradient scatters into more than 2^31 entries; use smaller batches",
            )
        })?;
    Tensor::from_vec_i32(flat, [idx.numel()], idx.device())
}

/// `index_select(axis, indices)`: each picked slice's cotangent is added back where it came from.
pub(crate) struct IndexSelectVjp {
    pub indices: Tensor,
    pub input: Shape,
    pub axis: usize,
}

impl Vjp for IndexSelectVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (outer, len, inner) = self.input.split_at_axis(self.axis);
        let n = self.indices.numel();
        // Bring the picked axis first, scatter its slices into place, then put it back.
        let rows = g
            .reshape([outer, n, inner])?
            .permute(&[1, 0, 2])?
            .reshape([n, outer * inner])?;
        let dx = scatter_add_rows(&rows, &self.indices, len)?
            .reshape([len, outer, inner])?
            .permute(&[1, 0, 2])?
            .reshape(self.input.clone())?;
        Ok(vec![Some(dx), None])
    }
}

/// `max`/`min` along `axis`: the whole gradient goes to the first extreme entry.
pub(crate) struct ExtremeVjp {
    pub x: Tensor,
    pub op: ReduceOp,
    pub axis: usize,
    pub keepdim: bool,
}

impl Vjp for ExtremeVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = &self.x;
        let axis = self.axis as isize;
        let chosen = match self.op {
            ReduceOp::Min => x.affine(-1.0, 0.0)?.argmax(axis, true)?,
            _ => x.argmax(axis, true)?,
        };
        let len = x.dims()[self.axis];
        let mut positions = vec![1; x.rank()];
        positions[self.axis] = len;
        let iota =
            Tensor::from_vec_f32((0..len).map(|i| i as f32).collect(), positions, x.device())?;
        let onehot = iota.binary(BinaryOp::Equal, &chosen.to_dtype(DType::F32)?)?;
        let g = keep_axis(g, &x.shape, self.axis, self.keepdim)?;
        Ok(vec![Some(onehot.mul(&g)?)])
    }
}

/// `g` with the reduced axis back as size 1, so it broadcasts over the input.
fn keep_axis(g: &Tensor, input: &Shape, axis: usize, keepdim: bool) -> Result<Tensor> {
    if keepdim {
        return Ok(g.clone());
    }
    let mut dims = input.dims().to_vec();
    dims[axis] = 1;
    g.reshape(dims)
}

/// `l2_norm` along `axis`: `x / ‖x‖` times the cotangent, and 0 where the norm is 0 (PyTorch's
/// subgradient there).
pub(crate) struct L2NormVjp {
    pub x: Tensor,
    /// The norm with the axis kept.
    pub norm: Tensor,
    pub axis: usize,
    pub keepdim: bool,
}

impl Vjp for L2NormVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = keep_axis(g, &self.x.shape, self.axis, self.keepdim)?;
        let zero = Tensor::zeros([1usize], g.device())?;
        let positive = self.norm.binary(BinaryOp::Greater, &zero)?;
        let ratio = positive.where_(&g.div(&self.norm)?, &zero)?;
        Ok(vec![Some(self.x.mul(&ratio)?)])
    }
}

/// `top_k(k)`'s values: each value's cotangent goes to the entry it was read from.
pub(crate) struct TopKVjp {
    pub indices: Tensor,
    pub input: Shape,
}

impl Vjp for TopKVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let len = self.input.dims().last().copied().unwrap_or(1);
        let flat = flat_positions("top_k", &self.indices, len)?;
        let n = flat.numel();
        let dx = scatter_add_rows(&g.reshape([n, 1])?, &flat, self.input.numel())?;
        Ok(vec![Some(dx.reshape(self.input.clone())?)])
    }
}

/// `keep_top_k(k)`: the cotangent passes at the kept entries (chosen again by `top_k`, whose order,
/// ties included, is the forward's) and is 0 elsewhere.
pub(crate) struct KeepTopKVjp {
    pub x: Tensor,
    pub k: usize,
}

impl Vjp for KeepTopKVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let shape = self.x.shape.clone();
        let len = shape.dims().last().copied().unwrap_or(1);
        let (_, indices) = self.x.top_k(self.k.min(len))?;
        let flat = flat_positions("keep_top_k", &indices, len)?;
        let n = flat.numel();
        let picked = g.reshape([shape.numel()])?.index_select(0, &flat)?;
        let dx = scatter_add_rows(&picked.reshape([n, 1])?, &flat, shape.numel())?;
        Ok(vec![Some(dx.reshape(shape)?)])
    }
}
