//! Random-weight model directories in the Hugging Face layout, for tests and benchmarks: no download.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use loupe_kernels::{Device, Tensor};
use safetensors::{Dtype, tensor::TensorView};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

use super::{Activation, Gpt2Config, VitConfig, VitHead};

/// Text the random models' byte-level BPE tokenizer is trained on.
const TOKENIZER_CORPUS: &str = include_str!("../../../examples/tiny-corpus.txt");

/// Sizes with names: `tiny`, `vit-tiny` and `deit-tiny` for tests, the GPT-2 and ViT-B/16 sizes for
/// benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// A 2-layer GPT-2 with a 512-token vocabulary.
    Tiny,
    #[value(name = "gpt2-small")]
    Gpt2Small,
    #[value(name = "gpt2-medium")]
    Gpt2Medium,
    /// A 2-layer ViTForImageClassification on 32×32 images, 8×8 patches, 10 classes.
    #[value(name = "vit-tiny")]
    VitTiny,
    /// A 2-layer DeiTForImageClassificationWithTeacher on 32×32 images, with an ImageNet-style
    /// preprocessor_config.json (resize 36, crop 32, normalise).
    #[value(name = "deit-tiny")]
    DeitTiny,
    /// ViT-B/16: 224×224 images, 16×16 patches, 12 layers of width 768, 1000 classes.
    #[value(name = "vit-base")]
    VitBase,
}

/// How the weights are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageDtype {
    F32,
    F16,
    Bf16,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Gpt2Small => "gpt2-small",
            Preset::Gpt2Medium => "gpt2-medium",
            Preset::VitTiny => "vit-tiny",
            Preset::DeitTiny => "deit-tiny",
            Preset::VitBase => "vit-base",
        }
    }

    /// The sizes of a GPT-2 preset; `None` for a vision preset.
    pub fn config(self) -> Option<Gpt2Config> {
        let (n_layer, d_model, n_head, vocab_size, n_positions) = match self {
            Preset::Tiny => (2, 64, 4, 512, 128),
            Preset::Gpt2Small => (12, 768, 12, 50257, 1024),
            Preset::Gpt2Medium => (24, 1024, 16, 50257, 1024),
            Preset::VitTiny | Preset::DeitTiny | Preset::VitBase => return None,
        };
        Some(Gpt2Config {
            vocab_size,
            n_positions,
            d_model,
            n_layer,
            n_head,
            d_mlp: 4 * d_model,
            layer_norm_eps: 1e-5,
            activation: Activation::GeluTanh,
            activation_name: "gelu_new".into(),
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
        })
    }

    /// The sizes of a vision preset; `None` for a GPT-2 preset.
    pub fn vit_config(self) -> Option<VitConfig> {
        let (model_type, architecture, head, layers, d, heads, image, patch, classes) = match self {
            Preset::VitTiny => (
                "vit",
                "ViTForImageClassification",
                VitHead::Cls,
                2,
                64,
                4,
                32,
                8,
                10,
            ),
            Preset::DeitTiny => (
                "deit",
                "DeiTForImageClassificationWithTeacher",
                VitHead::ClsAndDistillation,
                2,
                64,
                4,
                32,
                8,
                10,
            ),
            Preset::VitBase => (
                "vit",
                "ViTForImageClassification",
                VitHead::Cls,
                12,
                768,
                12,
                224,
                16,
                1000,
            ),
            Preset::Tiny | Preset::Gpt2Small | Preset::Gpt2Medium => return None,
        };
        Some(VitConfig {
            model_type: model_type.into(),
            architecture: architecture.into(),
            d_model: d,
            n_layer: layers,
            n_head: heads,
            d_mlp: 4 * d,
            layer_norm_eps: 1e-12,
            activation: Activation::GeluErf,
            activation_name: "gelu".into(),
            image_size: image,
            patch_size: patch,
            channels: 3,
            qkv_bias: true,
            distillation_token: model_type == "deit",
            head,
            labels: (0..classes).map(|i| format!("LABEL_{i}")).collect(),
        })
    }
}

