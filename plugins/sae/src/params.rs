//! The plugin's parameters: the schema shown by `loupe plugins list` and checked by the host, and the
//! checks that need more than a type.

use loupe_plugin_api::prelude::*;
use serde::Deserialize;

use crate::arch::Architecture;

#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub architecture: String,
    pub hook: String,
    pub dataset: String,
    pub load: String,
    pub d_sae: usize,
    pub expansion_factor: usize,
    pub k: usize,
    pub training_tokens: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub lr_warm_up_fraction: f64,
    pub lr_decay_fraction: f64,
    pub grad_clip_norm: f64,
    pub save_first_gradients: bool,
    pub l1_coefficient: f64,
    pub l1_warm_up_fraction: f64,
    pub l0_coefficient: f64,
    pub jumprelu_sparsity_loss: String,
    pub jumprelu_tanh_scale: f64,
    pub jumprelu_bandwidth: f64,
    pub jumprelu_init_threshold: f64,
    pub jumprelu_threshold_lr_scale: f64,
    pub rescale_acts_by_decoder_norm: bool,
    pub topk_threshold_lr: f64,
    pub aux_k: usize,
    pub aux_k_coefficient: f64,
    pub dead_feature_window: u64,
    pub normalize_activations: String,
    pub b_dec_init: String,
    pub decoder_init_norm: f64,
    pub exclude_bos: bool,
    pub model_batch_size: usize,
    pub buffer_batches: usize,
    pub eval_tokens: u64,
    pub dense_threshold: f64,
    pub dark_matter_ridge: f64,
    pub top_contexts_latents: usize,
    pub top_contexts_k: usize,
    pub context_tokens: usize,
    pub view_top_latents: usize,
    pub view_random_latents: usize,
    pub view_latents: Vec<i64>,
    pub view_vocab_tokens: usize,
    pub save_codes_rows: usize,
    pub log_every: u64,
    pub checkpoint_every: u64,
    pub target_l0: f64,
    pub model_name: String,
}

