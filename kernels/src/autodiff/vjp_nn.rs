//! The vector–Jacobian products of the neural-network ops (softmax, layer norm, cross-entropy, embedding),
//! from engine ops on detached tensors (fused backward kernels where one exists). They save the minimum: softmax its output, layer norm its input (the row
//! statistics are recomputed), the cross-entropy its logits and their log-sum-exp, embedding its ids.

use super::Vjp;
use crate::{Result, Shape, Tensor};

/// `softmax` / `log_softmax` along `axis`, from the saved output `y`.
pub(crate) struct SoftmaxVjp {
    pub y: Tensor,
    pub axis: isize,
    pub log: bool,
}

impl Vjp for SoftmaxVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let last = self.y.rank() as isize - 1;
        let dx = if self.axis == -1 || self.axis == last {
            // Along rows: one fused pass.
            self.y.softmax_backward(g, self.log)?
        } else if self.log {
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

/// `layer_norm(x, w, b, eps)` over the last axis (biased variance, as PyTorch). One fused pass gives
/// dx and g ⊙ x̂ (the row statistics recomputed, not saved); the weight and bias gradients are sums of
/// those over rows.
pub(crate) struct LayerNormVjp {
    pub x: Tensor,
    pub w: Tensor,
    pub eps: f32,
}

impl Vjp for LayerNormVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let d = self.w.numel();
        let rows = self.x.numel() / d.max(1);
        let over_rows = |t: &Tensor| t.reshape([rows, d])?.sum(0, false);
        let (dx, g_xhat) = self.x.layer_norm_backward(&self.w, g, self.eps)?;
        let dw = needs[1].then(|| over_rows(&g_xhat)).transpose()?;
        let db = needs[2].then(|| over_rows(g)).transpose()?;
        Ok(vec![needs[0].then_some(dx), dw, db])
    }
}

/// `logits.cross_entropy(labels, ignore)`: `g[r] · (softmax(row r) − onehot(label r))`, from the
/// saved logits and their rows' log-sum-exp (no softmax is kept).
pub(crate) struct CrossEntropyVjp {
    pub logits: Tensor,
    pub lse: Tensor,
    pub labels: Tensor,
    pub ignore: i32,
}

impl Vjp for CrossEntropyVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dx = self
            .logits
            .cross_entropy_backward(&self.lse, &self.labels, g, self.ignore)?;
        Ok(vec![Some(dx)])
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
