//! The SNMF fit `A ≈ F·Gᵀ` (spec Part A §A3), on the host's device through API ops. The plugin keeps
//! `X = Aᵀ` `[n, d]` (tokens × neurons, the layout activations arrive in) and `H = Fᵀ` `[k, d]`, so
//! every product is a plain matmul with transpose flags and nothing `d × n` is ever formed:
//!
//! 1. least squares with ridge: `H ← (GᵀG + reg·I)⁻¹ · GᵀX` (a k×k Cholesky solve on the host);
//! 2. winner-take-all: each feature keeps its entries with `|H[i, r]| ≥` its m-th largest `|H[i, ·]|`;
//! 3. scale fix: `c = max(‖G[:, i]‖, 1e-8)`, `G[:, i] /= c_i`, `H[i, :] *= c_i` (F·Gᵀ unchanged);
//! 4. Ding–Li–Jordan: with `P = X·Hᵀ = AᵀF`, `Q = H·Hᵀ = FᵀF`,
//!    `G ← G ⊙ sqrt((P⁺ + G·Q⁻) / (P⁻ + G·Q⁺ + 1e-6))`;
//! 5. loss `‖A‖² − 2·Σ P⊙G + Σ Q⊙GᵀG` without forming F·Gᵀ, its row sums added up in f64; the best
//!    (F, G) so far is kept (handles, not copies: tensors are immutable) and returned at the end, or
//!    as soon as the user asks the run to stop.

use std::rc::Rc;

use loupe_plugin_api::prelude::*;

use crate::init::{Init, initial_g};

pub struct FitConfig {
    pub rank: usize,
    pub pct_keep: f64,
    pub max_iter: u64,
    pub patience: u64,
    pub tol: f64,
    pub reg: f64,
    pub init: Init,
    pub seed: u64,
    pub log_every: u64,
    /// Save every intermediate of the first this-many iterations.
    pub dump_steps: u64,
    /// Prefix of metric names (`{label}fit/loss`) and of dumped files (`{label}steps/1.safetensors`):
    /// `layer0/`, `layer0/r100/`, or empty for a single cached matrix.
    pub label: String,
}

/// A fitted factorization: `H = Fᵀ` `[k, d]` and `G` `[n, k]`.
pub struct Factors {
    pub h: Rc<Tensor>,
    pub g: Rc<Tensor>,
}

pub struct FitResult {
    pub factors: Factors,
    pub iterations: u64,
    /// 1-based iteration whose factors are returned.
    pub best_iteration: u64,
    pub best_loss: f64,
    pub last_loss: f64,
    /// `‖A‖²`, to turn losses into relative errors.
    pub norm_sq: f64,
    /// Non-zero neurons per feature (winner-take-all keeps at least `m`).
    pub kept_per_feature: usize,
    pub stopped_early: bool,
    /// The user asked the run to stop: the best factors so far are returned before `max_iter` or
    /// the patience ran out.
    pub interrupted: bool,
}

/// Neurons each feature keeps: `max(1, ⌈pct_keep · d⌉)`.
pub fn kept_neurons(pct_keep: f64, d: usize) -> usize {
    ((pct_keep * d as f64).ceil() as usize).clamp(1, d)
}

/// Σ of all entries, each row summed on the host and the row sums added in f64.
fn sum_f64(t: &Tensor) -> Result<f64> {
    let rows = if t.shape().len() > 1 {
        t.sum(-1, false)?.to_vec_f32()?
    } else {
        t.to_vec_f32()?
    };
    Ok(rows.iter().map(|&v| v as f64).sum())
}

/// `‖X‖²_F`, accumulated in f64 over rows.
pub fn frobenius_sq(x: &Tensor) -> Result<f64> {
    sum_f64(&x.mul(x)?)
}

/// Each row of `h` with every entry whose magnitude is below its row's m-th largest set to zero (ties
/// at the threshold are kept, so at least `m` survive).
pub fn winner_take_all(h: &Tensor, m: usize) -> Result<Tensor> {
    let magnitude = h.abs()?;
    let (top, _) = magnitude.top_k(m)?;
    let threshold = top.slice(1, m - 1, m)?;
    magnitude.lt(&threshold)?.select(&Tensor::scalar(0.0)?, h)
}

/// One iteration's results; the intermediates are kept only for dumps.
struct Step {
    h_ls: Tensor,
    h_wta: Tensor,
    g_scaled: Tensor,
    h: Tensor,
    g: Tensor,
    /// `GᵀG` of the new G: the loss needs it, and so does the next iteration's F update.
    gtg: Tensor,
    loss: f64,
}

struct Problem<'a> {
    x: &'a Tensor,
    norm_sq: f64,
    ridge: Tensor,
    m: usize,
}