pub fn manifest() -> Manifest {
    Manifest::new(
        "sae",
        env!("CARGO_PKG_VERSION"),
        "sae",
        "Sparse autoencoders at any hook (attn.hook_z included): train standard, TopK, BatchTopK or JumpReLU SAEs on activations streamed from the model or read from a file, evaluate them (L0, FVU, CE loss recovered, KL, density, dark matter) and save them in the SAELens format; or evaluate a saved SAELens SAE",
    )
    .param(Param::string("architecture", "topk", "standard (ReLU + decoder-norm-weighted L1), topk, batchtopk (saved as jumprelu) or jumprelu"))
    .param(Param::string("hook", "", "TransformerLens hook to train on (`blocks.5.attn.hook_z` is flattened head-major); needed when the run has a model; with cached activations it is only recorded in cfg.json"))
    .param(Param::string("dataset", "default", "Dataset to read: text (activations come from the model at `hook`) or cached .safetensors activations"))
    .param(Param::string("load", "", "Evaluate the SAELens SAE in this directory dataset instead of training one"))
    .param(Param::int("d_sae", 0, "Latents (0: expansion_factor × d_in)"))
    .param(Param::int("expansion_factor", 8, "Latents per input dimension when d_sae is 0"))
    .param(Param::int("k", 32, "Active latents per token (topk), or on average over a batch (batchtopk; its inference threshold is calibrated on the held-out rows to give this L0); 1 ≤ k ≤ d_sae"))
    .param(Param::float("target_l0", 0.0, "standard, jumprelu: steer the sparsity coefficient during training so the L0 approaches this (the coefficient set is only the start; 0: a fixed coefficient)"))
    .param(Param::int("training_tokens", 2_000_000, "Activation rows to train on"))
    .param(Param::int("batch_size", 4096, "Activation rows per optimiser step"))
    .param(Param::float("lr", 1e-3, "Adam learning rate (JumpReLU's log-threshold learns 20 times faster)"))
    .param(Param::float("adam_beta1", 0.9, "Adam β1"))
    .param(Param::float("adam_beta2", 0.999, "Adam β2"))
    .param(Param::float("lr_warm_up_fraction", 0.0, "Fraction of the steps over which the learning rate rises linearly from 0"))
    .param(Param::float("lr_decay_fraction", 0.2, "Fraction of the steps, at the end, over which the learning rate decays linearly to 0"))
    .param(Param::float("grad_clip_norm", 1.0, "Clip the global gradient norm to this (0: off)"))
    .param(Param::bool("save_first_gradients", false, "Save the first step's batch, parameters and hand-derived gradients (before clipping) to artifacts/first_step_gradients.safetensors, to check them against autodiff"))
    .param(Param::float("l1_coefficient", 1.0, "standard: weight of the L1 penalty Σ f_i·‖W_dec,i‖ (on normalised activations)"))
    .param(Param::float("l1_warm_up_fraction", 0.05, "standard, jumprelu: fraction of the steps over which the sparsity coefficient rises linearly from 0"))
    .param(Param::float("l0_coefficient", 1.0, "jumprelu: weight of the L0 penalty"))
    .param(Param::string("jumprelu_sparsity_loss", "step", "jumprelu: `step` (L0 through the straight-through estimator) or `tanh` (Σ tanh(c·f_i·‖W_dec,i‖))"))
    .param(Param::float("jumprelu_tanh_scale", 4.0, "jumprelu, tanh loss: the scale c"))
    .param(Param::float("jumprelu_bandwidth", 0.05, "jumprelu: bandwidth ε of the straight-through estimator's rectangle kernel"))
    .param(Param::float("jumprelu_init_threshold", 0.01, "jumprelu: initial threshold"))
    .param(Param::float("jumprelu_threshold_lr_scale", 20.0, "jumprelu: learning rate of log θ relative to lr (log θ must move by order 1, the weights by about lr a step)"))
    .param(Param::bool("rescale_acts_by_decoder_norm", true, "topk, batchtopk: rank latents by h_i·‖W_dec,i‖ (a unit-norm decoder in effect; folded away at save)"))
    .param(Param::float("topk_threshold_lr", 0.01, "batchtopk: rate of the moving average that tracks the threshold saved for inference"))
    .param(Param::int("aux_k", 0, "topk, batchtopk: latents in the dead-latent auxiliary loss (0: d_in / 2)"))
    .param(Param::float("aux_k_coefficient", 1.0, "topk, batchtopk: weight of the auxiliary loss (normalised MSE of the residual), 0 turns it off; OpenAI's 1/32 barely moves dead latents in a run of a few hundred steps"))
    .param(Param::int("dead_feature_window", 0, "During training, a latent that has not fired for this many steps is dead (feeds the auxiliary loss and `dead_in_training_window`); 0: a tenth of the steps, at most 1000"))
    .param(Param::string("normalize_activations", "expected_average_only_in", "`expected_average_only_in`: scale inputs to mean norm √d_in while training, folded into the saved weights; or `none`"))
    .param(Param::string("b_dec_init", "geometric_median", "Decoder bias at the start: `geometric_median` or `mean` of the first batch, or `zeros`"))
    .param(Param::float("decoder_init_norm", 0.1, "Norm of each decoder row at the start (W_enc starts as W_decᵀ)"))
    .param(Param::bool("exclude_bos", true, "Leave out positions holding the BOS token (huge outliers in most models); they are not replaced when splicing"))
    .param(Param::int("model_batch_size", 16, "Sequences per forward pass when activations come from the model"))
    .param(Param::int("buffer_batches", 16, "The shuffling buffer holds this many training batches; half is refilled at a time"))
    .param(Param::int("eval_tokens", 16_384, "Activation rows for the final evaluation, held out from training: the dataset's first rows (or the sequences holding them) are never trained on (0: no evaluation)"))
    .param(Param::float("dense_threshold", 0.1, "A latent firing on more than this fraction of tokens counts as dense"))
    .param(Param::float("dark_matter_ridge", 1e-4, "Ridge (relative to the mean diagonal) of the linear fit that predicts the SAE error from its input"))
    .param(Param::int("top_contexts_latents", 32, "Latents (from 0) whose top-activating contexts go into top_contexts.json (model runs)"))
    .param(Param::int("top_contexts_k", 8, "Top activations kept per latent"))
    .param(Param::int("context_tokens", 8, "Tokens of text shown on each side of a top activation"))
    .param(Param::int("view_top_latents", 16, "feature_view.html/.json: show this many of the latents firing most often on the evaluation rows"))
    .param(Param::int("view_random_latents", 8, "feature_view: and this many random latents (among those that fired; seeded by the run's seed)"))
    .param(Param::int_list("view_latents", &[], "feature_view: and these latents"))
    .param(Param::int("view_vocab_tokens", 10, "feature_view: tokens listed at each end of a latent's vocabulary projection (model runs)"))
    .param(Param::int("save_codes_rows", 0, "Save x, feature_acts and reconstruction of the first N evaluation rows to codes.safetensors"))
    .param(Param::int("log_every", 10, "Report training metrics every this many steps"))
    .param(Param::int("checkpoint_every", 0, "Write artifacts/checkpoint/ (the SAE so far in SAELens form plus the trainer's state) every this many steps, so a crash loses at most that many; 0: only when the run is asked to stop. Continue one with `resume = \"runs/<id>\"` in the experiment"))
    .param(Param::string("model_name", "", "The model's name written to cfg.json's metadata.model_name (e.g. \"gpt2-small\", as TransformerLens names it); empty: the run's model directory name (the host fills it in), null with a warning for runs without a model"))
}

