//! BatchTopK's inference threshold, set after training on held-out rows. The moving average tracked
//! while training trails the weights (after a short run it keeps several times k latents), so the
//! saved JumpReLU threshold is instead the one at which the final SAE keeps k latents per row on
//! average: the (k·N)-th largest of the N rows' activations.

use loupe_plugin_api::prelude::*;

use crate::arch::{Activation, Sae};
use crate::source::Source;

/// What the calibration found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calibration {
    pub threshold: f64,
    pub rows: u64,
    pub target_l0: f64,
    /// The threshold the training-time moving average reached, replaced by `threshold`.
    pub training_threshold: Option<f64>,
}

/// Sets `sae`'s (JumpReLU) threshold so that on up to `max_rows` rows from `source` the mean number
/// of activations above it is `k`. `None` when the source gave no rows.
pub fn batch_topk_threshold(
    sae: &mut Sae,
    source: &mut Source,
    k: usize,
    max_rows: u64,
    training_threshold: Option<f64>,
) -> Result<Option<Calibration>> {
    let m = sae.d_sae();
    let mut candidates: Vec<f32> = Vec::new();
    let mut rows = 0u64;
    while rows < max_rows {
        let Some(x) = source.next()? else { break };
        let n = x.shape()[0].min((max_rows - rows) as usize);
        let x = if n < x.shape()[0] {
            x.slice(0, 0, n)?
        } else {
            x
        };
        // What BatchTopK ranked: ReLU of the (decoder-norm-folded) pre-activations.
        let a = sae.hidden_pre(&x)?.relu()?.reshape(&[1, n * m])?;
        // Each batch's top 2·k·n hold the global top k·N unless one batch holds over twice its share.
        let (values, _) = a.top_k((2 * k * n).min(n * m))?;
        candidates.extend(values.to_vec_f32()?.into_iter().filter(|&v| v > 0.0));
        rows += n as u64;
    }
    if rows == 0 {
        return Ok(None);
    }
    candidates.sort_by(|a, b| b.total_cmp(a));
    let keep = (k as u64 * rows) as usize;
    // Between the last kept and the first dropped value, so a tie is not split by rounding.
    let threshold = match (
        keep.checked_sub(1).and_then(|i| candidates.get(i)),
        candidates.get(keep),
    ) {
        (Some(&last), Some(&next)) => 0.5 * (last as f64 + next as f64),
        // Fewer positive activations than k·N: keep them all.
        _ => 0.0,
    };
    sae.activation = Activation::JumpRelu {
        threshold: Tensor::full(&[m], threshold as f32)?,
    };
    Ok(Some(Calibration {
        threshold,
        rows,
        target_l0: k as f64,
        training_threshold,
    }))
}
