//! The vector–Jacobian products of the fused attention ops and the causal mask, from engine ops on
//! detached tensors. The pattern's VJP reads the saved pattern, whose masked entries are exact zeros,
//! so a −∞ mask never meets a 0 in the backward pass (no 0·∞ = NaN).

use super::Vjp;
use crate::{Result, Tensor};

/// `[batch, pos, head, d_head]` ↔ `[batch, head, pos, d_head]` (its own inverse).
fn swap_pos_head(x: &Tensor) -> Result<Tensor> {
    x.permute(&[0, 2, 1, 3])
}

/// `attention_pattern(q, k, scale, causal)` = softmax over keys of `scale · q kᵀ` (masked).
pub(crate) struct AttentionPatternVjp {
    /// The output pattern `[batch, head, query, key]`.
    pub pattern: Tensor,
    /// Queries, kept only when `k` needs a gradient; keys, only when `q` does.
    pub q: Option<Tensor>,
    pub k: Option<Tensor>,
    pub scale: f32,
}

impl Vjp for AttentionPatternVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        // The softmax's VJP from its output (one fused pass), dP = P ⊙ (g − Σ_key g ⊙ P); the scale
        // of the scores is applied inside the two products: dS = scale · dP.
        let dp = self.pattern.softmax_backward(g, false)?;
        const OP: &str = "attention_pattern backward";
        let dq = match (&self.k, needs[0]) {
            (Some(k), true) => Some(swap_pos_head(&dp.scaled_matmul(
                OP,
                &swap_pos_head(k)?,
                false,
                false,
                self.scale,
            )?)?),
            _ => None,
        };
        let dk = match (&self.q, needs[1]) {
            (Some(q), true) => Some(swap_pos_head(&dp.scaled_matmul(
                OP,
                &swap_pos_head(q)?,
                true,
                false,
                self.scale,
            )?)?),
            _ => None,
        };
        Ok(vec![dq, dk])
    }
}

/// `attention_values(pattern, v)`: `z[b, q, h] = Σ_key pattern[b, h, q, key] · v[b, key, h]`.
pub(crate) struct AttentionValuesVjp {
    /// The pattern, kept only when `v` needs a gradient; the values, only when the pattern does.
    pub pattern: Option<Tensor>,
    pub v: Option<Tensor>,
}

impl Vjp for AttentionValuesVjp {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = swap_pos_head(g)?;
        let dpattern = match (&self.v, needs[0]) {
            (Some(v), true) => Some(g.matmul_t(&swap_pos_head(v)?, false, true)?),
            _ => None,
        };
        let dv = match (&self.pattern, needs[1]) {
            (Some(p), true) => Some(swap_pos_head(&p.matmul_t(&g, true, false)?)?),
            _ => None,
        };
        Ok(vec![dpattern, dv])
    }
}

/// `causal_mask(fill)`: the masked entries were replaced, so their gradient is 0 and the rest pass.
pub(crate) struct CausalMaskVjp;

impl Vjp for CausalMaskVjp {
    fn vjp(self: Box<Self>, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.causal_mask(0.0)?)])
    }
}
