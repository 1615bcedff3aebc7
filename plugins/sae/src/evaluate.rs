//! The final evaluation of an SAE (in raw activation units) on rows from a source: reconstruction
//! metrics, density, dark matter, and for model sources the CE loss recovered and KL score of splicing
//! the SAE into the forward pass, and the top-activating contexts.

use loupe_plugin_api::prelude::*;
use serde::Serialize;

use crate::arch::Sae;
use crate::contexts::TopContexts;
use crate::dark_matter::{DarkMatter, DarkMatterMetrics};
use crate::metrics::{DensityHistogram, ReconMetrics, ReconSums, accumulate, density_histogram};
use crate::source::{Source, hook_rows, kept_positions};

pub struct EvalOptions {
    pub rows: u64,
    pub dense_threshold: f64,
    pub ridge: f64,
    pub codes_rows: usize,
    pub contexts: TopContexts,
    /// The held-out slice the rows come from (recorded in evaluation.json), if any.
    pub held_out: Option<serde_json::Value>,
}

/// Cross-entropy of next-token prediction with the activation clean, spliced with the SAE's
/// reconstruction, and zero-ablated; KL divergences from the clean predictions.
#[derive(Debug, Clone, Serialize)]
pub struct SpliceMetrics {
    pub ce_clean: f64,
    pub ce_with_sae: f64,
    pub ce_zero_ablated: f64,
    /// `(CE_zero − CE_sae) / (CE_zero − CE_clean)`.
    pub ce_loss_recovered: f64,
    /// `CE_sae − CE_clean`.
    pub ce_delta: f64,
    pub kl_with_sae: f64,
    pub kl_zero_ablated: f64,
    /// `(KL_zero − KL_sae) / KL_zero`.
    pub kl_score: f64,
    pub predicted_tokens: u64,
}

#[derive(Default)]
struct SpliceSums {
    ce: [f64; 3],
    kl: [f64; 2],
    predictions: u64,
    positions: u64,
}

/// A metric left out of the evaluation, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub metric: &'static str,
    pub reason: String,
    /// Worth a warning in the log (a metric the user expects), not just a line in evaluation.json.
    #[serde(skip)]
    pub warn: bool,
}

pub struct Evaluation {
    pub recon: ReconMetrics,
    pub frequencies: Tensor,
    pub histogram: DensityHistogram,
    pub dark_matter: Option<DarkMatterMetrics>,
    pub skipped: Vec<Skipped>,
    pub held_out: Option<serde_json::Value>,
    pub splice: Option<SpliceMetrics>,
    /// `top_contexts.json`: the first latents' top contexts (model runs).
    pub contexts: Option<serde_json::Value>,
    /// Every latent's top contexts, for the feature view (model runs; `None` without a model or with
    /// `top_contexts_k = 0`).
    pub top_contexts: Option<TopContexts>,
    /// `[d_sae]`: each latent's activations summed over the evaluation rows (its mean when firing is
    /// this over its firing count).
    pub activation_sums: Tensor,
}

/// Rows gathered for `codes.safetensors`.
#[derive(Default)]
struct Codes {
    x: Vec<Tensor>,
    f: Vec<Tensor>,
    x_hat: Vec<Tensor>,
    rows: usize,
}

impl Codes {
    fn add(&mut self, want: usize, x: &Tensor, f: &Tensor, x_hat: &Tensor) -> Result<()> {
        let take = want.saturating_sub(self.rows).min(x.shape()[0]);
        if take > 0 {
            self.x.push(x.slice(0, 0, take)?);
            self.f.push(f.slice(0, 0, take)?);
            self.x_hat.push(x_hat.slice(0, 0, take)?);
            self.rows += take;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let join = |parts: &Vec<Tensor>| Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0);
        let (x, f, x_hat) = (join(&self.x)?, join(&self.f)?, join(&self.x_hat)?);
        report::save_tensors(
            "codes.safetensors",
            &[("x", &x), ("feature_acts", &f), ("reconstruction", &x_hat)],
        )
    }
}

