//! The plugin's parameters: the schema shown by `loupe plugins list` and checked by the host, and the
//! checks that need more than a type.

use loupe_plugin_api::prelude::*;
use serde::Deserialize;

use crate::init::Init;

#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub dataset: String,
    pub layers: Vec<i64>,
    pub site: String,
    pub rank: usize,
    pub ranks: Vec<i64>,
    pub pct_keep: f64,
    pub max_iter: u64,
    pub patience: u64,
    pub tol: f64,
    pub reg: f64,
    pub init: String,
    pub kmeans_iters: usize,
    pub exclude_bos: bool,
    pub model_batch_size: usize,
    pub max_tokens: usize,
    pub top_tokens: usize,
    pub context_window: usize,
    pub vocab_top: usize,
    pub steer_features: Vec<i64>,
    pub steer_prompt: String,
    pub kl_targets: Vec<f64>,
    pub alpha_range: Vec<f64>,
    pub bisection_steps: usize,
    pub kl_tolerance: f64,
    pub continuations: usize,
    pub new_tokens: usize,
    pub sample_top_k: usize,
    pub sample_top_p: f64,
    pub temperature: f64,
    pub finetune_steps: u64,
    pub finetune_lr: f64,
    pub log_every: u64,
    pub dump_steps: u64,
}

pub fn manifest() -> Manifest {
    Manifest::new(
        "snmf",
        env!("CARGO_PKG_VERSION"),
        "snmf",
        "Semi-nonnegative matrix factorization of MLP activations (A ≈ F·Gᵀ, F sparse neuron groups, G ≥ 0 token weights): fits per layer with least-squares F, winner-take-all sparsity and multiplicative G updates, then writes each feature's top tokens in context, its vocabulary projection, and steering continuations calibrated by KL; optionally a hierarchy of ranks",
    )
    .param(Param::string("dataset", "default", "Dataset to factorise: text (activations come from the model at blocks.{layer}.{site}) or cached .safetensors activations [tokens, neurons]"))
    .param(Param::int_list("layers", &[0], "Layers to factorise, all collected in one pass per batch (text datasets)"))
    .param(Param::string("site", "mlp.hook_post", "Hook within each block: mlp.hook_post (the MLP activations SNMF is defined on), hook_mlp_out or hook_resid_post"))
    .param(Param::int("rank", 100, "Features per factorization (k)"))
    .param(Param::int_list("ranks", &[], "Hierarchical SNMF: decreasing ranks [r1, r2, ...]; level 1 factorises the activations, level l+1 the features of level l (overrides rank)"))
    .param(Param::float("pct_keep", 0.01, "Fraction of neurons each feature keeps (winner-take-all on |F| per column, ties kept)"))
    .param(Param::int("max_iter", 2000, "Iterations at most"))
    .param(Param::int("patience", 1500, "Stop after this many iterations without the loss improving by tol"))
    .param(Param::float("tol", 1e-4, "Improvement of the squared Frobenius loss that counts (absolute)"))
    .param(Param::float("reg", 1e-6, "Ridge added to GᵀG in the least-squares F update"))
    .param(Param::string("init", "random", "Initial G: random (U(0,1)), svd (top singular vectors, clipped at 0) or kmeans (one-hot cluster assignments)"))
    .param(Param::int("kmeans_iters", 15, "Lloyd iterations of the kmeans initialisation"))
    .param(Param::bool("exclude_bos", true, "Leave out positions holding the BOS token (which is also the padding of `pad = true` datasets)"))
    .param(Param::int("model_batch_size", 8, "Sequences per forward pass when collecting activations"))
    .param(Param::int("max_tokens", 0, "Stop collecting after this many token columns (0: the whole dataset)"))
    .param(Param::int("top_tokens", 25, "Top activating tokens listed per feature, with their contexts (0: no feature report)"))
    .param(Param::int("context_window", 15, "Tokens of context either side of a top token, within its own document"))
    .param(Param::int("vocab_top", 50, "Tokens listed per sign in each feature's vocabulary projection (0: none)"))
    .param(Param::int_list("steer_features", &[], "Features to steer with (indices into each rank); empty: no steering"))
    .param(Param::string("steer_prompt", "I think that", "Prompt the steering strength is calibrated on and continued from (BOS is prepended when the tokenizer has one)"))
    .param(Param::float_list("kl_targets", &[0.025, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5], "KL divergences (nats, last prompt position) to calibrate the steering strength α to"))
    .param(Param::float_list("alpha_range", &[1.0, 2000.0], "Interval [low, high] the bisection searches α in"))
    .param(Param::int("bisection_steps", 20, "Bisection steps per KL target"))
    .param(Param::float("kl_tolerance", 0.01, "A target counts as hit when |KL − target| is below this; missed targets are listed, not steered"))
    .param(Param::int("continuations", 8, "Sampled continuations per KL target and sign of α"))
    .param(Param::int("new_tokens", 50, "Tokens per continuation"))
    .param(Param::int("sample_top_k", 30, "Sampling: keep the k most likely tokens"))
    .param(Param::float("sample_top_p", 0.3, "Sampling: then the smallest set of those holding this probability"))
    .param(Param::float("temperature", 1.0, "Sampling temperature"))
    .param(Param::int("finetune_steps", 0, "Hierarchical SNMF: Adam steps of the joint fine-tune of all levels (G₁…G_L and the last F) on the mean squared error against the activations, after the level-by-level fits; nonnegativity is not enforced during it (0: no fine-tune; the reference's default is 500)"))
    .param(Param::float("finetune_lr", 1e-3, "Adam learning rate of the joint fine-tune"))
    .param(Param::int("log_every", 10, "Report the loss every this many iterations"))
    .param(Param::int("dump_steps", 0, "Save every intermediate of the first N iterations (steps/<t>.safetensors) to check the update rules"))
}

