//! Causal steering (spec §A7): add `α·û` (û a feature's unit direction) to the activation at the
//! factorised hook at every position; find by bisection the α at which the next-token distribution
//! at the last prompt position moves a target KL away from the unsteered one; at each α found, record
//! the largest logit shifts and sample continuations with +α and −α.

use loupe_plugin_api::prelude::*;
use loupe_plugin_api::rng::Rng;
use serde_json::{Value, json};

use crate::sample::draw;

pub struct SteerConfig {
    pub prompt: String,
    pub kl_targets: Vec<f64>,
    pub alpha_low: f64,
    pub alpha_high: f64,
    pub bisection_steps: usize,
    pub kl_tolerance: f64,
    pub continuations: usize,
    pub new_tokens: usize,
    pub top_k: usize,
    pub top_p: f64,
    pub temperature: f64,
    /// Logit shifts listed per direction.
    pub shift_top: usize,
    pub seed: u64,
}

/// The ε inside the logs of the KL, as in the reference evaluation.
const KL_EPS: f32 = 1e-8;

pub struct Steerer<'a> {
    hook: String,
    cfg: &'a SteerConfig,
    prompt: Vec<i32>,
    prompt_tokens: Tensor,
    base_last: Tensor,
    base_probs: Tensor,
    base_log_probs: Tensor,
    new_tokens: usize,
}

/// Logits `[batch, vocab]` at the last position of `tokens` `[batch, len]`, with `vector` added at
/// `hook` everywhere when given.
fn last_logits(tokens: &Tensor, hook: &str, vector: Option<&Tensor>) -> Result<Tensor> {
    let mut pass = Forward::new(tokens);
    if let Some(v) = vector {
        pass = pass.intervene(Intervention::add(hook, v));
    }
    let logits = pass
        .run()?
        .logits
        .ok_or_else(|| Error::other("snmf", "the model returned no logits"))?;
    let shape = logits.shape();
    logits
        .slice(1, shape[1] - 1, shape[1])?
        .reshape(&[shape[0], shape[2]])
}

fn decode(ids: &[i32]) -> Result<String> {
    model::decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>())
}

impl<'a> Steerer<'a> {
    pub fn new(hook: &str, cfg: &'a SteerConfig) -> Result<Self> {
        let info = model::info()?;
        let mut prompt: Vec<i32> = info.bos_token.map(|b| b as i32).into_iter().collect();
        prompt.extend(model::tokenize(&cfg.prompt)?.iter().map(|&t| t as i32));
        if prompt.is_empty() {
            return Err(Error::invalid(
                "snmf",
                "steer_prompt is empty and the tokenizer has no BOS token; give a prompt",
            ));
        }
        let n_ctx = info.n_ctx as usize;
        if prompt.len() >= n_ctx {
            return Err(Error::invalid(
                "snmf",
                format!(
                    "steer_prompt has {} tokens, as many as the model's context of {n_ctx}; shorten it",
                    prompt.len()
                ),
            ));
        }
        let new_tokens = cfg.new_tokens.min(n_ctx - prompt.len());
        if new_tokens < cfg.new_tokens {
            warn(&format!(
                "continuations stop at {new_tokens} new tokens: the prompt ({} tokens) and {} more exceed the model's context of {n_ctx}",
                prompt.len(),
                cfg.new_tokens
            ));
        }
        let prompt_tokens = Tensor::from_i32(&prompt, &[1, prompt.len()])?;
        let base_last = last_logits(&prompt_tokens, hook, None)?;
        let base_probs = base_last.softmax(-1)?;
        let base_log_probs = base_probs.affine(1.0, KL_EPS)?.log()?;
        Ok(Steerer {
            hook: hook.to_string(),
            cfg,
            prompt,
            prompt_tokens,
            base_last,
            base_probs,
            base_log_probs,
            new_tokens,
        })
    }

    /// `Σ p_base (log(p_base + ε) − log(p_steered + ε))` at the last prompt position.
    fn kl(&self, vector: &Tensor) -> Result<f64> {
        let steered = last_logits(&self.prompt_tokens, &self.hook, Some(vector))?;
        let log_q = steered.softmax(-1)?.affine(1.0, KL_EPS)?.log()?;
        Ok(self
            .base_probs
            .mul(&self.base_log_probs.sub(&log_q)?)?
            .sum_all()? as f64)
    }