/// How the activations are scaled during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    None,
    ExpectedAverageOnlyIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderBiasInit {
    Zeros,
    Mean,
    GeometricMedian,
}

impl DecoderBiasInit {
    pub fn name(self) -> &'static str {
        match self {
            DecoderBiasInit::Zeros => "zeros",
            DecoderBiasInit::Mean => "mean",
            DecoderBiasInit::GeometricMedian => "geometric_median",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpReluLoss {
    Step,
    Tanh,
}

fn bad(message: String) -> Error {
    Error::invalid("sae", message)
}

impl Params {
    pub fn architecture(&self) -> Result<Architecture> {
        Architecture::parse(&self.architecture).ok_or_else(|| {
            bad(format!(
                "architecture `{}`: use standard, topk, batchtopk or jumprelu",
                self.architecture
            ))
        })
    }

    pub fn normalisation(&self) -> Result<Normalisation> {
        match self.normalize_activations.as_str() {
            "none" => Ok(Normalisation::None),
            "expected_average_only_in" => Ok(Normalisation::ExpectedAverageOnlyIn),
            other => Err(bad(format!(
                "normalize_activations `{other}`: use expected_average_only_in or none"
            ))),
        }
    }

    pub fn b_dec_init(&self) -> Result<DecoderBiasInit> {
        match self.b_dec_init.as_str() {
            "zeros" => Ok(DecoderBiasInit::Zeros),
            "mean" => Ok(DecoderBiasInit::Mean),
            "geometric_median" => Ok(DecoderBiasInit::GeometricMedian),
            other => Err(bad(format!(
                "b_dec_init `{other}`: use geometric_median, mean or zeros"
            ))),
        }
    }

    pub fn jumprelu_loss(&self) -> Result<JumpReluLoss> {
        match self.jumprelu_sparsity_loss.as_str() {
            "step" => Ok(JumpReluLoss::Step),
            "tanh" => Ok(JumpReluLoss::Tanh),
            other => Err(bad(format!(
                "jumprelu_sparsity_loss `{other}`: use step or tanh"
            ))),
        }
    }

    /// Checks that hold whatever the data: sizes, fractions, rates.
    pub fn validate(&self) -> Result<()> {
        self.architecture()?;
        self.normalisation()?;
        self.b_dec_init()?;
        self.jumprelu_loss()?;
        if self.k == 0 {
            return Err(bad(
                "k must be at least 1 (active latents per token, or the target L0 of batchtopk)"
                    .into(),
            ));
        }
        if self.target_l0.is_nan() || self.target_l0 < 0.0 {
            return Err(bad(format!(
                "target_l0 must be 0 (off) or positive, got {}",
                self.target_l0
            )));
        }
        // With d_sae given, k is checked before any data is read; else once d_in is known.
        if self.d_sae > 0 {
            self.latents(0)?;
        }
        if self.target_l0 > 0.0
            && matches!(
                self.architecture()?,
                Architecture::TopK | Architecture::BatchTopK
            )
        {
            return Err(bad(format!(
                "target_l0 steers the penalty of standard and jumprelu SAEs; {} sets its L0 with k",
                self.architecture
            )));
        }
        let positive = [
            ("batch_size", self.batch_size as f64),
            ("lr", self.lr),
            ("model_batch_size", self.model_batch_size as f64),
            ("log_every", self.log_every as f64),
            ("jumprelu_bandwidth", self.jumprelu_bandwidth),
            ("jumprelu_init_threshold", self.jumprelu_init_threshold),
            (
                "jumprelu_threshold_lr_scale",
                self.jumprelu_threshold_lr_scale,
            ),
            ("decoder_init_norm", self.decoder_init_norm),
        ];
        for (name, v) in positive {
            if v.is_nan() || v <= 0.0 {
                return Err(bad(format!("{name} must be positive, got {v}")));
            }
        }
        let fractions = [
            ("lr_warm_up_fraction", self.lr_warm_up_fraction),
            ("lr_decay_fraction", self.lr_decay_fraction),
            ("l1_warm_up_fraction", self.l1_warm_up_fraction),
            ("topk_threshold_lr", self.topk_threshold_lr),
            ("dense_threshold", self.dense_threshold),
        ];
        for (name, v) in fractions {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(format!("{name} must lie in [0, 1], got {v}")));
            }
        }
        if self.lr_warm_up_fraction + self.lr_decay_fraction > 1.0 {
            return Err(bad(format!(
                "lr_warm_up_fraction + lr_decay_fraction is {}; together they must not exceed 1",
                self.lr_warm_up_fraction + self.lr_decay_fraction
            )));
        }
        let non_negative = [
            ("grad_clip_norm", self.grad_clip_norm),
            ("l1_coefficient", self.l1_coefficient),
            ("l0_coefficient", self.l0_coefficient),
            ("aux_k_coefficient", self.aux_k_coefficient),
            ("dark_matter_ridge", self.dark_matter_ridge),
            ("jumprelu_tanh_scale", self.jumprelu_tanh_scale),
        ];
        for (name, v) in non_negative {
            if v.is_nan() || v < 0.0 {
                return Err(bad(format!("{name} must be 0 or more, got {v}")));
            }
        }
        if self.buffer_batches < 2 {
            return Err(bad(format!(
                "buffer_batches must be at least 2 (half is refilled at a time), got {}",
                self.buffer_batches
            )));
        }
        if self.load.is_empty() && self.training_tokens < self.batch_size as u64 {
            return Err(bad(format!(
                "training_tokens ({}) is less than one batch ({}); raise training_tokens or lower batch_size",
                self.training_tokens, self.batch_size
            )));
        }
        Ok(())
    }

