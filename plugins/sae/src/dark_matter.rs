//! Dark matter (Engels et al.): how much of the SAE's error `e = x − x̂` a linear map of `x` predicts.
//! A ridge fit `ê = [x, 1] B` on one half of each evaluation batch (from Gram matrices summed on the
//! host), scored on the other half (kept on the host); the same for the error's norm `‖e‖` (a scalar
//! probe).

use loupe_plugin_api::prelude::*;
use serde::Serialize;

use crate::metrics::accumulate;

/// Fitting rows needed per coefficient of the linear map.
pub const MIN_ROWS_PER_COEFFICIENT: u64 = 10;

/// The sums a least-squares fit of `target` on `[x, 1]` needs.
#[derive(Default)]
struct Sums {
    gram: Option<Tensor>,
    cross: Option<Tensor>,
    rows: u64,
}

impl Sums {
    fn add(&mut self, design: &Tensor, target: &Tensor) -> Result<()> {
        accumulate(&mut self.gram, design.matmul_t(design, true, false)?)?;
        accumulate(&mut self.cross, design.matmul_t(target, true, false)?)?;
        self.rows += design.shape()[0] as u64;
        Ok(())
    }
}

/// Held-out rows: design `[n, d+1]`, error `[n, d]`, error norm `[n, 1]`.
type HeldOut = (Tensor, Tensor, Tensor);

#[derive(Default)]
pub struct DarkMatter {
    fit_error: Sums,
    fit_norm: Sums,
    held: Vec<HeldOut>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DarkMatterMetrics {
    /// Held-out R² of the linear prediction of the error vector.
    pub error_r2: f64,
    /// Held-out R² of the linear prediction of the error's norm.
    pub error_norm_r2: f64,
    /// Share of Σ‖e‖² the linear map leaves: the "nonlinear" error.
    pub nonlinear_error_fraction: f64,
    pub fit_rows: u64,
    pub held_out_rows: u64,
}

impl DarkMatter {
    /// Adds rows `x` and their errors `e`: the first half of the rows to the fit, the rest held out.
    pub fn add(&mut self, x: &Tensor, e: &Tensor) -> Result<()> {
        let n = x.shape()[0];
        if n < 2 {
            return Ok(());
        }
        let design = Tensor::concat(&[x, &Tensor::ones(&[n, 1])?], 1)?;
        let norm = e.l2_norm(1, true)?;
        let half = n / 2;
        let (d_fit, d_held) = (design.slice(0, 0, half)?, design.slice(0, half, n)?);
        self.fit_error.add(&d_fit, &e.slice(0, 0, half)?)?;
        self.fit_norm.add(&d_fit, &norm.slice(0, 0, half)?)?;
        self.held
            .push((d_held, e.slice(0, half, n)?, norm.slice(0, half, n)?));
        Ok(())
    }

    /// The metrics, or why they were not computed: a fit of `d_in + 1` coefficients per output on
    /// fewer than `MIN_ROWS_PER_COEFFICIENT` times as many rows fits noise (on 31 rows for 64
    /// dimensions it scored R² −4.3), so it is not reported.
    pub fn finish(self, ridge: f64) -> Result<std::result::Result<DarkMatterMetrics, String>> {
        let (Some(gram), Some(cross), Some(norm_cross)) = (
            self.fit_error.gram.as_ref(),
            self.fit_error.cross.as_ref(),
            self.fit_norm.cross.as_ref(),
        ) else {
            return Ok(Err("no evaluation batch had 2 or more rows".into()));
        };
        let coefficients = gram.shape()[0] as u64;
        let needed = MIN_ROWS_PER_COEFFICIENT * coefficients;
        if self.fit_error.rows < needed {
            return Ok(Err(format!(
                "the linear fit of the error has {coefficients} coefficients per output (d_in + 1) but only {} fitting rows (half the evaluation rows); it needs at least {needed}: raise eval_tokens to {} or more",
                self.fit_error.rows,
                2 * needed
            )));
        }
        let regularised = with_ridge(gram, ridge)?;
        let map = Tensor::solve_spd(&regularised, cross)?;
        let norm_map = Tensor::solve_spd(&regularised, norm_cross)?;
        let error = score(&map, self.held.iter().map(|(d, e, _)| (d, e)))?;
        let norm = score(&norm_map, self.held.iter().map(|(d, _, n)| (d, n)))?;
        Ok(Ok(DarkMatterMetrics {
            error_r2: error.r2(),
            error_norm_r2: norm.r2(),
            nonlinear_error_fraction: error.residual / error.energy,
            fit_rows: self.fit_error.rows,
            held_out_rows: error.rows,
        }))
    }
}

/// `gram + ridge · mean(diag(gram)) · I`. The Gram matrix is `(d+1)²`: small enough to adjust here.
fn with_ridge(gram: &Tensor, ridge: f64) -> Result<Tensor> {
    let n = gram.shape()[0];
    let mut values = gram.to_vec_f32()?;
    let mean_diag: f64 = (0..n).map(|i| values[i * n + i] as f64).sum::<f64>() / n as f64;
    let add = (ridge * mean_diag).max(1e-12) as f32;
    for i in 0..n {
        values[i * n + i] += add;
    }
    Tensor::from_f32(&values, &[n, n])
}

/// Held-out sums of a fit: residual and target energy, the target's column sums for its spread.
struct Score {
    residual: f64,
    energy: f64,
    mean_sq: f64,
    rows: u64,
}

impl Score {
    fn r2(&self) -> f64 {
        let spread = self.energy - self.mean_sq;
        if spread > 0.0 {
            1.0 - self.residual / spread
        } else {
            f64::NAN
        }
    }
}

/// Scores the map `b` on held-out (design, target) pairs.
fn score<'a>(b: &Tensor, held: impl Iterator<Item = (&'a Tensor, &'a Tensor)>) -> Result<Score> {
    let (mut residual, mut energy, mut rows) = (0.0, 0.0, 0u64);
    let mut sums: Option<Tensor> = None;
    for (design, target) in held {
        let miss = target.sub(&design.matmul(b)?)?;
        residual += miss.mul(&miss)?.sum_all()? as f64;
        energy += target.mul(target)?.sum_all()? as f64;
        accumulate(&mut sums, target.sum(0, false)?)?;
        rows += design.shape()[0] as u64;
    }
    let mean_sq = match sums {
        Some(s) => {
            s.to_vec_f32()?
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                / rows as f64
        }
        None => 0.0,
    };
    Ok(Score {
        residual,
        energy,
        mean_sq,
        rows,
    })
}