/// Writes `config.json`, `model.safetensors` (keys prefixed `transformer.`, as `save_pretrained`
/// writes them) and `tokenizer.json` into `out`.
pub fn write_random_model(
    preset: Preset,
    seed: u64,
    dtype: StorageDtype,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create directory", out.display()))?;
    let Some(config) = preset.config() else {
        let config = preset
            .vit_config()
            .context("a preset is either a GPT-2 or a vision model")?;
        return write_random_vit(&config, seed, dtype, out);
    };
    let config_json = serde_json::to_string_pretty(&config.to_hf_json())?;
    std::fs::write(out.join("config.json"), config_json)
        .with_context(|| format!("{}: cannot write config.json", out.display()))?;
    write_weights(&config, seed, dtype, &out.join("model.safetensors"))?;
    write_tokenizer(config.vocab_size, &out.join("tokenizer.json"))?;
    Ok(())
}

/// GPT-2's initialisation (normal(0, 0.02); residual projections scaled by 1/sqrt(2·n_layer)), with
/// layer norms and biases nudged off their defaults so conventions around them are exercised.
fn write_weights(config: &Gpt2Config, seed: u64, dtype: StorageDtype, path: &Path) -> Result<()> {
    let (d, i, v, p) = (
        config.d_model,
        config.d_mlp,
        config.vocab_size,
        config.n_positions,
    );
    let resid_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
    let mut specs: Vec<(String, Vec<usize>, f32, f32)> = vec![
        ("wte.weight".into(), vec![v, d], 0.0, 0.02),
        ("wpe.weight".into(), vec![p, d], 0.0, 0.01),
    ];
    for l in 0..config.n_layer {
        let h = format!("h.{l}");
        specs.extend([
            (format!("{h}.ln_1.weight"), vec![d], 1.0, 0.05),
            (format!("{h}.ln_1.bias"), vec![d], 0.0, 0.02),
            (format!("{h}.attn.c_attn.weight"), vec![d, 3 * d], 0.0, 0.02),
            (format!("{h}.attn.c_attn.bias"), vec![3 * d], 0.0, 0.02),
            (
                format!("{h}.attn.c_proj.weight"),
                vec![d, d],
                0.0,
                resid_std,
            ),
            (format!("{h}.attn.c_proj.bias"), vec![d], 0.0, 0.02),
            (format!("{h}.ln_2.weight"), vec![d], 1.0, 0.05),
            (format!("{h}.ln_2.bias"), vec![d], 0.0, 0.02),
            (format!("{h}.mlp.c_fc.weight"), vec![d, i], 0.0, 0.02),
            (format!("{h}.mlp.c_fc.bias"), vec![i], 0.0, 0.02),
            (format!("{h}.mlp.c_proj.weight"), vec![i, d], 0.0, resid_std),
            (format!("{h}.mlp.c_proj.bias"), vec![d], 0.0, 0.02),
        ]);
    }
    specs.push(("ln_f.weight".into(), vec![d], 1.0, 0.05));
    specs.push(("ln_f.bias".into(), vec![d], 0.0, 0.02));
    let specs = specs
        .into_iter()
        .map(|(name, shape, mean, std)| (format!("transformer.{name}"), shape, mean, std))
        .collect();
    write_normal_tensors(specs, seed, dtype, path)
}

/// A tensor to draw: name, shape, mean and standard deviation.
type NormalSpec = (String, Vec<usize>, f32, f32);

