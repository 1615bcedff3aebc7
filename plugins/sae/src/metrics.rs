//! Reconstruction metrics over an evaluation set (spec B10): L0, L1, MSE, FVU / explained variance with
//! the per-dimension mean of the whole set, cosine, L2 ratio, relative reconstruction bias, firing
//! frequencies (dead, dense, density histogram). Sums are reduced on the host per batch and kept here
//! in f64.

use loupe_plugin_api::prelude::*;
use serde::Serialize;

#[derive(Default)]
pub struct ReconSums {
    tokens: u64,
    l0: f64,
    l1: f64,
    sse: f64,
    x_sq: f64,
    x_sum: Option<Tensor>,
    cosine: f64,
    l2_ratio: f64,
    x_hat_sq: f64,
    x_dot_x_hat: f64,
    fires: Option<Tensor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconMetrics {
    pub tokens: u64,
    pub l0: f64,
    pub l1: f64,
    pub mse: f64,
    pub fvu: f64,
    pub explained_variance: f64,
    pub cosine: f64,
    pub l2_ratio: f64,
    pub relative_reconstruction_bias: f64,
    /// Latents that never fired on the evaluation rows (training counts `dead_in_training_window`
    /// instead: no firing in the last `dead_feature_window` steps).
    pub dead_on_eval_rows: usize,
    pub dense_latents: usize,
    /// `None` on fewer than 10⁵ (10⁶) rows, where a frequency below 10⁻⁵ (10⁻⁶) cannot be told from 0.
    pub latents_below_1e_5: Option<usize>,
    pub latents_below_1e_6: Option<usize>,
}

/// Adds `value` into a running sum that starts empty.
pub fn accumulate(acc: &mut Option<Tensor>, value: Tensor) -> Result<()> {
    *acc = Some(match acc.take() {
        None => value,
        Some(a) => a.add(&value)?,
    });
    Ok(())
}

impl ReconSums {
    /// Adds rows `x` `[n, d]`, their latents `f` `[n, m]` and reconstructions `x_hat` `[n, d]`.
    pub fn add(&mut self, x: &Tensor, f: &Tensor, x_hat: &Tensor) -> Result<()> {
        let zero = Tensor::scalar(0.0)?;
        let tiny = Tensor::scalar(1e-12)?;
        let firing = f.gt(&zero)?;
        let e = x_hat.sub(x)?;
        let x_norm = x.l2_norm(1, false)?;
        let x_hat_norm = x_hat.l2_norm(1, false)?;
        let dot = x.mul(x_hat)?.sum(1, false)?;
        self.tokens += x.shape()[0] as u64;
        self.l0 += firing.sum_all()? as f64;
        self.l1 += f.abs()?.sum_all()? as f64;
        self.sse += e.mul(&e)?.sum_all()? as f64;
        self.x_sq += x.mul(x)?.sum_all()? as f64;
        self.x_hat_sq += x_hat.mul(x_hat)?.sum_all()? as f64;
        self.x_dot_x_hat += dot.sum_all()? as f64;
        self.cosine += dot
            .div(&x_norm.mul(&x_hat_norm)?.maximum(&tiny)?)?
            .sum_all()? as f64;
        self.l2_ratio += x_hat_norm.div(&x_norm.maximum(&tiny)?)?.sum_all()? as f64;
        accumulate(&mut self.x_sum, x.sum(0, false)?)?;
        accumulate(&mut self.fires, firing.sum(0, false)?)?;
        Ok(())
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The metrics, and each latent's firing frequency `[m]`.
    pub fn finish(self, dense_threshold: f64) -> Result<(ReconMetrics, Tensor)> {
        let (Some(x_sum), Some(fires)) = (self.x_sum, self.fires) else {
            return Err(Error::invalid("sae.evaluate", "the evaluation saw no rows"));
        };
        let t = self.tokens as f64;
        let x_sum: Vec<f32> = x_sum.to_vec_f32()?;
        let mean_sq: f64 = x_sum.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / t;
        // Σ‖x − μ‖² = Σ‖x‖² − T‖μ‖².
        let variance = self.x_sq - mean_sq;
        let fvu = if variance > 0.0 {
            self.sse / variance
        } else {
            f64::NAN
        };
        let frequency = fires.affine((1.0 / t) as f32, 0.0)?;
        let freqs = frequency.to_vec_f32()?;
        let count = |pred: &dyn Fn(f64) -> bool| freqs.iter().filter(|&&f| pred(f as f64)).count();
        Ok((
            ReconMetrics {
                tokens: self.tokens,
                l0: self.l0 / t,
                l1: self.l1 / t,
                mse: self.sse / t,
                fvu,
                explained_variance: 1.0 - fvu,
                cosine: self.cosine / t,
                l2_ratio: self.l2_ratio / t,
                relative_reconstruction_bias: self.x_hat_sq / self.x_dot_x_hat,
                dead_on_eval_rows: count(&|f| f == 0.0),
                dense_latents: count(&|f| f > dense_threshold),
                latents_below_1e_5: (t >= 1e5).then(|| count(&|f| f < 1e-5)),
                latents_below_1e_6: (t >= 1e6).then(|| count(&|f| f < 1e-6)),
            },
            frequency,
        ))
    }
}

/// Histogram of `log10(frequency + 1e-10)` in bins of 0.5 from −10 to 0, as SAELens plots it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DensityHistogram {
    pub bin_edges: Vec<f64>,
    pub counts: Vec<usize>,
}

pub fn density_histogram(frequencies: &[f32]) -> DensityHistogram {
    let edges: Vec<f64> = (0..=20).map(|i| -10.0 + 0.5 * i as f64).collect();
    let mut counts = vec![0usize; edges.len() - 1];
    for &f in frequencies {
        let v = (f as f64 + 1e-10).log10();
        // The slack puts f32-rounded decades (0.01 is 0.0099999998) in the bin they start.
        let bin = (((v + 10.0) / 0.5 + 1e-6).floor().max(0.0) as usize).min(counts.len() - 1);
        counts[bin] += 1;
    }
    DensityHistogram {
        bin_edges: edges,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_dead_latents_first_and_always_firing_last() {
        let h = density_histogram(&[0.0, 1.0, 0.01, 0.01, 1e-5]);
        assert_eq!(h.counts.iter().sum::<usize>(), 5);
        assert_eq!(h.counts[0], 1, "frequency 0 lands at log10(1e-10) = -10");
        assert_eq!(h.counts[19], 1, "frequency 1 lands in the last bin");
        assert_eq!(h.counts[16], 2, "log10(0.01) = -2 starts bin 16");
        assert_eq!(h.counts[10], 1, "log10(1e-5) = -5 starts bin 10");
    }
}
