//! The SAELens v6 directory format: `cfg.json`, `sae_weights.safetensors` (the PyTorch state dict,
//! loaded strictly: exact names and shapes) and `sparsity.safetensors` (`log10` firing frequencies).

use loupe_plugin_api::prelude::*;
use serde_json::{Map, Value, json};

use crate::arch::{Activation, Sae};

/// Provenance written into `cfg.json`: SAELens keeps its `metadata`, and drops unknown top-level keys on
/// load, so loupe's own record goes top-level under `loupe`.
pub struct SaveInfo<'a> {
    pub hook: &'a str,
    pub model_name: Option<String>,
    pub context_size: Option<usize>,
    pub prepend_bos: bool,
    pub exclude_bos: bool,
    pub loupe: Value,
}

const WEIGHTS: &str = "sae_weights.safetensors";
const CONFIG: &str = "cfg.json";
const SPARSITY: &str = "sparsity.safetensors";

/// The `cfg.json` of `sae` (weights already folded: `normalize_activations` is `none`).
pub fn config(sae: &Sae, info: &SaveInfo) -> Value {
    let mut cfg = json!({
        "architecture": sae.activation.architecture_name(),
        "d_in": sae.d_in(),
        "d_sae": sae.d_sae(),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": if info.hook.ends_with("hook_z") { "hook_z" } else { "none" },
        "metadata": {
            "sae_lens_version": "6.0.0",
            "sae_lens_training_version": "6.0.0",
            "model_name": info.model_name,
            "hook_name": info.hook,
            "hook_head_index": null,
            "context_size": info.context_size,
            "prepend_bos": info.prepend_bos,
            "exclude_special_tokens": info.exclude_bos,
            "dataset_path": null,
            "neuronpedia_id": null,
        },
        "loupe": info.loupe,
    });
    if let Activation::TopK { k, rescale } = &sae.activation {
        cfg["k"] = json!(k);
        cfg["rescale_acts_by_decoder_norm"] = json!(rescale);
    }
    cfg
}

/// Writes `dir/cfg.json`, `dir/sae_weights.safetensors` and, given firing frequencies, `dir/sparsity.safetensors`.
pub fn save(dir: &str, sae: &Sae, info: &SaveInfo, frequencies: Option<&Tensor>) -> Result<()> {
    report::save_json(&format!("{dir}/{CONFIG}"), &config(sae, info))?;
    let mut tensors: Vec<(&str, &Tensor)> = vec![
        ("W_enc", &sae.w_enc),
        ("b_enc", &sae.b_enc),
        ("W_dec", &sae.w_dec),
        ("b_dec", &sae.b_dec),
    ];
    if let Activation::JumpRelu { threshold } = &sae.activation {
        tensors.push(("threshold", threshold));
    }
    report::save_tensors(&format!("{dir}/{WEIGHTS}"), &tensors)?;
    if let Some(freq) = frequencies {
        let log = freq
            .affine(1.0, 1e-10)?
            .log()?
            .affine(1.0 / std::f32::consts::LN_10, 0.0)?;
        report::save_tensors(&format!("{dir}/{SPARSITY}"), &[("sparsity", &log)])?;
    }
    Ok(())
}

/// What `cfg.json` says that loading needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub architecture: String,
    pub d_in: usize,
    pub d_sae: usize,
    pub k: Option<usize>,
    pub rescale: bool,
    pub apply_b_dec_to_input: bool,
    pub hook: Option<String>,
}

fn load_error(dir: &str, message: String) -> Error {
    Error::invalid("sae.load", format!("{dir}: {message}"))
}

/// Reads a v6 `cfg.json` (and the pre-v6 key names SAELens itself still accepts).
pub fn parse_config(dir: &str, text: &str) -> Result<LoadedConfig> {
    let cfg: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| load_error(dir, format!("{CONFIG} is not a JSON object: {e}")))?;
    let meta = cfg.get("metadata").and_then(Value::as_object);
    let get = |key: &str| cfg.get(key).or_else(|| meta.and_then(|m| m.get(key)));
    let size = |key: &str| -> Result<usize> {
        get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| load_error(dir, format!("{CONFIG} has no positive integer `{key}`")))
    };
    let k = get("k")
        .or_else(|| cfg.get("activation_fn_kwargs").and_then(|a| a.get("k")))
        .and_then(Value::as_u64)
        .map(|v| v as usize);
    let architecture = match get("architecture").and_then(Value::as_str) {
        Some(a) => a.to_string(),
        // Pre-v6 files: TopK is an activation function of the standard SAE.
        None if get("activation_fn")
            .or(get("activation_fn_str"))
            .and_then(Value::as_str)
            == Some("topk") =>
        {
            "topk".to_string()
        }
        None => "standard".to_string(),
    };
    match get("normalize_activations") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::String(s)) if s == "none" => {}
        Some(other) => {
            return Err(load_error(
                dir,
                format!(
                    "normalize_activations is {other}; loupe reads SAEs whose input scaling is folded into the weights (`none`)"
                ),
            ));
        }
    }
    let config = LoadedConfig {
        d_in: size("d_in")?,
        d_sae: size("d_sae")?,
        k,
        rescale: get("rescale_acts_by_decoder_norm")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        apply_b_dec_to_input: get("apply_b_dec_to_input")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        hook: get("hook_name")
            .or(get("hook_point"))
            .and_then(Value::as_str)
            .map(str::to_string),
        architecture,
    };
    match config.architecture.as_str() {
        "standard" | "jumprelu" => {}
        "topk" if config.k.is_some_and(|k| k > 0) => {}
        "topk" => {
            return Err(load_error(
                dir,
                format!("{CONFIG} is a topk SAE without a positive `k`"),
            ));
        }
        other => {
            return Err(load_error(
                dir,
                format!(
                    "architecture `{other}` is not supported; loupe reads standard, topk and jumprelu SAEs"
                ),
            ));
        }
    }
    Ok(config)
}