impl Problem<'_> {
    fn step(&self, g: &Tensor, gtg: &Tensor) -> Result<Step> {
        let k = g.shape()[1];
        // 1. F given G: (GᵀG + reg·I)·Fᵀ = GᵀX.
        let h_ls = Tensor::solve_spd(&gtg.add(&self.ridge)?, &g.matmul_t(self.x, true, false)?)?;
        // 2. Winner-take-all on each feature's neurons.
        let h_wta = winner_take_all(&h_ls, self.m)?;
        // 3. Feature magnitude moves from G into F.
        let c = g.l2_norm(0, false)?.clamp(1e-8, f32::MAX)?;
        let g_scaled = g.div(&c)?;
        let h = h_wta.mul(&c.reshape(&[k, 1])?)?;
        // 4. Multiplicative update of G for the sparse F.
        let p = self.x.matmul_t(&h, false, true)?;
        let q = h.matmul_t(&h, false, true)?;
        let (p_plus, p_minus) = (p.relu()?, p.neg()?.relu()?);
        let (q_plus, q_minus) = (q.relu()?, q.neg()?.relu()?);
        let numerator = p_plus.add(&g_scaled.matmul(&q_minus)?)?;
        let denominator = p_minus.add(&g_scaled.matmul(&q_plus)?)?.affine(1.0, 1e-6)?;
        let g_new = g_scaled.mul(&numerator.div(&denominator)?.sqrt()?)?;
        // 5. ‖A − F·Gᵀ‖² = ‖A‖² − 2·Σ P⊙G + Σ (FᵀF)⊙(GᵀG).
        let gtg_new = g_new.matmul_t(&g_new, true, false)?;
        let loss = self.norm_sq - 2.0 * sum_f64(&p.mul(&g_new)?)? + sum_f64(&q.mul(&gtg_new)?)?;
        Ok(Step {
            h_ls,
            h_wta,
            g_scaled,
            h,
            g: g_new,
            gtg: gtg_new,
            loss,
        })
    }
}

/// Fits `X ≈ G·H` (i.e. `A = Xᵀ ≈ F·Gᵀ`) for `x` `[n, d]`.
pub fn fit(x: &Tensor, cfg: &FitConfig) -> Result<FitResult> {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let k = cfg.rank;
    if k > n.min(d) {
        return Err(Error::invalid(
            "snmf",
            format!(
                "rank {k} is more than the matrix allows ({n} tokens × {d} neurons); lower rank or collect more tokens"
            ),
        ));
    }
    let mut eye = vec![0.0f32; k * k];
    for i in 0..k {
        eye[i * k + i] = cfg.reg as f32;
    }
    let problem = Problem {
        x,
        norm_sq: frobenius_sq(x)?,
        ridge: Tensor::from_f32(&eye, &[k, k])?,
        m: kept_neurons(cfg.pct_keep, d),
    };

    let mut g = Rc::new(initial_g(x, k, &cfg.init, cfg.seed)?);
    let mut gtg = g.matmul_t(&g, true, false)?;
    let mut best: Option<Factors> = None;
    let (mut best_loss, mut best_iteration, mut last_loss) = (f64::INFINITY, 0, f64::NAN);
    let mut since_best = 0;
    let mut iterations = 0;
    let mut interrupted = false;
    for t in 1..=cfg.max_iter {
        let step = problem.step(&g, &gtg)?;
        if t <= cfg.dump_steps {
            report::save_tensors(
                &format!("{}steps/{t}.safetensors", cfg.label),
                &[
                    ("G_in", &*g),
                    ("H_ls", &step.h_ls),
                    ("H_wta", &step.h_wta),
                    ("G_scaled", &step.g_scaled),
                    ("H", &step.h),
                    ("G", &step.g),
                ],
            )?;
        }
        iterations = t;
        last_loss = step.loss;
        if !step.loss.is_finite() {
            return Err(Error::other(
                "snmf",
                format!(
                    "the loss became {} at iteration {t}; the activations may hold NaN or infinite values",
                    step.loss
                ),
            ));
        }
        let h = Rc::new(step.h);
        g = Rc::new(step.g);
        gtg = step.gtg;
        if step.loss < best_loss - cfg.tol {
            best_loss = step.loss;
            best_iteration = t;
            best = Some(Factors {
                h: Rc::clone(&h),
                g: Rc::clone(&g),
            });
            since_best = 0;
        } else {
            since_best += 1;
        }
        if t % cfg.log_every == 0 || t == 1 {
            report::metric(&format!("{}fit/loss", cfg.label), t, step.loss);
            report::metric(
                &format!("{}fit/relative_error", cfg.label),
                t,
                step.loss / problem.norm_sq,
            );
        }
        // About a hundred progress updates per fit, however long.
        if t % cfg.max_iter.div_ceil(100) == 0 || t == cfg.max_iter {
            report::progress(&format!("{}fit", cfg.label), t, cfg.max_iter);
        }
        if since_best >= cfg.patience {
            break;
        }
        // Checked after the best is updated, so the iterate returned is the best one computed.
        if runtime::stop_requested() {
            interrupted = true;
            break;
        }
    }
    let factors = best.expect("the first iteration's finite loss always improves on infinity");
    Ok(FitResult {
        factors,
        iterations,
        best_iteration,
        best_loss,
        last_loss,
        norm_sq: problem.norm_sq,
        kept_per_feature: problem.m,
        stopped_early: iterations < cfg.max_iter,
        interrupted,
    })
}
