//! Optimiser updates, one fused pass over parameters and their state.

use rayon::prelude::*;

use super::rows_per_task;

/// Scalars of one Adam step, precomputed in f64 as PyTorch does.
pub(crate) struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
}

/// New `(param, m, v)` after one Adam step.
pub(crate) fn adam(
    param: &[f32],
    grad: &[f32],
    m: &[f32],
    v: &[f32],
    s: &AdamStep,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = param.len();
    let (mut p_out, mut m_out, mut v_out) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    const CHUNK: usize = 4096;
    p_out
        .par_chunks_mut(CHUNK)
        .zip(m_out.par_chunks_mut(CHUNK))
        .zip(v_out.par_chunks_mut(CHUNK))
        .enumerate()
        .with_min_len(rows_per_task(CHUNK))
        .for_each(|(c, ((p_dst, m_dst), v_dst))| {
            let base = c * CHUNK;
            for i in 0..p_dst.len() {
                let j = base + i;
                let g = grad[j];
                let m_new = s.beta1 * m[j] + (1.0 - s.beta1) * g;
                let v_new = s.beta2 * v[j] + (1.0 - s.beta2) * g * g;
                let denom = v_new.sqrt() / s.bias_correction2_sqrt + s.eps;
                p_dst[i] = param[j] - s.step_size * m_new / denom;
                m_dst[i] = m_new;
                v_dst[i] = v_new;
            }
        });
    (p_out, m_out, v_out)
}