    /// Latents for inputs of width `d_in`.
    pub fn latents(&self, d_in: usize) -> Result<usize> {
        let m = if self.d_sae > 0 {
            self.d_sae
        } else {
            self.expansion_factor * d_in
        };
        if m == 0 {
            return Err(bad("d_sae and expansion_factor are both 0; set one".into()));
        }
        let uses_k = matches!(
            self.architecture()?,
            Architecture::TopK | Architecture::BatchTopK
        );
        if uses_k && self.k > m {
            return Err(bad(format!(
                "k = {} exceeds d_sae = {m}: a token cannot have more active latents than there are; lower k or raise d_sae",
                self.k
            )));
        }
        Ok(m)
    }

    /// Steps since last firing after which a latent counts as dead in training: the parameter, or
    /// a tenth of the run (at most SAELens's 1000) so a short run can still find and revive them.
    pub fn dead_window(&self) -> u64 {
        if self.dead_feature_window > 0 {
            self.dead_feature_window
        } else {
            (self.steps() / 10).clamp(1, 1000)
        }
    }

    pub fn steps(&self) -> u64 {
        self.training_tokens / self.batch_size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's defaults with `changes` applied, as the host would pass them.
    fn params(changes: serde_json::Value) -> Params {
        let mut object = serde_json::Map::new();
        for p in manifest().params {
            object.insert(
                p.name,
                p.default.expect("every sae parameter has a default"),
            );
        }
        for (k, v) in changes.as_object().unwrap() {
            assert!(object.contains_key(k), "no parameter {k}");
            object.insert(k.clone(), v.clone());
        }
        serde_json::from_value(serde_json::Value::Object(object)).unwrap()
    }

    fn refusal(changes: serde_json::Value) -> String {
        params(changes).validate().unwrap_err().to_string()
    }

    #[test]
    fn impossible_k_is_refused_naming_it() {
        assert!(refusal(serde_json::json!({"k": 0})).contains("k must be at least 1"));
        let too_many = refusal(serde_json::json!({"k": 65, "d_sae": 64}));
        assert!(too_many.contains("k = 65 exceeds d_sae = 64"), "{too_many}");
        // From the expansion factor, once d_in is known: 2 × 16 = 32 latents.
        let p = params(serde_json::json!({"k": 33, "expansion_factor": 2}));
        assert!(p.validate().is_ok());
        assert!(p.latents(16).is_err());
        assert_eq!(
            params(serde_json::json!({"k": 32, "expansion_factor": 2}))
                .latents(16)
                .unwrap(),
            32
        );
        // Standard SAEs do not use k.
        let standard =
            params(serde_json::json!({"architecture": "standard", "k": 65, "d_sae": 64}));
        assert!(standard.validate().is_ok());
        assert!(
            refusal(serde_json::json!({"architecture": "topk", "target_l0": 4.0}))
                .contains("target_l0")
        );
    }

    #[test]
    fn dead_window_scales_with_the_run_unless_set() {
        // 2M tokens in batches of 4096: 488 steps, so a 48-step window.
        assert_eq!(params(serde_json::json!({})).dead_window(), 48);
        let long = params(serde_json::json!({"training_tokens": 400_000_000u64}));
        assert_eq!(long.dead_window(), 1000);
        let set = params(serde_json::json!({"dead_feature_window": 7}));
        assert_eq!(set.dead_window(), 7);
    }
}