fn bad(message: String) -> Error {
    Error::invalid("snmf", message)
}

impl Params {
    pub fn init(&self) -> Result<Init> {
        match self.init.as_str() {
            "random" => Ok(Init::Random),
            "svd" => Ok(Init::Svd),
            "kmeans" | "knn" => Ok(Init::KMeans {
                iterations: self.kmeans_iters,
            }),
            other => Err(bad(format!(
                "init = \"{other}\" is not known; use \"random\", \"svd\" or \"kmeans\""
            ))),
        }
    }

    /// The ranks to fit, in order: `ranks` when given, else `[rank]`.
    pub fn ranks(&self) -> Vec<usize> {
        if self.ranks.is_empty() {
            vec![self.rank]
        } else {
            self.ranks.iter().map(|&r| r as usize).collect()
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.init()?;
        if self.ranks.is_empty() && self.rank == 0 {
            return Err(bad("rank must be at least 1".into()));
        }
        if let Some(r) = self.ranks.iter().find(|&&r| r < 1) {
            return Err(bad(format!("ranks must be at least 1, got {r}")));
        }
        if self.ranks.windows(2).any(|w| w[1] >= w[0]) {
            return Err(bad(format!(
                "ranks must decrease (each level has fewer features than the one it factorises), got {:?}",
                self.ranks
            )));
        }
        if !(self.pct_keep > 0.0 && self.pct_keep <= 1.0) {
            return Err(bad(format!(
                "pct_keep must lie in (0, 1], got {}",
                self.pct_keep
            )));
        }
        let positive = [
            ("max_iter", self.max_iter as f64),
            ("patience", self.patience as f64),
            ("model_batch_size", self.model_batch_size as f64),
            ("log_every", self.log_every as f64),
            ("temperature", self.temperature),
        ];
        for (name, v) in positive {
            if v.is_nan() || v <= 0.0 {
                return Err(bad(format!("{name} must be positive, got {v}")));
            }
        }
        if self.finetune_steps > 0 && self.ranks.len() < 2 {
            return Err(bad(format!(
                "finetune_steps = {} fine-tunes a hierarchy; give ranks with at least two levels, e.g. ranks = [{}, {}]",
                self.finetune_steps,
                self.rank,
                (self.rank / 2).max(1)
            )));
        }
        if self.finetune_steps > 0 && !(self.finetune_lr.is_finite() && self.finetune_lr > 0.0) {
            return Err(bad(format!(
                "finetune_lr must be positive, got {}",
                self.finetune_lr
            )));
        }
        let non_negative = [("tol", self.tol), ("reg", self.reg)];
        for (name, v) in non_negative {
            if v.is_nan() || v < 0.0 {
                return Err(bad(format!("{name} must not be negative, got {v}")));
            }
        }
        if let Some(l) = self.layers.iter().find(|&&l| l < 0) {
            return Err(bad(format!("layers must not be negative, got {l}")));
        }
        if let Some(f) = self.steer_features.iter().find(|&&f| f < 0) {
            return Err(bad(format!("steer_features must not be negative, got {f}")));
        }
        if !self.steer_features.is_empty() {
            self.validate_steering()?;
        }
        Ok(())
    }

    fn validate_steering(&self) -> Result<()> {
        match self.alpha_range[..] {
            [low, high] if low.is_finite() && high.is_finite() && 0.0 <= low && low < high => {}
            _ => {
                return Err(bad(format!(
                    "alpha_range must be [low, high] with 0 <= low < high, got {:?}",
                    self.alpha_range
                )));
            }
        }
        if self.kl_targets.is_empty() || self.kl_targets.iter().any(|&t| t.is_nan() || t <= 0.0) {
            return Err(bad(format!(
                "kl_targets must be positive KL values, got {:?}",
                self.kl_targets
            )));
        }
        if !(self.sample_top_p > 0.0 && self.sample_top_p <= 1.0) {
            return Err(bad(format!(
                "sample_top_p must lie in (0, 1], got {}",
                self.sample_top_p
            )));
        }
        if self.sample_top_k == 0 || self.bisection_steps == 0 {
            return Err(bad(
                "sample_top_k and bisection_steps must be at least 1".into()
            ));
        }
        Ok(())
    }
}
