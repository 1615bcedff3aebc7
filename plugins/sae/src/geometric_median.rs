//! The geometric median of a batch of rows (Weiszfeld's iteration), for initialising `b_dec`: robust to
//! the outlier rows that pull the mean.

use loupe_plugin_api::prelude::*;

/// Weiszfeld from the mean: `m ← Σ w_j x_j / Σ w_j`, `w_j = 1/max(‖x_j − m‖, ε)`, until `m` moves by
/// less than 1e-6 of its norm or after `iterations`.
pub fn of_rows(x: &Tensor, iterations: usize) -> Result<Tensor> {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let one = Tensor::scalar(1.0)?;
    let eps = Tensor::scalar(1e-8)?;
    let mut m = x.mean(0, false)?;
    for _ in 0..iterations {
        let distance = x.sub(&m)?.l2_norm(1, false)?.maximum(&eps)?;
        let w = one.div(&distance)?;
        let total = w.sum_all()?;
        let next = w
            .reshape(&[1, n])?
            .matmul(x)?
            .reshape(&[d])?
            .affine(1.0 / total, 0.0)?;
        let moved = next.sub(&m)?.l2_norm(0, false)?.item()?;
        let size = next.l2_norm(0, false)?.item()?;
        m = next;
        if moved <= 1e-6 * size.max(1e-12) {
            break;
        }
    }
    Ok(m)
}
