//! One SAE being trained: the forward pass, the hand-derived backward pass, Adam, dead-latent tracking,
//! and the fold into a saved SAE. Every tensor lives on the host; each line below is a host op.
//!
//! Conventions (SAELens v6 unless noted): free decoder norms with the L1 penalty weighted by them;
//! TopK/BatchTopK rank `ReLU(h)·‖W_dec,i‖` and decode `f/‖W_dec,i‖` (a unit-norm decoder in effect);
//! the dead-latent auxiliary loss in OpenAI's form (top `aux_k` dead pre-activations decode, without
//! `b_dec`, the detached residual; normalised MSE); JumpReLU's straight-through estimator with a
//! rectangle kernel of bandwidth ε on `θ = exp(t)`.

use loupe_plugin_api::prelude::*;

use crate::arch::{Activation, Architecture, Sae};
use crate::metrics::accumulate;
use crate::params::JumpReluLoss;
use crate::schedule::{LrSchedule, warmed_up};

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub architecture: Architecture,
    pub d_in: usize,
    pub d_sae: usize,
    pub k: usize,
    pub rescale: bool,
    pub l1_coefficient: f64,
    pub l0_coefficient: f64,
    pub sparsity_warm_up: u64,
    /// standard, jumprelu: the L0 the sparsity coefficient is steered towards.
    pub target_l0: Option<f64>,
    pub jumprelu_loss: JumpReluLoss,
    pub tanh_scale: f64,
    pub bandwidth: f64,
    pub init_threshold: f64,
    /// JumpReLU: the learning rate of `log θ` relative to the weights'.
    pub threshold_lr_scale: f64,
    pub threshold_lr: f64,
    pub aux_k: usize,
    pub aux_coefficient: f64,
    pub dead_window: u64,
    pub grad_clip: f64,
    /// Save the first step's batch, parameters and gradients (a check against autodiff).
    pub save_first_gradients: bool,
    pub beta1: f64,
    pub beta2: f64,
    pub lr: LrSchedule,
    pub decoder_init_norm: f64,
}

/// A trained tensor and its Adam moments.
struct Param {
    value: Tensor,
    m: Tensor,
    v: Tensor,
}

impl Param {
    fn new(value: Tensor) -> Result<Self> {
        let shape = value.shape();
        Ok(Param {
            value,
            m: Tensor::zeros(&shape)?,
            v: Tensor::zeros(&shape)?,
        })
    }

    fn update(&mut self, grad: &Tensor, config: AdamConfig, step: u64) -> Result<()> {
        let (value, m, v) = Tensor::adam_step(&self.value, grad, &self.m, &self.v, config, step)?;
        (self.value, self.m, self.v) = (value, m, v);
        Ok(())
    }
}

/// What one step measured (on the normalised activations it trained on).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    pub loss: f64,
    pub mse: f64,
    pub sparsity_loss: f64,
    pub aux_loss: f64,
    pub l0: f64,
    pub fvu: f64,
    pub dead: usize,
    pub lr: f64,
    /// On logged steps: the shape of the reconstruction.
    pub detail: Option<ReconShape>,
}

/// Mean cosine of `x` and `x̂`, mean `‖x̂‖/‖x‖`, and `E‖x̂‖² / E⟨x, x̂⟩` (1: no shrinkage).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReconShape {
    pub cosine: f64,
    pub l2_ratio: f64,
    pub relative_reconstruction_bias: f64,
}

pub struct Trainer {
    cfg: TrainConfig,
    w_enc: Param,
    b_enc: Param,
    w_dec: Param,
    b_dec: Param,
    /// JumpReLU: `t = log θ`.
    log_threshold: Option<Param>,
    /// Steps since each latent last fired `[d_sae]`.
    since_fired: Tensor,
    /// BatchTopK: the moving average of the smallest kept activation.
    batch_threshold: Option<f64>,
    /// Firings per latent since `take_window_frequencies` last ran, and the rows they cover.
    window_fires: Option<Tensor>,
    window_rows: u64,
    step: u64,
    /// standard, jumprelu with a target L0: the sparsity coefficient now.
    coefficient: f64,
}

