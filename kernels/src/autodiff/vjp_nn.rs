//! The vector–Jacobian products of the neural-network ops (softmax, layer norm, embedding), from engine
//! ops on detached tensors. They save the minimum: softmax its output, layer norm its input (the row
//! statistics are recomputed), embedding its ids.

use super::Vjp;
use super::vjp::sum_to_shape;
use crate::{Result, Shape, Tensor};

/// `softmax` / `log_softmax` along `axis`, from the saved output `y`.
pub(crate) struct SoftmaxVjp {
    pub y: Tensor,
    pub axis: isize,
    pub log: bool,
}

impl Vjp for SoftmaxVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dx = if self.log {
            // y = x − logsumexp(x): dx = g − softmax(x) · Σ g.
            let p = self.y.exp()?;
            g.sub(&p.mul(&g.sum(self.axis, true)?)?)?
        } else {
            // dx = y ⊙ (g − Σ g ⊙ y).
            let dot = g.mul(&self.y)?.sum(self.axis, true)?;
            self.y.mul(&g.sub(&dot)?)?
        };
        Ok(vec![Some(dx)])
    }
}

/// `layer_norm(x, w, b, eps)` over the last axis (biased variance, as PyTorch).
pub(crate) struct LayerNormVjp {
    pub x: Tensor,
    pub w: Tensor,
    pub eps: f32,
}

impl Vjp for LayerNormVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = &self.x;
        let centred = x.sub(&x.mean(-1, true)?)?;
        let var = centred.mul(&centred)?.mean(-1, true)?;
        let rstd = Tensor::ones([1usize], x.device())?.div(&var.affine(1.0, self.eps)?.sqrt()?)?;
        let xhat = centred.mul(&rstd)?;
        let dx = if needs[0] {
            // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), with ĝ = g ⊙ w.
            let gw = g.mul(&self.w)?;
            let a = gw.mean(-1, true)?;
            let b = gw.mul(&xhat)?.mean(-1, true)?;
            Some(gw.sub(&a)?.sub(&xhat.mul(&b)?)?.mul(&rstd)?)
        } else {
            None
        };
        let shape = self.w.shape.clone();
        let dw = needs[1]
            .then(|| sum_to_shape(&g.mul(&xhat)?, &shape))
            .transpose()?;
        let db = needs[2].then(|| sum_to_shape(g, &shape)).transpose()?;
        Ok(vec![dx, dw, db])
    }
}

/// `table.embedding(ids)`: each row's gradient is the sum of the cotangents of the positions that
/// picked it, added in a fixed order (`scatter_outer`), so it is the same bit for bit on every run.
pub(crate) struct EmbeddingVjp {
    pub ids: Tensor,
    pub table: Shape,
}

impl Vjp for EmbeddingVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (rows, d) = (self.table.dims()[0], self.table.dims()[1]);
        let n = self.ids.numel();
        let indices = self.ids.reshape([n, 1])?;
        let ones = Tensor::ones([n, 1], g.device())?;
        let dtable = Tensor::scatter_outer(&ones, &indices, &g.reshape([n, d])?, rows)?;
        // The ids get no gradient: they are integers.
        Ok(vec![Some(dtable), None])
    }
}
