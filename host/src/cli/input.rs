//! The input of `trace` and `grad`, whichever kind the model takes: token ids (`--ids`, `--text`) for
//! a language model, images (`--images`, `--pixels`) for a vision model. Giving the wrong kind is one
//! error naming the model.

use anyhow::{Result, bail};
use loupe_kernels::{Device, Tensor};

use super::images::ImageInput;
use super::trace::TokenInput;
use crate::data::images::ImageBatch;
use crate::model::Model;

/// A batch ready for a forward pass.
pub enum ModelInput {
    Tokens {
        /// The sequences, for labels given per position.
        batch: Vec<Vec<u32>>,
        ids: Tensor,
    },
    Images(ImageBatch),
}

impl ModelInput {
    /// Reads what `tokens` or `images` give, as `model` takes it.
    pub fn load(
        model: &Model,
        tokens: &TokenInput,
        images: &ImageInput,
        device: Device,
    ) -> Result<Self> {
        match model {
            Model::Gpt2(gpt2) => {
                if images.given() {
                    bail!(
                        "{} is a language model: give tokens (--ids or --text), not images",
                        tokens.model.display()
                    );
                }
                let batch = tokens.batch()?;
                let ids = gpt2.input_ids(&batch)?;
                Ok(ModelInput::Tokens { batch, ids })
            }
            Model::Vit(vit) => {
                let kind = &vit.config.model_type;
                if tokens.given() {
                    bail!(
                        "{} is a {kind} image classifier: give --images or --pixels, not tokens",
                        tokens.model.display()
                    );
                }
                if !images.given() {
                    bail!(
                        "{} is a {kind} image classifier: give --images or --pixels",
                        tokens.model.display()
                    );
                }
                Ok(ModelInput::Images(images.load(vit, device)?))
            }
        }
    }

    /// What the forward pass is fed.
    pub fn tensor(&self) -> &Tensor {
        match self {
            ModelInput::Tokens { ids, .. } => ids,
            ModelInput::Images(batch) => &batch.pixels,
        }
    }

    /// `2 × 12 tokens`, `4 images`, for the closing line.
    pub fn describe(&self) -> String {
        match self {
            ModelInput::Tokens { batch, .. } => {
                format!("{} × {} tokens", batch.len(), batch[0].len())
            }
            ModelInput::Images(batch) => {
                let n = batch.names.len();
                format!("{n} image{}", if n == 1 { "" } else { "s" })
            }
        }
    }

    /// The input as saved beside the outputs: `input_ids`, or `pixel_values`.
    pub fn saved(&self) -> (String, Tensor) {
        match self {
            ModelInput::Tokens { ids, .. } => ("input_ids".into(), ids.clone()),
            ModelInput::Images(batch) => ("pixel_values".into(), batch.pixels.clone()),
        }
    }
}