/// What a forward and backward pass gives: the gradients (w_enc, b_enc, w_dec, b_dec[, log θ]),
/// how often each latent fired `[d_sae]`, and the step's figures.
struct Pass {
    grads: Vec<Tensor>,
    fired: Tensor,
    stats: StepStats,
}

/// A reconstruction of a batch: its error `x̂ − x` and the sums its figures need.
struct Fit {
    error: Tensor,
    sse: f64,
    total_variance: f64,
    shape: Option<ReconShape>,
}

impl Fit {
    fn of(x: &Tensor, x_hat: &Tensor, detail: bool) -> Result<Self> {
        let error = x_hat.sub(x)?;
        let sse = error.mul(&error)?.sum_all()? as f64;
        // The batch's variance only feeds the FVU of logged steps.
        let total_variance = if detail {
            let centred = x.sub(&x.mean(0, true)?)?;
            centred.mul(&centred)?.sum_all()? as f64
        } else {
            f64::NAN
        };
        let shape = if detail {
            let rows = x.shape()[0] as f64;
            let tiny = Tensor::scalar(1e-12)?;
            let (x_norm, x_hat_norm) = (x.l2_norm(1, false)?, x_hat.l2_norm(1, false)?);
            let dot = x.mul(x_hat)?.sum(1, false)?;
            let cosine = dot.div(&x_norm.mul(&x_hat_norm)?.maximum(&tiny)?)?;
            let ratio = x_hat_norm.div(&x_norm.maximum(&tiny)?)?;
            Some(ReconShape {
                cosine: cosine.sum_all()? as f64 / rows,
                l2_ratio: ratio.sum_all()? as f64 / rows,
                relative_reconstruction_bias: x_hat.mul(x_hat)?.sum_all()? as f64
                    / dot.sum_all()? as f64,
            })
        } else {
            None
        };
        Ok(Fit {
            error,
            sse,
            total_variance,
            shape,
        })
    }

    /// OpenAI's auxiliary loss for a decode `aux` (without `b_dec`) of the dead latents: the normalised
    /// MSE against the detached residual `x − x̂`, weighted; and its gradient with respect to `aux`.
    fn aux(&self, aux: &Tensor, cfg: &TrainConfig) -> Result<(f64, Tensor)> {
        let residual = self.error.neg()?;
        let spread = residual.sub(&residual.mean(0, true)?)?;
        let denominator = (spread.mul(&spread)?.sum_all()? as f64).max(1e-12);
        let miss = aux.sub(&residual)?;
        let loss = cfg.aux_coefficient * miss.mul(&miss)?.sum_all()? as f64 / denominator;
        let grad = miss.affine((2.0 * cfg.aux_coefficient / denominator) as f32, 0.0)?;
        Ok((loss, grad))
    }

    fn stats(&self, rows: f64, l0: f64, sparsity_loss: f64, aux_loss: f64) -> StepStats {
        let mse = self.sse / rows;
        StepStats {
            loss: mse + sparsity_loss + aux_loss,
            mse,
            sparsity_loss,
            aux_loss,
            l0,
            // NaN on steps not measured in detail.
            fvu: if self.total_variance > 0.0 {
                self.sse / self.total_variance
            } else {
                f64::NAN
            },
            dead: 0,
            lr: 0.0,
            detail: self.shape,
        }
    }
}

fn scalar(v: f64) -> Result<Tensor> {
    Tensor::scalar(v as f32)
}