/// Mean next-token cross-entropy (summed) of `logits` `[b, s, v]` against `ids`, and the log-softmax.
fn next_token_ce(logits: &Tensor, ids: &[i32], seq_len: usize) -> Result<(f64, Tensor)> {
    let shape = logits.shape();
    let (b, v) = (shape[0], shape[2]);
    let log_p = logits.log_softmax(-1)?;
    let predicted = log_p
        .slice(1, 0, seq_len - 1)?
        .reshape(&[b * (seq_len - 1) * v])?;
    let mut index = Vec::with_capacity(b * (seq_len - 1));
    for seq in 0..b {
        for pos in 0..seq_len - 1 {
            let row = seq * (seq_len - 1) + pos;
            index.push((row * v) as i32 + ids[seq * seq_len + pos + 1]);
        }
    }
    let picked = predicted.index_select(0, &Tensor::from_i32(&index, &[index.len()])?)?;
    Ok((-(picked.sum_all()? as f64), log_p))
}

/// Σ over positions of KL(p_clean ‖ p_other).
fn kl_sum(clean: &Tensor, other: &Tensor) -> Result<f64> {
    Ok(clean.exp()?.mul(&clean.sub(other)?)?.sum_all()? as f64)
}

/// Evaluates `sae` on up to `opts.rows` rows from where `source` stands; `None` if it had none left.
pub fn evaluate(
    sae: &Sae,
    source: &mut Source,
    mut opts: EvalOptions,
) -> Result<Option<Evaluation>> {
    let mut sums = ReconSums::default();
    let mut dark = DarkMatter::default();
    let mut codes = Codes::default();
    let mut splice: Option<SpliceSums> = None;
    let mut activation_sums: Option<Tensor> = None;
    let total = opts.rows;
    opts.contexts.start_at_sequence(source.position());
    while sums.tokens() < total {
        match source {
            Source::Cached { .. } => {
                let Some(rows) = source.next()? else { break };
                let remaining = (total - sums.tokens()) as usize;
                let x = if rows.shape()[0] > remaining {
                    rows.slice(0, 0, remaining)?
                } else {
                    rows
                };
                let f = sae.encode(&x)?;
                let x_hat = sae.decode(&f)?;
                sums.add(&x, &f, &x_hat)?;
                accumulate(&mut activation_sums, f.sum(0, false)?)?;
                dark.add(&x, &x.sub(&x_hat)?)?;
                codes.add(opts.codes_rows, &x, &f, &x_hat)?;
            }
            Source::Model {
                hook,
                data,
                sequences_per_pass,
                exclude,
                window,
            } => {
                let Some(tokens) = window.read(data, *sequences_per_pass)? else {
                    break;
                };
                let ids = tokens.to_vec_i32()?;
                let seq_len = tokens.shape()[1];
                let (all, hook_shape, clean_logits) = hook_rows(&tokens, hook, true)?;
                let f_all = sae.encode(&all)?;
                let x_hat_all = sae.decode(&f_all)?;
                // Excluded (BOS) positions keep their own activation when splicing.
                let kept = kept_positions(&ids, *exclude);
                let partial = kept.as_ref();
                if partial.is_some_and(|k| k.is_empty()) {
                    // No rows, but the sequences still count for the contexts' row numbers.
                    opts.contexts.pass_over(&ids, seq_len);
                    continue;
                }
                let spliced_override = match partial {
                    Some(_) => {
                        let is_excluded: Vec<f32> = ids
                            .iter()
                            .map(|&t| if Some(t) == *exclude { 1.0 } else { 0.0 })
                            .collect();
                        Some(
                            Tensor::from_f32(&is_excluded, &[ids.len(), 1])?
                                .select(&all, &x_hat_all)?,
                        )
                    }
                    None => None,
                };
                let picked = match partial {
                    Some(k) => {
                        let index = Tensor::from_i32(k, &[k.len()])?;
                        Some((
                            all.index_select(0, &index)?,
                            f_all.index_select(0, &index)?,
                            x_hat_all.index_select(0, &index)?,
                        ))
                    }
                    None => None,
                };
                let (x, f, x_hat) = match &picked {
                    Some((x, f, x_hat)) => (x, f, x_hat),
                    None => (&all, &f_all, &x_hat_all),
                };
                sums.add(x, f, x_hat)?;
                accumulate(&mut activation_sums, f.sum(0, false)?)?;
                dark.add(x, &x.sub(x_hat)?)?;
                codes.add(opts.codes_rows, x, f, x_hat)?;
                if !opts.contexts.is_empty() {
                    opts.contexts
                        .merge(f, partial.map(Vec::as_slice), &ids, seq_len)?;
                }
                if seq_len >= 2 {
                    let clean_logits = clean_logits.expect("logits were asked for");
                    let spliced = spliced_override
                        .as_ref()
                        .unwrap_or(&x_hat_all)
                        .reshape(&hook_shape)?;
                    let with_sae = Forward::new(&tokens)
                        .intervene(Intervention::replace(hook, &spliced))
                        .run()?
                        .logits
                        .expect("logits were asked for");
                    let zeroed = Forward::new(&tokens)
                        .intervene(Intervention::zero(hook))
                        .run()?
                        .logits
                        .expect("logits were asked for");
                    let s = splice.get_or_insert_with(SpliceSums::default);
                    let (ce_clean, lp_clean) = next_token_ce(&clean_logits, &ids, seq_len)?;
                    let (ce_sae, lp_sae) = next_token_ce(&with_sae, &ids, seq_len)?;
                    let (ce_zero, lp_zero) = next_token_ce(&zeroed, &ids, seq_len)?;
                    s.ce[0] += ce_clean;
                    s.ce[1] += ce_sae;
                    s.ce[2] += ce_zero;
                    s.kl[0] += kl_sum(&lp_clean, &lp_sae)?;
                    s.kl[1] += kl_sum(&lp_clean, &lp_zero)?;
                    s.predictions += (ids.len() - ids.len() / seq_len) as u64;
                    s.positions += ids.len() as u64;
                }
            }
        }
        report::progress("evaluate", sums.tokens().min(total), total);
    }
    if sums.tokens() == 0 {
        return Ok(None);
    }
    codes.save()?;
    let (recon, frequencies) = sums.finish(opts.dense_threshold)?;
    let histogram = density_histogram(&frequencies.to_vec_f32()?);
    let splice = splice.map(|s| {
        let n = s.predictions as f64;
        let [clean, sae, zero] = s.ce.map(|c| c / n);
        let kl_sae = s.kl[0] / s.positions as f64;
        let kl_zero = s.kl[1] / s.positions as f64;
        SpliceMetrics {
            ce_clean: clean,
            ce_with_sae: sae,
            ce_zero_ablated: zero,
            ce_loss_recovered: (zero - sae) / (zero - clean),
            ce_delta: sae - clean,
            kl_with_sae: kl_sae,
            kl_zero_ablated: kl_zero,
            kl_score: (kl_zero - kl_sae) / kl_zero,
            predicted_tokens: s.predictions,
        }
    });
    let mut skipped = Vec::new();
    let dark_matter = match dark.finish(opts.ridge)? {
        Ok(d) => Some(d),
        Err(reason) => {
            skipped.push(Skipped {
                metric: "dark_matter",
                reason,
                warn: true,
            });
            None
        }
    };
    for (metric, rows) in [
        ("latents_below_1e_5", 100_000u64),
        ("latents_below_1e_6", 1_000_000),
    ] {
        if recon.tokens < rows {
            skipped.push(Skipped {
                metric,
                reason: format!(
                    "telling a frequency below 1/{rows} from 0 takes at least {rows} rows; these {} count only latents that never fired (dead_on_eval_rows)",
                    recon.tokens
                ),
                warn: false,
            });
        }
    }
    if splice.is_none() && source.is_model() {
        skipped.push(Skipped {
            metric: "splice",
            reason: "sequences of fewer than 2 tokens have no next token to predict".into(),
            warn: true,
        });
    }
    let top_contexts = (source.is_model() && opts.contexts.has_rows()).then_some(opts.contexts);
    let contexts = match &top_contexts {
        Some(c) if c.writes_json() => Some(c.to_json(sae.d_sae())?),
        _ => None,
    };
    let activation_sums = activation_sums.expect("rows were evaluated");
    Ok(Some(Evaluation {
        recon,
        frequencies,
        histogram,
        dark_matter,
        skipped,
        held_out: opts.held_out.take(),
        splice,
        contexts,
        top_contexts,
        activation_sums,
    }))
}
