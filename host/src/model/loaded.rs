//! A model with its tokenizer, loaded once and shared by the runs that use it.

use std::path::{Path, PathBuf};

use loupe_kernels::Device;

use super::{InputKind, Model, ModelError};
use crate::tokenizer::TextTokenizer;

pub struct LoadedModel {
    pub dir: PathBuf,
    pub model: Model,
    /// `None` when the directory has no `tokenizer.json`: runs can still feed token ids.
    pub tokenizer: Option<TextTokenizer>,
    pub bos: Option<u32>,
}

impl LoadedModel {
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let model = Model::load(dir, device)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = if tokenizer_path.exists() {
            Some(
                TextTokenizer::load(&tokenizer_path).map_err(|e| ModelError::Io {
                    path: e.path,
                    why: e.why,
                })?,
            )
        } else {
            None
        };
        let vocab = match model.input_kind() {
            InputKind::Tokens { vocab, .. } => vocab,
            InputKind::Pixels { .. } => 0,
        };
        let bos = tokenizer
            .as_ref()
            .and_then(TextTokenizer::bos_id)
            .filter(|&id| (id as usize) < vocab);
        Ok(LoadedModel {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            bos,
        })
    }
}