impl Trainer {
    /// SAELens v6's initialisation: decoder rows of norm `decoder_init_norm` in random directions,
    /// `W_enc = W_decᵀ`, `b_enc = 0`; `b_dec` as given.
    pub fn new(cfg: TrainConfig, b_dec: Tensor, seed: u64) -> Result<Self> {
        let (d, m) = (cfg.d_in, cfg.d_sae);
        let raw = Tensor::rand_uniform(&[m, d], -1.0, 1.0, seed)?;
        let w_dec = raw
            .div(&raw.l2_norm(1, true)?)?
            .affine(cfg.decoder_init_norm as f32, 0.0)?;
        let w_enc = w_dec.transpose(0, 1)?;
        let log_threshold = match cfg.architecture {
            Architecture::JumpRelu => Some(Param::new(Tensor::full(
                &[m],
                cfg.init_threshold.ln() as f32,
            )?)?),
            _ => None,
        };
        Ok(Trainer {
            w_enc: Param::new(w_enc)?,
            b_enc: Param::new(Tensor::zeros(&[m])?)?,
            w_dec: Param::new(w_dec)?,
            b_dec: Param::new(b_dec)?,
            log_threshold,
            since_fired: Tensor::zeros(&[m])?,
            batch_threshold: None,
            window_fires: None,
            window_rows: 0,
            step: 0,
            coefficient: match cfg.architecture {
                Architecture::JumpRelu => cfg.l0_coefficient,
                _ => cfg.l1_coefficient,
            },
            cfg,
        })
    }

    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The sparsity coefficient this step: steered towards the target L0, else the configured one
    /// warmed up.
    fn sparsity_coefficient(&self, fixed: f64) -> f64 {
        match self.cfg.target_l0 {
            Some(_) => self.coefficient,
            None => warmed_up(fixed, self.cfg.sparsity_warm_up, self.step),
        }
    }

    /// The sparsity coefficient at the end of training (standard, jumprelu).
    pub fn final_coefficient(&self) -> Option<f64> {
        match self.cfg.architecture {
            Architecture::Standard | Architecture::JumpRelu => Some(self.coefficient),
            _ => None,
        }
    }

    /// Steers the coefficient towards the target L0 from the step's L0: multiplicative, at most
    /// e^±RATE a step, so it can span orders of magnitude in a few hundred steps yet not jump past
    /// the target (L0 lags the coefficient by the steps the weights take to follow).
    fn steer(&mut self, l0: f64) {
        const RATE: f64 = 0.01;
        if let Some(target) = self.cfg.target_l0 {
            let miss = (l0.max(1e-3) / target).ln().clamp(-1.0, 1.0);
            self.coefficient = (self.coefficient.max(1e-6) * (RATE * miss).exp()).min(1e6);
        }
    }

    /// Latents that have not fired for `dead_window` steps, as a 0/1 mask `[d_sae]`.
    fn dead_mask(&self) -> Result<Tensor> {
        self.since_fired
            .gt(&scalar(self.cfg.dead_window as f64 - 0.5)?)
    }

    /// Each latent's firing frequency since the last call (`None` before any step).
    pub fn take_window_frequencies(&mut self) -> Result<Option<Vec<f32>>> {
        let Some(fires) = self.window_fires.take() else {
            return Ok(None);
        };
        let rows = std::mem::take(&mut self.window_rows) as f32;
        Ok(Some(fires.affine(1.0 / rows, 0.0)?.to_vec_f32()?))
    }

    /// One optimiser step on `x` `[batch, d_in]`; `detail` also measures the reconstruction's shape.
    pub fn step(&mut self, x: &Tensor, detail: bool) -> Result<StepStats> {
        self.step += 1;
        let dead = self.dead_mask()?;
        let n_dead = dead.sum_all()? as usize;
        let pass = match self.cfg.architecture {
            Architecture::TopK => self.topk_pass(x, &dead, n_dead, detail)?,
            _ => self.dense_pass(x, &dead, n_dead, detail)?,
        };
        if self.step == 1 && self.cfg.save_first_gradients {
            self.save_gradients(x, &pass.grads)?;
        }
        self.apply(pass.grads)?;
        self.steer(pass.stats.l0);
        // The dead-latent clock: reset where a latent fired, else one more step.
        let fired = pass.fired.gt(&Tensor::scalar(0.0)?)?;
        self.window_rows += x.shape()[0] as u64;
        accumulate(&mut self.window_fires, pass.fired)?;
        self.since_fired = self
            .since_fired
            .affine(1.0, 1.0)?
            .mul(&fired.affine(-1.0, 1.0)?)?;
        Ok(StepStats {
            dead: n_dead,
            lr: self.cfg.lr.at(self.step),
            ..pass.stats
        })
    }

