//! The fused backward kernels: each VJP here is one pass over its rows instead of a dozen engine ops
//! (and a dozen full-size temporaries), with the same formulas the composed VJPs used.

use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, math, rows_per_task, simd};

/// The softmax VJP along rows of length `len`, from the saved output `y`:
/// softmax `dx = y ⊙ (g − Σ g ⊙ y)`; log-softmax `dx = g − exp(y) · Σ g`.
pub(crate) fn softmax_backward(y: &[f32], g: &[f32], len: usize, log: bool) -> Vec<f32> {
    let mut dx = vec![0.0; y.len()];
    if len == 0 {
        return dx;
    }
    dx.par_chunks_mut(len)
        .zip(y.par_chunks(len).zip(g.par_chunks(len)))
        .with_min_len(rows_per_task(len))
        .for_each(|(d, (y, g))| simd::softmax_backward_row(d, y, g, log));
    dx
}

/// The layer-norm VJP for rows of length `d`: `dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))` with
/// `ĝ = g ⊙ w`, and `g ⊙ x̂`, whose sum over rows is the weight's gradient. The row statistics are
/// recomputed exactly as the forward pass computes them.
pub(crate) fn layer_norm_backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    d: usize,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let (mut dx, mut g_xhat) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    if d == 0 {
        return (dx, g_xhat);
    }
    dx.par_chunks_mut(d)
        .zip(g_xhat.par_chunks_mut(d))
        .zip(x.par_chunks(d).zip(g.par_chunks(d)))
        .with_min_len(rows_per_task(d))
        .for_each(|((dx, gx), (x, g))| simd::layer_norm_backward_row(dx, gx, x, w, g, eps));
    (dx, g_xhat)
}

/// `g ⊙ gelu′(x)`, tanh or exact form.
pub(crate) fn gelu_backward(x: &[f32], g: &[f32], tanh: bool) -> Vec<f32> {
    let mut dx = Vec::with_capacity(x.len());
    dx.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(PAR_MIN_ELEMS)
        .zip(x.par_chunks(PAR_MIN_ELEMS).zip(g.par_chunks(PAR_MIN_ELEMS)))
        .for_each(|(d, (x, g))| simd::gelu_backward_into(d, x, g, tanh));
    // SAFETY: the chunks cover all x.len() slots and each was written above.
    unsafe { dx.set_len(x.len()) };
    dx
}

/// `−log softmax(x)[label]` for each row of length `n` (0 for a row labelled `ignore`), and the row's
/// log-sum-exp, which the backward pass reuses. Labels were range-checked by the caller.
pub(crate) fn cross_entropy(
    x: &[f32],
    labels: &[i32],
    n: usize,
    ignore: i32,
) -> (Vec<f32>, Vec<f32>) {
    let rows = labels.len();
    let (mut loss, mut lse) = (vec![0.0; rows], vec![0.0; rows]);
    loss.par_iter_mut()
        .zip(lse.par_iter_mut())
        .enumerate()
        .with_min_len(rows_per_task(n))
        .for_each(|(r, (loss, lse))| {
            let row = &x[r * n..(r + 1) * n];
            let max = math::max(row);
            *lse = math::sum_by(row, |v| math::exp(v - max)).ln() + max;
            if labels[r] != ignore {
                *loss = *lse - row[labels[r] as usize];
            }
        });
    (loss, lse)
}

/// The cross-entropy VJP: `dx = g[r] · (softmax(x) − onehot(label))` on each labelled row, 0 on the
/// rows left out.
pub(crate) fn cross_entropy_backward(
    x: &[f32],
    lse: &[f32],
    labels: &[i32],
    g: &[f32],
    n: usize,
    ignore: i32,
) -> Vec<f32> {
    let mut dx = vec![0.0; x.len()];
    if n == 0 {
        return dx;
    }
    dx.par_chunks_mut(n)
        .zip(x.par_chunks(n))
        .enumerate()
        .with_min_len(rows_per_task(n))
        .for_each(|(r, (d, row))| {
            if labels[r] == ignore {
                return;
            }
            let (scale, shift) = (g[r], lse[r]);
            simd::map_with_scalar(d, row, |v| scale * math::exp(v - shift));
            d[labels[r] as usize] -= scale;
        });
    dx
}