    /// The bisection of the reference evaluation: α halves its interval towards the target for a fixed
    /// number of steps; the last midpoint within tolerance is the one kept.
    fn calibrate(&self, unit: &Tensor, target: f64) -> Result<Option<(f64, f64)>> {
        let (mut low, mut high) = (self.cfg.alpha_low, self.cfg.alpha_high);
        let mut hit = None;
        for _ in 0..self.cfg.bisection_steps {
            let mid = 0.5 * (low + high);
            let kl = self.kl(&unit.affine(mid as f32, 0.0)?)?;
            if (kl - target).abs() < self.cfg.kl_tolerance {
                hit = Some((mid, kl));
            }
            if kl < target {
                low = mid;
            } else {
                high = mid;
            }
        }
        Ok(hit)
    }

    /// The tokens whose logits the vector raises and lowers most at the last prompt position.
    fn logit_shift(&self, vector: &Tensor) -> Result<Value> {
        let steered = last_logits(&self.prompt_tokens, &self.hook, Some(vector))?;
        let delta = steered.sub(&self.base_last)?;
        let top = self.cfg.shift_top.min(delta.shape()[1]);
        let mut out = json!({});
        for (side, sign) in [("up", 1.0f32), ("down", -1.0)] {
            let (values, ids) = delta.affine(sign, 0.0)?.top_k(top)?;
            let (values, ids) = (values.to_vec_f32()?, ids.to_vec_i32()?);
            let mut list = Vec::new();
            for (v, id) in values.iter().zip(&ids) {
                list.push(json!({ "token": decode(&[*id])?, "token_id": id, "shift": sign * v }));
            }
            out[side] = Value::Array(list);
        }
        Ok(out)
    }

    /// `continuations` sampled continuations of the prompt with `vector` added, as text.
    fn continue_prompt(&self, vector: &Tensor, rng: &mut Rng) -> Result<Vec<String>> {
        let rows = self.cfg.continuations;
        let mut ids: Vec<i32> = self.prompt.repeat(rows);
        let mut len = self.prompt.len();
        for _ in 0..self.new_tokens {
            let tokens = Tensor::from_i32(&ids, &[rows, len])?;
            let logits = last_logits(&tokens, &self.hook, Some(vector))?;
            let k = self.cfg.top_k.min(logits.shape()[1]);
            let (values, top_ids) = logits.top_k(k)?;
            let (values, top_ids) = (values.to_vec_f32()?, top_ids.to_vec_i32()?);
            let mut next = Vec::with_capacity(rows * (len + 1));
            for r in 0..rows {
                next.extend_from_slice(&ids[r * len..(r + 1) * len]);
                next.push(draw(
                    &values[r * k..(r + 1) * k],
                    &top_ids[r * k..(r + 1) * k],
                    self.cfg.temperature,
                    self.cfg.top_p,
                    rng,
                ));
            }
            ids = next;
            len += 1;
        }
        let start = self.prompt.len();
        (0..rows)
            .map(|r| decode(&ids[r * len + start..(r + 1) * len]))
            .collect()
    }

    /// Every KL target for one feature direction `h_row` `[d]`: the α found (or the target missed),
    /// the logit shifts, and continuations for +α and −α.
    pub fn steer(&self, feature: usize, h_row: &Tensor) -> Result<Value> {
        let norm = h_row.l2_norm(0, false)?.item()?;
        if norm == 0.0 {
            return Ok(json!({ "feature": feature, "skipped": "the feature is all zeros" }));
        }
        let unit = h_row.affine(1.0 / norm, 0.0)?;
        let mut hits = Vec::new();
        let mut missed = Vec::new();
        for (t, &target) in self.cfg.kl_targets.iter().enumerate() {
            let Some((alpha, kl)) = self.calibrate(&unit, target)? else {
                missed.push(target);
                continue;
            };
            let plus = unit.affine(alpha as f32, 0.0)?;
            let minus = unit.affine(-alpha as f32, 0.0)?;
            let mut continuations = json!({});
            for (sign, (side, vector)) in [("positive", &plus), ("negative", &minus)]
                .into_iter()
                .enumerate()
            {
                let stream = (feature as u64) << 32 | (t as u64) << 1 | sign as u64;
                let mut rng = Rng::new(self.cfg.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                continuations[side] = json!(self.continue_prompt(vector, &mut rng)?);
            }
            hits.push(json!({
                "kl_target": target,
                "alpha": alpha,
                "kl": kl,
                "logit_shift": self.logit_shift(&plus)?,
                "continuations": continuations,
            }));
        }
        Ok(json!({
            "feature": feature,
            "hook": self.hook,
            "prompt": self.cfg.prompt,
            "targets": hits,
            "missed_targets": missed,
        }))
    }
}