    /// Writes `x`, the parameters, the step's sparsity coefficient and the hand-derived gradients
    /// (before clipping) to `first_step_gradients.safetensors`, for a check against autodiff.
    fn save_gradients(&self, x: &Tensor, grads: &[Tensor]) -> Result<()> {
        let fixed = match self.cfg.architecture {
            Architecture::JumpRelu => self.cfg.l0_coefficient,
            _ => self.cfg.l1_coefficient,
        };
        let coefficient = Tensor::full(&[1], self.sparsity_coefficient(fixed) as f32)?;
        let names = ["w_enc", "b_enc", "w_dec", "b_dec", "log_threshold"];
        let grad_names: Vec<String> = names.iter().map(|n| format!("grad.{n}")).collect();
        let mut tensors: Vec<(&str, &Tensor)> = vec![
            ("x", x),
            ("coefficient", &coefficient),
            ("w_enc", &self.w_enc.value),
            ("b_enc", &self.b_enc.value),
            ("w_dec", &self.w_dec.value),
            ("b_dec", &self.b_dec.value),
        ];
        if let Some(t) = &self.log_threshold {
            tensors.push(("log_threshold", &t.value));
        }
        tensors.extend(grad_names.iter().map(String::as_str).zip(grads));
        loupe_plugin_api::report::save_tensors("first_step_gradients.safetensors", &tensors)
    }

    /// Clips the gradients to the global norm and takes an Adam step on every parameter.
    fn apply(&mut self, mut grads: Vec<Tensor>) -> Result<()> {
        let cfg = &self.cfg;
        if cfg.grad_clip > 0.0 {
            let mut total = 0.0f64;
            for g in &grads {
                total += g.mul(g)?.sum_all()? as f64;
            }
            let norm = total.sqrt();
            if norm > cfg.grad_clip {
                let factor = (cfg.grad_clip / norm) as f32;
                grads = grads
                    .iter()
                    .map(|g| g.affine(factor, 0.0))
                    .collect::<Result<_>>()?;
            }
        }
        let adam = AdamConfig {
            lr: cfg.lr.at(self.step) as f32,
            beta1: cfg.beta1 as f32,
            beta2: cfg.beta2 as f32,
            eps: 1e-8,
        };
        let step = self.step;
        let mut grads = grads.into_iter();
        for param in [
            &mut self.w_enc,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
        ] {
            param.update(
                &grads.next().expect("one gradient per parameter"),
                adam,
                step,
            )?;
        }
        if let (Some(param), Some(g)) = (self.log_threshold.as_mut(), grads.next()) {
            // `log θ` must travel distances of order 1 (θ from 0.01 to the data's scale) in a few
            // hundred steps, where the weights move by about `lr` per step.
            let adam = AdamConfig {
                lr: adam.lr * self.cfg.threshold_lr_scale as f32,
                ..adam
            };
            param.update(&g, adam, step)?;
        }
        Ok(())
    }

