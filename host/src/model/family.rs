//! Any model loupe can load, chosen by `config.json`'s `model_type`: the one place that maps a
//! Hugging Face directory to an architecture.

use std::path::Path;

use loupe_kernels::{Device, StopSignal, Tensor};
use serde::Deserialize;

use super::arch::Architecture;
use super::{Gpt2, GradOutput, GradSpec, InputKind, ModelDir, ModelError, RunOutput, RunSpec, Vit};

/// A loaded model of any supported family.
pub enum Model {
    Gpt2(Box<Gpt2>),
    Vit(Box<Vit>),
}

#[derive(Deserialize)]
struct ModelType {
    model_type: Option<String>,
}

impl Model {
    /// Loads a Hugging Face model directory, choosing the architecture from `config.json`.
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let path = ModelDir::new(dir)?.config_path();
        let kind: ModelType = super::read_json_file(&path, |text| {
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))
        })?;
        match kind.model_type.as_deref() {
            Some("vit" | "deit") => Ok(Model::Vit(Box::new(Vit::load(dir, device)?))),
            // GPT-2's own parsing names anything else it cannot run.
            _ => Ok(Model::Gpt2(Box::new(Gpt2::load(dir, device)?))),
        }
    }

    /// `gpt2`, `vit` or `deit`.
    pub fn model_type(&self) -> &str {
        match self {
            Model::Gpt2(_) => "gpt2",
            Model::Vit(m) => &m.config.model_type,
        }
    }

    /// The Hugging Face class the weights belong to (`GPT2LMHeadModel`, `ViTForImageClassification`).
    pub fn architecture(&self) -> &str {
        match self {
            Model::Gpt2(_) => "GPT2LMHeadModel",
            Model::Vit(m) => &m.config.architecture,
        }
    }

    pub fn input_kind(&self) -> InputKind {
        match self {
            Model::Gpt2(m) => InputKind::Tokens {
                vocab: m.config.vocab_size,
                n_ctx: m.config.n_positions,
            },
            Model::Vit(m) => m.input_kind(),
        }
    }

    /// The language model, for what only takes tokens.
    pub fn as_gpt2(&self) -> Option<&Gpt2> {
        match self {
            Model::Gpt2(m) => Some(m),
            Model::Vit(_) => None,
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Model::Gpt2(m) => m.device(),
            Model::Vit(m) => m.device(),
        }
    }

    /// Hook names in the order the forward pass reaches them.
    pub fn hook_names(&self) -> &[String] {
        match self {
            Model::Gpt2(m) => m.hook_names(),
            Model::Vit(m) => m.hook_names(),
        }
    }

    /// Every weight under its Hugging Face name.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        match self {
            Model::Gpt2(m) => m.weights(),
            Model::Vit(m) => m.weights(),
        }
    }

    pub fn parameter_count(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.parameter_count(),
            Model::Vit(m) => m.parameter_count(),
        }
    }

    /// Layers, residual width, heads and MLP width: `(n_layers, d_model, n_heads, d_mlp)`.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        match self {
            Model::Gpt2(m) => {
                let c = &m.config;
                (c.n_layer, c.d_model, c.n_head, c.d_mlp)
            }
            Model::Vit(m) => {
                let c = &m.config;
                (c.n_layer, c.d_model, c.n_head, c.d_mlp)
            }
        }
    }

    /// The longest sequence a pass runs over: the context length of a language model, the CLS,
    /// distillation and patch tokens of a vision model.
    pub fn n_ctx(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.n_positions,
            Model::Vit(m) => m.config.seq_len(),
        }
    }

    /// Checks `input` against what the model takes, as a pass would before it starts.
    pub fn check_input(&self, input: &Tensor) -> Result<(), ModelError> {
        match self {
            Model::Gpt2(m) => Architecture::check_input(m.as_ref(), input),
            Model::Vit(m) => Architecture::check_input(m.as_ref(), input),
        }
    }

    /// Positions in a pass over `input` (`[batch, pos]` ids, or `[batch, C, H, W]` pixels).
    pub fn seq_len(&self, input: &Tensor) -> usize {
        match self {
            Model::Gpt2(_) => input.dims().get(1).copied().unwrap_or(0),
            Model::Vit(m) => m.config.seq_len(),
        }
    }

    /// Runs the model on `input` (token ids or pixels), giving up between layers once `stop` fires.
    pub fn forward_until(
        &self,
        input: &Tensor,
        spec: &RunSpec,
        stop: &StopSignal,
    ) -> Result<RunOutput, ModelError> {
        match self {
            Model::Gpt2(m) => m.forward_until(input, spec, stop),
            Model::Vit(m) => m.forward_until(input, spec, stop),
        }
    }

    /// A forward pass with gradients: see `Gpt2::forward_with_grad`.
    pub fn forward_with_grad(
        &self,
        input: &Tensor,
        spec: &RunSpec,
        grad: &GradSpec,
        stop: &StopSignal,
    ) -> Result<GradOutput, ModelError> {
        match self {
            Model::Gpt2(m) => m.forward_with_grad(input, spec, grad, stop),
            Model::Vit(m) => m.forward_with_grad(input, spec, grad, stop),
        }
    }

    /// Peak bytes of a pass over an input of shape `dims`, with gradients when `grad` is set.
    pub fn pass_bytes(
        &self,
        dims: &[usize],
        spec: &RunSpec,
        grad: bool,
    ) -> Result<u64, ModelError> {
        let batch = dims.first().copied().unwrap_or(0);
        let seq = dims.get(1).copied().unwrap_or(0);
        match (self, grad) {
            (Model::Gpt2(m), false) => m.forward_bytes(batch, seq, spec),
            (Model::Gpt2(m), true) => m.forward_with_grad_bytes(batch, seq, spec),
            (Model::Vit(m), false) => m.forward_bytes(batch, spec),
            (Model::Vit(m), true) => m.forward_with_grad_bytes(batch, spec),
        }
    }
}