/// Loads the SAE in directory dataset `name`.
pub fn load(name: &str) -> Result<(Sae, LoadedConfig)> {
    let dir = Directory::open(name)?;
    let config = parse_config(name, &dir.read_text(CONFIG)?)?;
    let mut tensors = dir.read_tensors(WEIGHTS)?;
    let mut take = |key: &str, shape: &[usize]| -> Result<Tensor> {
        let at = tensors.iter().position(|(n, _)| n == key).ok_or_else(|| {
            load_error(
                name,
                format!(
                    "{WEIGHTS} has no tensor `{key}` (a {} SAE needs it)",
                    config.architecture
                ),
            )
        })?;
        let (_, t) = tensors.swap_remove(at);
        if t.shape() != shape {
            return Err(load_error(
                name,
                format!(
                    "{WEIGHTS}: `{key}` has shape {:?}; cfg.json says {shape:?}",
                    t.shape()
                ),
            ));
        }
        if t.dtype() != DType::F32 {
            return Err(load_error(
                name,
                format!("{WEIGHTS}: `{key}` holds integers, not floats"),
            ));
        }
        Ok(t)
    };
    let (d, m) = (config.d_in, config.d_sae);
    let w_enc = take("W_enc", &[d, m])?;
    let b_enc = take("b_enc", &[m])?;
    let w_dec = take("W_dec", &[m, d])?;
    let b_dec = take("b_dec", &[d])?;
    let activation = match config.architecture.as_str() {
        "standard" => Activation::Standard,
        "topk" => Activation::TopK {
            k: config.k.unwrap_or(0),
            rescale: config.rescale,
        },
        _ => Activation::JumpRelu {
            threshold: take("threshold", &[m])?,
        },
    };
    Ok((
        Sae {
            activation,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            apply_b_dec_to_input: config.apply_b_dec_to_input,
        },
        config,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_v6_topk_config_saelens_writes() {
        let text = r#"{"d_in": 64, "d_sae": 256, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": true, "normalize_activations": "none", "reshape_activations": "none", "metadata": {"sae_lens_version": "6.54.12", "hook_name": "blocks.1.hook_resid_pre", "context_size": 11}, "k": 8, "rescale_acts_by_decoder_norm": false, "architecture": "topk"}"#;
        let c = parse_config("sae", text).unwrap();
        assert_eq!(c.architecture, "topk");
        assert_eq!((c.d_in, c.d_sae, c.k), (64, 256, Some(8)));
        assert!(!c.rescale && c.apply_b_dec_to_input);
        assert_eq!(c.hook.as_deref(), Some("blocks.1.hook_resid_pre"));
    }

    #[test]
    fn reads_pre_v6_names() {
        let text = r#"{"d_in": 8, "d_sae": 16, "hook_point": "blocks.0.hook_resid_pre", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}}"#;
        let c = parse_config("sae", text).unwrap();
        assert_eq!(c.architecture, "topk");
        assert_eq!(c.k, Some(4));
        assert_eq!(c.hook.as_deref(), Some("blocks.0.hook_resid_pre"));
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let gated = r#"{"d_in": 8, "d_sae": 16, "architecture": "gated"}"#;
        assert!(
            parse_config("sae", gated)
                .unwrap_err()
                .message
                .contains("`gated` is not supported")
        );
        let scaled = r#"{"d_in": 8, "d_sae": 16, "normalize_activations": "layer_norm"}"#;
        assert!(
            parse_config("sae", scaled)
                .unwrap_err()
                .message
                .contains("normalize_activations")
        );
        let no_k = r#"{"d_in": 8, "d_sae": 16, "architecture": "topk"}"#;
        assert!(
            parse_config("sae", no_k)
                .unwrap_err()
                .message
                .contains("`k`")
        );
        let no_width = r#"{"d_sae": 16}"#;
        assert!(
            parse_config("sae", no_width)
                .unwrap_err()
                .message
                .contains("`d_in`")
        );
        assert!(
            parse_config("sae", "[1]")
                .unwrap_err()
                .message
                .contains("not a JSON object")
        );
    }
}