    /// TopK with sparse codes: only the encoder product is dense; decoding and every gradient but the
    /// encoder's input go through the `k` chosen latents per row (`sparse_matmul`, `gather_dot`,
    /// `scatter_outer`), O(n·k·d) instead of O(n·m·d).
    fn topk_pass(&self, x: &Tensor, dead: &Tensor, n_dead: usize, detail: bool) -> Result<Pass> {
        let cfg = &self.cfg;
        let (rows, m) = (x.shape()[0], cfg.d_sae);
        let b = rows as f64;
        let zero = Tensor::scalar(0.0)?;
        let ones = Tensor::ones(&[rows, 1])?;
        let w_dec = &self.w_dec.value;

        let xc = x.sub(&self.b_dec.value)?;
        let h = xc.linear(&self.w_enc.value, Some(&self.b_enc.value))?;
        let norms = w_dec.l2_norm(1, false)?;
        let ranked = if cfg.rescale {
            h.relu()?.mul(&norms)?
        } else {
            h.relu()?
        };
        // The decoder's coefficients at chosen latents: ranked / ‖W_dec,i‖ = h with the rescale trick.
        let codes = |values: &Tensor, indices: &Tensor| -> Result<Tensor> {
            if cfg.rescale {
                let at = norms
                    .index_select(0, &indices.reshape(&[indices.numel()])?)?
                    .reshape(&indices.shape())?;
                values.div(&at)
            } else {
                // A copy, so both branches give an owned tensor (k values per row: cheap).
                values.affine(1.0, 0.0)
            }
        };
        let (values, indices) = ranked.top_k(cfg.k.min(m))?;
        let active = values.gt(&zero)?;
        let u = codes(&values, &indices)?;
        let x_hat = Tensor::sparse_matmul(&u, &indices, w_dec)?.add(&self.b_dec.value)?;
        let fit = Fit::of(x, &x_hat, detail)?;
        let fired = Tensor::scatter_outer(&active, &indices, &ones, m)?.reshape(&[m])?;
        let l0 = active.sum_all()? as f64 / b;

        let g = fit.error.affine((2.0 / b) as f32, 0.0)?;
        let mut grad_w_dec = Tensor::scatter_outer(&u, &indices, &g, m)?;
        let grad_u = Tensor::gather_dot(&g, &indices, w_dec)?.mul(&active)?;
        // (coefficient gradients, their latents) feeding the encoder.
        let mut to_encoder = vec![(grad_u, indices)];

        let mut aux_loss = 0.0;
        if cfg.aux_coefficient > 0.0 && n_dead > 0 {
            // The dead latents' largest pre-activations, negative ones included: a latent dead
            // because its pre-activation is negative on every row still gets a gradient this way,
            // where ReLU'd candidates (zero there) would leave it dead for good.
            let raw = if cfg.rescale {
                h.mul(&norms)?
            } else {
                h.affine(1.0, 0.0)?
            };
            let (aux_values, aux_indices) = dead
                .select(&raw, &scalar(-1e30)?)?
                .top_k(cfg.aux_k.min(n_dead))?;
            let chosen = Tensor::ones(&aux_values.shape())?;
            let z = codes(&aux_values, &aux_indices)?;
            let (loss, g_aux) = fit.aux(&Tensor::sparse_matmul(&z, &aux_indices, w_dec)?, cfg)?;
            aux_loss = loss;
            grad_w_dec = grad_w_dec.add(&Tensor::scatter_outer(&z, &aux_indices, &g_aux, m)?)?;
            let grad_z = Tensor::gather_dot(&g_aux, &aux_indices, w_dec)?.mul(&chosen)?;
            to_encoder.push((grad_z, aux_indices));
        }

        let mut grad_w_enc_t: Option<Tensor> = None;
        let mut grad_b_enc: Option<Tensor> = None;
        for (grad, latents) in &to_encoder {
            accumulate(
                &mut grad_w_enc_t,
                Tensor::scatter_outer(grad, latents, &xc, m)?,
            )?;
            accumulate(
                &mut grad_b_enc,
                Tensor::scatter_outer(grad, latents, &ones, m)?.reshape(&[m])?,
            )?;
        }
        let grad_w_enc = grad_w_enc_t.expect("the main codes").transpose(0, 1)?;
        let grad_b_enc = grad_b_enc.expect("the main codes");
        let grad_b_dec = self.b_dec_gradient(&g, &grad_b_enc)?;
        Ok(Pass {
            grads: vec![grad_w_enc, grad_b_enc, grad_w_dec, grad_b_dec],
            fired,
            stats: fit.stats(b, l0, 0.0, aux_loss),
        })
    }

    /// `b_dec`'s gradient: the decoder's bias term, less what flows back through `x − b_dec` into the
    /// encoder, `(Σ_rows ∂h) W_encᵀ`.
    fn b_dec_gradient(&self, g: &Tensor, grad_b_enc: &Tensor) -> Result<Tensor> {
        let (d, m) = (self.cfg.d_in, self.cfg.d_sae);
        let through_encoder = grad_b_enc
            .reshape(&[1, m])?
            .matmul_t(&self.w_enc.value, false, true)?
            .reshape(&[d])?;
        g.sum(0, false)?.sub(&through_encoder)
    }

