//! Models loaded from Hugging Face directories, run with hook points named as in TransformerLens.

mod arch;
mod block;
mod config;
mod family;
mod gpt2;
pub mod grad;
mod hooks;
mod intervention;
mod loaded;
mod pass;
pub mod preprocess;
pub mod random;
mod vit;
mod vit_config;
mod weights;

use std::path::{Path, PathBuf};

pub use arch::InputKind;
pub use config::{Activation, Gpt2Config};
pub use family::Model;
pub use gpt2::Gpt2;
pub use grad::{GradOutput, GradSpec, Objective};
pub use hooks::{
    HookLayout, HookPlan, gpt2_hook_names, gpt2_hook_shape, select_hooks, transformer_hook_names,
};
pub use intervention::{Intervention, InterventionAction};
pub use loaded::LoadedModel;
pub use vit::Vit;
pub use vit_config::{VitConfig, VitHead};
pub use weights::WeightStore;

use loupe_kernels::Tensor;
use std::collections::BTreeMap;

/// Every way loading or running a model can fail. Each message names the file, tensor or hook at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Weights { path: PathBuf, why: String },
    #[error("{0}")]
    Hook(String),
    #[error("{0}")]
    Input(String),
    #[error("{context}: {source}")]
    Engine {
        context: String,
        source: loupe_kernels::Error,
    },
}

impl ModelError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "not found; pass a Hugging Face model directory (config.json, model.safetensors, tokenizer.json)".to_string(),
            _ => format!("cannot read: {e}"),
        };
        ModelError::Io {
            path: path.to_path_buf(),
            why,
        }
    }
}

/// Reads a JSON file of a model directory and parses it with `parse`, whose complaint becomes a
/// [`ModelError::Config`] naming the file.
pub(crate) fn read_json_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    parse(&text).map_err(|why| ModelError::Config {
        path: path.to_path_buf(),
        why,
    })
}

/// What a forward pass should do besides computing: which hooks to keep, which to change, and whether
/// the logits are wanted (if not, computation stops after the last hook the plan needs).
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Hook names or globs (`blocks.*.attn.hook_pattern`, `*`) whose activations are returned.
    pub capture: Vec<String>,
    pub interventions: Vec<Intervention>,
    /// Skip the unembedding and stop as early as the captures and interventions allow.
    pub skip_logits: bool,
}

/// What a forward pass returns.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// `[batch, pos, vocab]`, unless the run stopped early.
    pub logits: Option<Tensor>,
    /// Captured activations by hook name, shaped as TransformerLens shapes them.
    pub captures: BTreeMap<String, Tensor>,
}

/// A model directory's pieces, resolved.
pub struct ModelDir {
    pub root: PathBuf,
}

impl ModelDir {
    pub fn new(root: &Path) -> Result<Self, ModelError> {
        if !root.is_dir() {
            return Err(ModelError::Io {
                path: root.to_path_buf(),
                why: "not a directory; pass a Hugging Face model directory (config.json, model.safetensors, tokenizer.json)".into(),
            });
        }
        Ok(ModelDir {
            root: root.to_path_buf(),
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }
}