/// Draws each tensor from its normal distribution (seeded by `seed` and its index) and writes them
/// all to one safetensors file in `dtype`.
fn write_normal_tensors(
    specs: Vec<NormalSpec>,
    seed: u64,
    dtype: StorageDtype,
    path: &Path,
) -> Result<()> {
    let mut buffers: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (index, (name, shape, mean, std)) in specs.into_iter().enumerate() {
        let values = Tensor::randn(
            shape.clone(),
            mean,
            std,
            seed.wrapping_mul(1_000_003).wrapping_add(index as u64),
            Device::Cpu,
        )?
        .to_vec_f32()?;
        let bytes = match dtype {
            StorageDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            StorageDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            StorageDtype::Bf16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        };
        buffers.insert(name, (shape, bytes));
    }
    let st_dtype = match dtype {
        StorageDtype::F32 => Dtype::F32,
        StorageDtype::F16 => Dtype::F16,
        StorageDtype::Bf16 => Dtype::BF16,
    };
    let views = buffers
        .iter()
        .map(|(name, (shape, bytes))| {
            Ok((
                name.clone(),
                TensorView::new(st_dtype, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    safetensors::serialize_to_file(views, metadata, path)
        .with_context(|| format!("{}: cannot write weights", path.display()))?;
    Ok(())
}

/// A random ViT or DeiT classifier: `config.json`, `model.safetensors` in the hub layout and, for
/// DeiT, the `preprocessor_config.json` its image processor saves. Weights are normal(0, 0.02), with
/// layer norms, biases and the class / position tokens nudged off their defaults.
fn write_random_vit(config: &VitConfig, seed: u64, dtype: StorageDtype, out: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(&config.to_hf_json())?;
    std::fs::write(out.join("config.json"), json)
        .with_context(|| format!("{}: cannot write config.json", out.display()))?;
    if config.model_type == "deit" {
        let pre = serde_json::json!({
            "image_processor_type": "DeiTImageProcessor",
            "do_resize": true,
            "size": {"height": config.image_size + config.image_size / 8, "width": config.image_size + config.image_size / 8},
            "resample": 3,
            "do_center_crop": true,
            "crop_size": {"height": config.image_size, "width": config.image_size},
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        });
        std::fs::write(
            out.join("preprocessor_config.json"),
            serde_json::to_string_pretty(&pre)?,
        )
        .with_context(|| format!("{}: cannot write preprocessor_config.json", out.display()))?;
    }
    let (d, i, c, p) = (
        config.d_model,
        config.d_mlp,
        config.channels,
        config.patch_size,
    );
    let prefix = &config.model_type;
    let e = format!("{prefix}.embeddings");
    let mut specs: Vec<NormalSpec> = vec![
        (format!("{e}.cls_token"), vec![1, 1, d], 0.0, 0.1),
        (
            format!("{e}.position_embeddings"),
            vec![1, config.seq_len(), d],
            0.0,
            0.1,
        ),
        (
            format!("{e}.patch_embeddings.projection.weight"),
            vec![d, c, p, p],
            0.0,
            0.02,
        ),
        (
            format!("{e}.patch_embeddings.projection.bias"),
            vec![d],
            0.0,
            0.02,
        ),
    ];
    if config.distillation_token {
        specs.push((format!("{e}.distillation_token"), vec![1, 1, d], 0.0, 0.1));
    }
    let dense = |name: String, out: usize, inp: usize| {
        [
            (format!("{name}.weight"), vec![out, inp], 0.0, 0.02),
            (format!("{name}.bias"), vec![out], 0.0, 0.02),
        ]
    };
    let norm = |name: String| {
        [
            (format!("{name}.weight"), vec![d], 1.0, 0.05),
            (format!("{name}.bias"), vec![d], 0.0, 0.02),
        ]
    };
    for l in 0..config.n_layer {
        let layer = format!("{prefix}.encoder.layer.{l}");
        specs.extend(norm(format!("{layer}.layernorm_before")));
        for part in ["query", "key", "value"] {
            specs.extend(dense(format!("{layer}.attention.attention.{part}"), d, d));
        }
        specs.extend(dense(format!("{layer}.attention.output.dense"), d, d));
        specs.extend(norm(format!("{layer}.layernorm_after")));
        specs.extend(dense(format!("{layer}.intermediate.dense"), i, d));
        specs.extend(dense(format!("{layer}.output.dense"), d, i));
    }
    specs.extend(norm(format!("{prefix}.layernorm")));
    let heads: &[&str] = match config.head {
        VitHead::Cls => &["classifier"],
        VitHead::ClsAndDistillation => &["cls_classifier", "distillation_classifier"],
    };
    for head in heads {
        specs.extend(dense(head.to_string(), config.labels.len(), d));
    }
    write_normal_tensors(specs, seed, dtype, &out.join("model.safetensors"))
}

/// A GPT-2-style byte-level BPE with `<|endoftext|>` = 0, trained on the embedded corpus. It never
/// emits an id at or above `vocab_size`.
fn write_tokenizer(vocab_size: usize, path: &Path) -> Result<()> {
    let target = vocab_size.min(4096);
    if target < 257 {
        bail!("a byte-level tokenizer needs a vocabulary of at least 257 tokens, not {vocab_size}");
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(target)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_post_processor(Some(ByteLevel::default()))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(|e| anyhow::anyhow!("building the tokenizer: {e}"))?;
    tokenizer
        .train(&mut trainer, TOKENIZER_CORPUS.lines())
        .map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    tokenizer
        .save(path, false)
        .map_err(|e| anyhow::anyhow!("{}: cannot write tokenizer: {e}", path.display()))?;
    Ok(())
}