    /// Standard, BatchTopK and JumpReLU: dense `[n, m]` codes.
    fn dense_pass(
        &mut self,
        x: &Tensor,
        dead: &Tensor,
        n_dead: usize,
        detail: bool,
    ) -> Result<Pass> {
        let cfg = self.cfg.clone();
        let rows = x.shape()[0];
        let b = rows as f64;
        let zero = Tensor::scalar(0.0)?;

        // ---- forward ----
        let xc = x.sub(&self.b_dec.value)?;
        let h = xc.linear(&self.w_enc.value, Some(&self.b_enc.value))?;
        let norms = self.w_dec.value.l2_norm(1, false)?;
        let ranked = || -> Result<Tensor> {
            if cfg.rescale {
                h.relu()?.mul(&norms)
            } else {
                h.relu()
            }
        };
        let threshold = match &self.log_threshold {
            Some(t) => Some(t.value.exp()?),
            None => None,
        };
        // `active`: which latents fire (0/1); `u`: the coefficients the decoder multiplies.
        let active = match cfg.architecture {
            Architecture::Standard => h.gt(&zero)?,
            Architecture::TopK => unreachable!("TopK trains with sparse codes (topk_pass)"),
            Architecture::BatchTopK => {
                let a = ranked()?;
                let kept = a
                    .reshape(&[1, rows * cfg.d_sae])?
                    .keep_top_k((cfg.k * rows).min(rows * cfg.d_sae))?
                    .reshape(&[rows, cfg.d_sae])?;
                let active = kept.gt(&zero)?;
                // The smallest kept activation, tracked for the JumpReLU threshold saved at the end.
                let smallest = active
                    .select(&kept, &scalar(f64::from(f32::MAX))?)?
                    .reshape(&[rows * cfg.d_sae])?
                    .min(0, false)?
                    .item()? as f64;
                if smallest < f64::from(f32::MAX) {
                    self.batch_threshold = Some(match self.batch_threshold {
                        None => smallest,
                        Some(t) => (1.0 - cfg.threshold_lr) * t + cfg.threshold_lr * smallest,
                    });
                }
                active
            }
            Architecture::JumpRelu => h.gt(threshold.as_ref().expect("jumprelu threshold"))?,
        };
        let u = h.mul(&active)?;
        let x_hat = u.linear(&self.w_dec.value, Some(&self.b_dec.value))?;
        let fit = Fit::of(x, &x_hat, detail)?;
        let fired = active.sum(0, false)?;
        let l0 = fired.sum_all()? as f64 / b;

        // ---- backward: reconstruction ----
        let g = fit.error.affine((2.0 / b) as f32, 0.0)?;
        let mut grad_w_dec = u.matmul_t(&g, true, false)?;
        let mut grad_f = g.matmul_t(&self.w_dec.value, false, true)?;
        let mut grad_log_threshold = None;
        let mut sparsity_loss = 0.0;
        // Adds `coef_i · W_dec,i / ‖W_dec,i‖` to the decoder gradient: d‖W_dec,i‖/dW_dec,i.
        let through_norms = |grad: Tensor, coef: &Tensor| -> Result<Tensor> {
            let per_row = coef.div(&norms)?.reshape(&[cfg.d_sae, 1])?;
            grad.add(&self.w_dec.value.mul(&per_row)?)
        };

        // ---- backward: sparsity ----
        match cfg.architecture {
            Architecture::Standard => {
                let lambda = self.sparsity_coefficient(cfg.l1_coefficient) / b;
                let f_sum = u.sum(0, false)?;
                sparsity_loss = lambda * f_sum.mul(&norms)?.sum_all()? as f64;
                grad_f = grad_f.add(&norms.affine(lambda as f32, 0.0)?)?;
                grad_w_dec = through_norms(grad_w_dec, &f_sum.affine(lambda as f32, 0.0)?)?;
            }
            Architecture::JumpRelu => {
                let theta = threshold.as_ref().expect("jumprelu threshold");
                let lambda = self.sparsity_coefficient(cfg.l0_coefficient) / b;
                let eps = cfg.bandwidth;
                let near = h.sub(theta)?.abs()?.lt(&scalar(eps / 2.0)?)?;
                let mut pull = grad_f.mul(theta)?;
                match cfg.jumprelu_loss {
                    JumpReluLoss::Step => {
                        sparsity_loss = lambda * l0 * b;
                        // d/dθ of the step: −(1/ε)·K((h−θ)/ε), for every token.
                        pull = pull.affine(1.0, lambda as f32)?;
                    }
                    JumpReluLoss::Tanh => {
                        let c = cfg.tanh_scale as f32;
                        let t = u.mul(&norms)?.affine(c, 0.0)?.tanh()?;
                        sparsity_loss = lambda * t.sum_all()? as f64;
                        // d/dz tanh(c z) = c(1 − tanh²), with z = f·‖W_dec‖.
                        let slope = t.mul(&t)?.affine(-(lambda as f32) * c, lambda as f32 * c)?;
                        let extra = slope.mul(&norms)?;
                        let norm_coef = slope.mul(&u)?.sum(0, false)?;
                        grad_w_dec = through_norms(grad_w_dec, &norm_coef)?;
                        grad_f = grad_f.add(&extra)?;
                        pull = grad_f.mul(theta)?;
                    }
                }
                let grad_theta = near
                    .mul(&pull)?
                    .sum(0, false)?
                    .affine(-(1.0 / eps) as f32, 0.0)?;
                grad_log_threshold = Some(grad_theta.mul(theta)?);
            }
            Architecture::TopK | Architecture::BatchTopK => {}
        }
        let mut grad_h = grad_f.mul(&active)?;

        // ---- backward: dead latents (BatchTopK) ----
        let mut aux_loss = 0.0;
        if cfg.architecture == Architecture::BatchTopK && cfg.aux_coefficient > 0.0 && n_dead > 0 {
            let candidates = ranked()?.mul(dead)?;
            let chosen = candidates.keep_top_k(cfg.aux_k.min(n_dead))?.gt(&zero)?;
            let z = h.mul(&chosen)?;
            let (loss, g_aux) = fit.aux(&z.matmul(&self.w_dec.value)?, &cfg)?;
            aux_loss = loss;
            grad_w_dec = grad_w_dec.add(&z.matmul_t(&g_aux, true, false)?)?;
            grad_h = grad_h.add(
                &g_aux
                    .matmul_t(&self.w_dec.value, false, true)?
                    .mul(&chosen)?,
            )?;
        }

        // ---- backward: encoder ----
        let grad_w_enc = xc.matmul_t(&grad_h, true, false)?;
        let grad_b_enc = grad_h.sum(0, false)?;
        let grad_b_dec = self.b_dec_gradient(&g, &grad_b_enc)?;
        let mut grads = vec![grad_w_enc, grad_b_enc, grad_w_dec, grad_b_dec];
        if let Some(g) = grad_log_threshold {
            grads.push(g);
        }
        Ok(Pass {
            grads,
            fired,
            stats: fit.stats(b, l0, sparsity_loss, aux_loss),
        })
    }

