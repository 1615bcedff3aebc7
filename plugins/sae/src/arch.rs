//! The inference-time SAE, in SAELens's conventions: `h = (x − b_dec) W_enc + b_enc`, latents `f` by
//! architecture, `x̂ = f W_dec + b_dec`. What training produces and what `load` reads are both this.

use loupe_plugin_api::prelude::*;

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Standard,
    TopK,
    BatchTopK,
    JumpRelu,
}

impl Architecture {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "standard" => Some(Architecture::Standard),
            "topk" => Some(Architecture::TopK),
            "batchtopk" => Some(Architecture::BatchTopK),
            "jumprelu" => Some(Architecture::JumpRelu),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::TopK => "topk",
            Architecture::BatchTopK => "batchtopk",
            Architecture::JumpRelu => "jumprelu",
        }
    }
}

/// How latents are activated at inference (SAELens's inference architectures).
#[derive(Debug)]
pub enum Activation {
    /// ReLU.
    Standard,
    /// The `k` largest of `h` (times the decoder-row norms when `rescale`), ReLU'd.
    TopK { k: usize, rescale: bool },
    /// `h` where `h > threshold`, else 0.
    JumpRelu { threshold: Tensor },
}

impl Activation {
    pub fn architecture_name(&self) -> &'static str {
        match self {
            Activation::Standard => "standard",
            Activation::TopK { .. } => "topk",
            Activation::JumpRelu { .. } => "jumprelu",
        }
    }
}

/// An SAE ready to encode and decode, in the units of the activations it was trained on.
pub struct Sae {
    pub activation: Activation,
    /// `[d_in, d_sae]`.
    pub w_enc: Tensor,
    /// `[d_sae]`.
    pub b_enc: Tensor,
    /// `[d_sae, d_in]`.
    pub w_dec: Tensor,
    /// `[d_in]`.
    pub b_dec: Tensor,
    /// SAELens's `apply_b_dec_to_input`.
    pub apply_b_dec_to_input: bool,
}

impl Sae {
    pub fn d_in(&self) -> usize {
        self.w_enc.shape()[0]
    }

    pub fn d_sae(&self) -> usize {
        self.w_enc.shape()[1]
    }

    /// Pre-activations `h` of rows `x` `[n, d_in]`.
    pub fn hidden_pre(&self, x: &Tensor) -> Result<Tensor> {
        if self.apply_b_dec_to_input {
            x.sub(&self.b_dec)?.linear(&self.w_enc, Some(&self.b_enc))
        } else {
            x.linear(&self.w_enc, Some(&self.b_enc))
        }
    }

    fn decoder_norms(&self) -> Result<Tensor> {
        self.w_dec.l2_norm(1, false)
    }

    /// Latent activations `[n, d_sae]`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.hidden_pre(x)?;
        match &self.activation {
            Activation::Standard => h.relu(),
            Activation::TopK { k, rescale } => {
                let h = if *rescale {
                    h.mul(&self.decoder_norms()?)?
                } else {
                    h
                };
                h.relu()?.keep_top_k((*k).min(self.d_sae()))
            }
            Activation::JumpRelu { threshold } => {
                let on = h.gt(threshold)?;
                h.relu()?.mul(&on)
            }
        }
    }

    /// Reconstructions `[n, d_in]` of latent activations.
    pub fn decode(&self, f: &Tensor) -> Result<Tensor> {
        match &self.activation {
            Activation::TopK { rescale: true, .. } => f
                .div(&self.decoder_norms()?)?
                .linear(&self.w_dec, Some(&self.b_dec)),
            _ => f.linear(&self.w_dec, Some(&self.b_dec)),
        }
    }
}
