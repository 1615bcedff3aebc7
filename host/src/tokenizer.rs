//! `tokenizer.json` through the `tokenizers` crate (pure Rust, no network).

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

/// The beginning-of-sequence token GPT-2 tokenizers use (also its end-of-text and padding).
pub const GPT2_BOS: &str = "<|endoftext|>";

/// A model directory's tokenizer.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct TokenizerError {
    pub path: PathBuf,
    pub why: String,
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        if !path.exists() {
            return Err(TokenizerError {
                path: path.to_path_buf(),
                why: "not found; the model directory needs a tokenizer.json to take --text (or pass --ids)".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| TokenizerError {
            path: path.to_path_buf(),
            why: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Token ids for `text`, as the Hugging Face tokenizer gives them when called on the text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode(text, true).map_err(|e| TokenizerError {
            path: self.path.clone(),
            why: format!("cannot encode text: {e}"),
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(|e| TokenizerError {
            path: self.path.clone(),
            why: format!("cannot decode ids: {e}"),
        })
    }

    /// The id of a token given as text (`<|endoftext|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The beginning-of-sequence token GPT-2 tokenizers use (also their end-of-text and padding),
    /// if the vocabulary has it.
    pub fn bos_id(&self) -> Option<u32> {
        self.token_id(GPT2_BOS)
    }

    /// The text each token stands for on its own (`" the"`, with the leading space a byte-level BPE
    /// folds into the token), decoded one id at a time.
    pub fn token_texts(&self, ids: &[u32]) -> Result<Vec<String>, TokenizerError> {
        ids.iter().map(|&id| self.decode(&[id])).collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