    /// The inference SAE, in the units of the raw activations: decoder norms folded into the encoder
    /// where that preserves the function, then the input scale `scale` (training saw `scale · x`).
    pub fn to_sae(&self, scale: f64) -> Result<Sae> {
        let cfg = &self.cfg;
        let fold = match cfg.architecture {
            Architecture::Standard | Architecture::JumpRelu => true,
            Architecture::TopK | Architecture::BatchTopK => cfg.rescale,
        };
        let ones = Tensor::ones(&[cfg.d_sae])?;
        let norms = if fold {
            self.w_dec.value.l2_norm(1, false)?
        } else {
            ones
        };
        let s = scale as f32;
        let w_dec = self
            .w_dec
            .value
            .div(&norms.reshape(&[cfg.d_sae, 1])?)?
            .affine(1.0 / s, 0.0)?;
        let w_enc = self.w_enc.value.mul(&norms)?.affine(s, 0.0)?;
        let b_enc = self.b_enc.value.mul(&norms)?;
        let b_dec = self.b_dec.value.affine(1.0 / s, 0.0)?;
        let activation = match cfg.architecture {
            Architecture::Standard => Activation::Standard,
            Architecture::TopK => Activation::TopK {
                k: cfg.k,
                rescale: false,
            },
            Architecture::BatchTopK => Activation::JumpRelu {
                threshold: Tensor::full(&[cfg.d_sae], self.batch_threshold.unwrap_or(0.0) as f32)?,
            },
            Architecture::JumpRelu => Activation::JumpRelu {
                threshold: self
                    .log_threshold
                    .as_ref()
                    .expect("jumprelu threshold")
                    .value
                    .exp()?
                    .mul(&norms)?,
            },
        };
        Ok(Sae {
            activation,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            apply_b_dec_to_input: true,
        })
    }

