//! `config.json` of a Hugging Face ViT or DeiT image classifier, validated into what the runtime needs.

use std::path::Path;

use serde::Deserialize;

use super::{Activation, ModelError};

/// How the classifier reads the final layer norm's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VitHead {
    /// `classifier(h[:, 0])`: `ViTForImageClassification`, `DeiTForImageClassification`.
    Cls,
    /// `(cls_classifier(h[:, 0]) + distillation_classifier(h[:, 1])) / 2`:
    /// `DeiTForImageClassificationWithTeacher`.
    ClsAndDistillation,
}

/// The sizes and conventions of a ViT-family classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    /// `vit` or `deit`: also the prefix of the encoder's weights.
    pub model_type: String,
    pub architecture: String,
    pub d_model: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_mlp: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
    pub activation_name: String,
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub qkv_bias: bool,
    /// DeiT's sequence carries a distillation token after the CLS token.
    pub distillation_token: bool,
    pub head: VitHead,
    /// Class names by index (`id2label`; `LABEL_i` where the config has none).
    pub labels: Vec<String>,
}

impl VitConfig {
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens in the sequence: CLS, the distillation token if any, then the patches row by row.
    pub fn seq_len(&self) -> usize {
        1 + usize::from(self.distillation_token) + self.grid() * self.grid()
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        super::read_json_file(path, Self::from_json)
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let model_type = raw.model_type.clone().unwrap_or_default();
        let architecture = raw.architectures.first().cloned().unwrap_or_default();
        let (distillation_token, head) = match (model_type.as_str(), architecture.as_str()) {
            ("vit", "ViTForImageClassification") => (false, VitHead::Cls),
            ("deit", "DeiTForImageClassification") => (true, VitHead::Cls),
            ("deit", "DeiTForImageClassificationWithTeacher") => {
                (true, VitHead::ClsAndDistillation)
            }
            (t @ ("vit" | "deit"), a) => {
                return Err(format!(
                    "architecture `{a}` of model_type \"{t}\" is not supported: loupe runs ViTForImageClassification, DeiTForImageClassification and DeiTForImageClassificationWithTeacher"
                ));
            }
            (t, _) => return Err(format!("model_type \"{t}\" is not a ViT or DeiT")),
        };
        let need = |v: Option<usize>, key: &str| match v {
            None => Err(format!("key `{key}` is missing")),
            Some(0) => Err(format!("key `{key}` must be positive")),
            Some(v) => Ok(v),
        };
        let d_model = need(raw.hidden_size, "hidden_size")?;
        let n_head = need(raw.num_attention_heads, "num_attention_heads")?;
        let n_layer = need(raw.num_hidden_layers, "num_hidden_layers")?;
        let d_mlp = need(raw.intermediate_size, "intermediate_size")?;
        let image_size = need(raw.image_size, "image_size")?;
        let patch_size = need(raw.patch_size, "patch_size")?;
        let channels = need(raw.num_channels.or(Some(3)), "num_channels")?;
        if d_model % n_head != 0 {
            return Err(format!(
                "hidden_size {d_model} is not divisible by num_attention_heads {n_head}"
            ));
        }
        if image_size % patch_size != 0 {
            return Err(format!(
                "image_size {image_size} is not a multiple of patch_size {patch_size}"
            ));
        }
        let activation_name = raw.hidden_act.unwrap_or_else(|| "gelu".into());
        let activation = match activation_name.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(format!(
                    "hidden_act \"{other}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
                ));
            }
        };
        let labels = match raw.id2label {
            Some(map) => labels_from_id2label(&map)?,
            None => {
                let n = need(raw.num_labels, "num_labels (or id2label)")?;
                (0..n).map(|i| format!("LABEL_{i}")).collect()
            }
        };
        Ok(VitConfig {
            model_type,
            architecture,
            d_model,
            n_layer,
            n_head,
            d_mlp,
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
            activation,
            activation_name,
            image_size,
            patch_size,
            channels,
            qkv_bias: raw.qkv_bias.unwrap_or(true),
            distillation_token,
            head,
            labels,
        })
    }

    /// A `config.json` Hugging Face reads back as this model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let id2label: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone().into()))
            .collect();
        let label2id: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i.into()))
            .collect();
        serde_json::json!({
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "hidden_size": self.d_model,
            "num_hidden_layers": self.n_layer,
            "num_attention_heads": self.n_head,
            "intermediate_size": self.d_mlp,
            "hidden_act": self.activation_name,
            "layer_norm_eps": self.layer_norm_eps,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_channels": self.channels,
            "qkv_bias": self.qkv_bias,
            "id2label": id2label,
            "label2id": label2id,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "initializer_range": 0.02,
            "dtype": "float32",
        })
    }
}

/// `id2label` (`{"0": "cat", ...}`) as a list; the ids must be exactly 0..n.
fn labels_from_id2label(
    map: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut labels = vec![None; map.len()];
    for (id, name) in map {
        let i: usize =
            id.parse().ok().filter(|&i| i < map.len()).ok_or_else(|| {
                format!("id2label has key \"{id}\"; keys must be 0..{}", map.len())
            })?;
        labels[i] = Some(name.clone());
    }
    Ok(labels.into_iter().map(Option::unwrap_or_default).collect())
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f32>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    num_channels: Option<usize>,
    qkv_bias: Option<bool>,
    num_labels: Option<usize>,
    id2label: Option<std::collections::BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEIT: &str = r#"{"architectures":["DeiTForImageClassificationWithTeacher"],"model_type":"deit",
        "hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":128,
        "image_size":32,"patch_size":8,"id2label":{"0":"cat","1":"dog"}}"#;

    #[test]
    fn reads_a_distilled_deit_and_round_trips() {
        let c = VitConfig::from_json(DEIT).unwrap();
        assert_eq!(c.head, VitHead::ClsAndDistillation);
        assert!(c.distillation_token);
        assert_eq!(c.seq_len(), 18);
        assert_eq!(c.labels, ["cat", "dog"]);
        assert_eq!(c.activation, Activation::GeluErf);
        let back = VitConfig::from_json(&c.to_hf_json().to_string()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let masked = DEIT.replace(
            "DeiTForImageClassificationWithTeacher",
            "DeiTForMaskedImageModeling",
        );
        let err = VitConfig::from_json(&masked).unwrap_err();
        assert!(err.contains("DeiTForMaskedImageModeling"), "{err}");
        let odd = DEIT.replace(r#""patch_size":8"#, r#""patch_size":7"#);
        assert!(
            VitConfig::from_json(&odd)
                .unwrap_err()
                .contains("patch_size")
        );
        let act = DEIT.replace(
            r#""model_type":"deit","#,
            r#""model_type":"deit","hidden_act":"swish","#,
        );
        assert!(VitConfig::from_json(&act).unwrap_err().contains("swish"));
    }
}
