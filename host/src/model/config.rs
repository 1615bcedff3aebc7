//! `config.json` of a Hugging Face GPT-2 directory, validated into the sizes the runtime needs.

use std::path::Path;

use serde::Deserialize;

use super::ModelError;

/// The nonlinearity between the two MLP matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation GPT-2 was trained with.
    GeluTanh,
    /// `gelu`: the exact, erf-based GELU.
    GeluErf,
    Relu,
}

/// The sizes and conventions of a GPT-2 family model.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub d_model: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_mlp: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
    pub activation_name: String,
    pub tie_word_embeddings: bool,
    pub scale_attn_weights: bool,
    pub scale_attn_by_inverse_layer_idx: bool,
}

impl Gpt2Config {
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        super::read_json_file(path, Self::from_json)
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let is_gpt2 = raw.model_type.as_deref() == Some("gpt2")
            || (raw.model_type.is_none()
                && raw.architectures.iter().any(|a| a.starts_with("GPT2")));
        if !is_gpt2 {
            let found = raw
                .model_type
                .map(|m| format!("model_type \"{m}\""))
                .unwrap_or_else(|| format!("architectures {:?}", raw.architectures));
            return Err(format!(
                "unknown architecture ({found}); loupe can load: gpt2, vit, deit"
            ));
        }
        let need = |v: Option<usize>, key: &str| v.ok_or_else(|| format!("key `{key}` is missing"));
        let d_model = need(raw.n_embd, "n_embd")?;
        let n_head = need(raw.n_head, "n_head")?;
        let n_layer = need(raw.n_layer, "n_layer")?;
        let vocab_size = need(raw.vocab_size, "vocab_size")?;
        let n_positions = need(raw.n_positions.or(raw.n_ctx), "n_positions")?;
        for (key, v) in [
            ("n_embd", d_model),
            ("n_head", n_head),
            ("vocab_size", vocab_size),
            ("n_positions", n_positions),
        ] {
            if v == 0 {
                return Err(format!("key `{key}` must be positive"));
            }
        }
        if d_model % n_head != 0 {
            return Err(format!(
                "`n_embd` ({d_model}) is not divisible by `n_head` ({n_head})"
            ));
        }
        let activation_name = raw.activation_function.unwrap_or_else(|| "gelu_new".into());
        let activation = match activation_name.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            "relu" => Activation::Relu,
            other => {
                return Err(format!(
                    "`activation_function` \"{other}\" is not supported (use gelu_new, gelu_pytorch_tanh, gelu or relu)"
                ));
            }
        };
        let layer_norm_eps = raw.layer_norm_epsilon.unwrap_or(1e-5);
        if !(layer_norm_eps >= 0.0 && layer_norm_eps.is_finite()) {
            return Err("`layer_norm_epsilon` must be a non-negative number".into());
        }
        Ok(Gpt2Config {
            vocab_size,
            n_positions,
            d_model,
            n_layer,
            n_head,
            d_mlp: raw.n_inner.unwrap_or(4 * d_model),
            layer_norm_eps,
            activation,
            activation_name,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(true),
            scale_attn_weights: raw.scale_attn_weights.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: raw.scale_attn_by_inverse_layer_idx.unwrap_or(false),
        })
    }

    /// The `config.json` Hugging Face writes for these sizes.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_embd": self.d_model,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": if self.d_mlp == 4 * self.d_model { serde_json::Value::Null } else { self.d_mlp.into() },
            "activation_function": self.activation_name,
            "layer_norm_epsilon": self.layer_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "reorder_and_upcast_attn": false,
            "attn_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "resid_pdrop": 0.0,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "initializer_range": 0.02,
            "dtype": "float32",
        })
    }
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    n_embd: Option<usize>,
    n_head: Option<usize>,
    n_layer: Option<usize>,
    n_inner: Option<usize>,
    vocab_size: Option<usize>,
    n_positions: Option<usize>,
    n_ctx: Option<usize>,
    layer_norm_epsilon: Option<f32>,
    activation_function: Option<String>,
    tie_word_embeddings: Option<bool>,
    scale_attn_weights: Option<bool>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"model_type":"gpt2","n_embd":8,"n_head":2,"n_layer":1,"vocab_size":10,"n_positions":4}"#;

    #[test]
    fn defaults_follow_hugging_face() {
        let c = Gpt2Config::from_json(MINIMAL).unwrap();
        assert_eq!(c.d_mlp, 32);
        assert_eq!(c.d_head(), 4);
        assert_eq!(c.activation, Activation::GeluTanh);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.layer_norm_eps, 1e-5);
        let round_trip = Gpt2Config::from_json(&c.to_hf_json().to_string()).unwrap();
        assert_eq!(round_trip, c);
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let err = Gpt2Config::from_json(r#"{"model_type":"bert"}"#).unwrap_err();
        assert!(
            err.contains("unknown architecture (model_type \"bert\")"),
            "{err}"
        );
        let err = Gpt2Config::from_json(r#"{"model_type":"gpt2","n_head":2}"#).unwrap_err();
        assert!(err.contains("`n_embd` is missing"), "{err}");
        let err = Gpt2Config::from_json("{not json").unwrap_err();
        assert!(err.contains("malformed JSON"), "{err}");
        let err =
            Gpt2Config::from_json(&MINIMAL.replace("\"n_head\":2", "\"n_head\":3")).unwrap_err();
        assert!(err.contains("not divisible"), "{err}");
        let err =
            Gpt2Config::from_json(&MINIMAL.replace("}", ",\"activation_function\":\"swish\"}"))
                .unwrap_err();
        assert!(err.contains("swish"), "{err}");
    }
}