    /// BatchTopK's threshold so far.
    pub fn batch_threshold(&self) -> Option<f64> {
        self.batch_threshold
    }

    /// Everything training needs to go on from here, as named tensors and scalars: the parameters
    /// and their Adam moments, steps since each latent fired, the step count, the sparsity coefficient
    /// and BatchTopK's threshold. The window of firings for the dense-latent metric starts afresh.
    pub fn snapshot(&self) -> (Vec<(String, &Tensor)>, TrainerScalars) {
        let mut tensors = Vec::new();
        for (name, param) in self.params() {
            tensors.push((name.to_string(), &param.value));
            tensors.push((format!("{name}.adam_m"), &param.m));
            tensors.push((format!("{name}.adam_v"), &param.v));
        }
        tensors.push(("steps_since_fired".to_string(), &self.since_fired));
        let scalars = TrainerScalars {
            step: self.step,
            coefficient: self.coefficient,
            batch_threshold: self.batch_threshold,
        };
        (tensors, scalars)
    }

    /// A trainer for `cfg` in the state [`snapshot`](Self::snapshot) recorded. Every tensor must be
    /// there with the shape `cfg` gives it; `what` names the checkpoint in errors.
    pub fn restore(
        cfg: TrainConfig,
        mut tensors: Vec<(String, Tensor)>,
        scalars: TrainerScalars,
        what: &str,
    ) -> Result<Self> {
        let (d, m) = (cfg.d_in, cfg.d_sae);
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let at = tensors.iter().position(|(n, _)| n == name).ok_or_else(|| {
                Error::invalid(
                    "sae.resume",
                    format!("{what} has no tensor `{name}`; it is not a checkpoint of this SAE"),
                )
            })?;
            let (_, t) = tensors.swap_remove(at);
            if t.shape() != shape {
                return Err(Error::invalid(
                    "sae.resume",
                    format!(
                        "{what}: `{name}` has shape {:?}, but this run's SAE needs {shape:?} (d_in {d}, d_sae {m}): resume with the settings of the run it continues",
                        t.shape()
                    ),
                ));
            }
            Ok(t)
        };
        let mut param = |name: &str, shape: &[usize]| -> Result<Param> {
            Ok(Param {
                value: take(name, shape)?,
                m: take(&format!("{name}.adam_m"), shape)?,
                v: take(&format!("{name}.adam_v"), shape)?,
            })
        };
        let w_enc = param("w_enc", &[d, m])?;
        let b_enc = param("b_enc", &[m])?;
        let w_dec = param("w_dec", &[m, d])?;
        let b_dec = param("b_dec", &[d])?;
        let log_threshold = match cfg.architecture {
            Architecture::JumpRelu => Some(param("log_threshold", &[m])?),
            _ => None,
        };
        let since_fired = take("steps_since_fired", &[m])?;
        Ok(Trainer {
            cfg,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            log_threshold,
            since_fired,
            batch_threshold: scalars.batch_threshold,
            window_fires: None,
            window_rows: 0,
            step: scalars.step,
            coefficient: scalars.coefficient,
        })
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        let mut out = vec![
            ("w_enc", &self.w_enc),
            ("b_enc", &self.b_enc),
            ("w_dec", &self.w_dec),
            ("b_dec", &self.b_dec),
        ];
        if let Some(t) = &self.log_threshold {
            out.push(("log_threshold", t));
        }
        out
    }
}

/// The scalars of a trainer's state, as a checkpoint keeps them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerScalars {
    pub step: u64,
    pub coefficient: f64,
    pub batch_threshold: Option<f64>,
}
