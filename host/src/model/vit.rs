//! Vision transformers (HF `ViTForImageClassification`, `DeiTForImageClassification` and
//! `DeiTForImageClassificationWithTeacher`) with TransformerLens / ViT-Prisma hook points.
//!
//! The input is pixels in [0, 1], `[batch, channels, height, width]`; the preprocessor's
//! normalisation is the first step of the graph, so gradients with respect to `input` are in pixel
//! space. The sequence is `[CLS, (distillation), patch 0, …]`, patches row by row, CLS at position 0.

use std::path::Path;

use loupe_kernels::{Device, StopSignal, Tensor};

use super::arch::{self, Architecture, InputGrad, InputKind};
use super::block::{self, BlockShape, BlockWeights};
use super::grad::{GradOutput, GradSpec};
use super::hooks::{HookLayout, transformer_hook_layout, transformer_hook_names};
use super::pass::{Pass, Stop, engine};
use super::preprocess::Preprocessor;
use super::{ModelDir, ModelError, RunOutput, RunSpec, VitConfig, VitHead, WeightStore};

/// A Hugging Face `nn.Linear`: weight `[out, in]`, bias `[out]`.
#[derive(Clone)]
struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Dense {
    fn apply(&self, x: &Tensor) -> loupe_kernels::Result<Tensor> {
        x.linear_t(&self.weight, self.bias.as_ref())
    }
}

#[derive(Clone)]
struct Block {
    norm_before: (Tensor, Tensor),
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    norm_after: (Tensor, Tensor),
    mlp_in: Dense,
    mlp_out: Dense,
}

impl BlockWeights for Block {
    fn norm1(&self) -> (&Tensor, &Tensor) {
        (&self.norm_before.0, &self.norm_before.1)
    }

    fn norm2(&self) -> (&Tensor, &Tensor) {
        (&self.norm_after.0, &self.norm_after.1)
    }

    fn qkv(&self, x: &Tensor) -> loupe_kernels::Result<[Tensor; 3]> {
        Ok([
            self.query.apply(x)?,
            self.key.apply(x)?,
            self.value.apply(x)?,
        ])
    }

    fn attn_out(&self, z: &Tensor) -> loupe_kernels::Result<Tensor> {
        self.attn_out.apply(z)
    }

    fn mlp_in(&self, x: &Tensor) -> loupe_kernels::Result<Tensor> {
        self.mlp_in.apply(x)
    }

    fn mlp_out(&self, x: &Tensor) -> loupe_kernels::Result<Tensor> {
        self.mlp_out.apply(x)
    }
}

/// Every weight of a ViT; see `Gpt2`'s `Params` for why the forward pass reads them from here.
#[derive(Clone)]
pub(crate) struct Params {
    /// `vit` or `deit`: the model type, which prefixes the encoder's weight names.
    prefix: &'static str,
    /// `[d_model, channels, patch, patch]`: the stride-`patch` convolution that embeds the patches.
    patch: Dense,
    cls_token: Tensor,
    distillation_token: Option<Tensor>,
    position: Tensor,
    blocks: Vec<Block>,
    final_norm: (Tensor, Tensor),
    /// `(name, layer)`: `classifier`, or `cls_classifier` then `distillation_classifier`.
    heads: Vec<(&'static str, Dense)>,
}

impl Params {
    /// Every weight under its Hugging Face name, in a fixed order.
    fn each_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let prefix = self.prefix;
        let mut out: Vec<(String, &mut Tensor)> = Vec::new();
        let e = format!("{prefix}.embeddings");
        out.push((format!("{e}.cls_token"), &mut self.cls_token));
        if let Some(t) = &mut self.distillation_token {
            out.push((format!("{e}.distillation_token"), t));
        }
        out.push((format!("{e}.position_embeddings"), &mut self.position));
        push_dense(
            &mut out,
            format!("{e}.patch_embeddings.projection"),
            &mut self.patch,
        );
        for (l, b) in self.blocks.iter_mut().enumerate() {
            let layer = format!("{prefix}.encoder.layer.{l}");
            push_norm(
                &mut out,
                format!("{layer}.layernorm_before"),
                &mut b.norm_before,
            );
            push_dense(
                &mut out,
                format!("{layer}.attention.attention.query"),
                &mut b.query,
            );
            push_dense(
                &mut out,
                format!("{layer}.attention.attention.key"),
                &mut b.key,
            );
            push_dense(
                &mut out,
                format!("{layer}.attention.attention.value"),
                &mut b.value,
            );
            push_dense(
                &mut out,
                format!("{layer}.attention.output.dense"),
                &mut b.attn_out,
            );
            push_norm(
                &mut out,
                format!("{layer}.layernorm_after"),
                &mut b.norm_after,
            );
            push_dense(
                &mut out,
                format!("{layer}.intermediate.dense"),
                &mut b.mlp_in,
            );
            push_dense(&mut out, format!("{layer}.output.dense"), &mut b.mlp_out);
        }
        push_norm(
            &mut out,
            format!("{prefix}.layernorm"),
            &mut self.final_norm,
        );
        for (name, head) in &mut self.heads {
            push_dense(&mut out, name.to_string(), head);
        }
        out
    }
}

fn push_dense<'a>(out: &mut Vec<(String, &'a mut Tensor)>, name: String, d: &'a mut Dense) {
    out.push((format!("{name}.weight"), &mut d.weight));
    if let Some(b) = &mut d.bias {
        out.push((format!("{name}.bias"), b));
    }
}

fn push_norm<'a>(
    out: &mut Vec<(String, &'a mut Tensor)>,
    name: String,
    n: &'a mut (Tensor, Tensor),
) {
    out.push((format!("{name}.weight"), &mut n.0));
    out.push((format!("{name}.bias"), &mut n.1));
}

/// A loaded ViT or DeiT classifier.
pub struct Vit {
    pub config: VitConfig,
    pub preprocessor: Preprocessor,
    device: Device,
    params: Params,
    hook_names: Vec<String>,
    /// `scale` and `shift`, `[1, channels, 1, 1]`: the normalisation as `x · scale + shift`.
    normalize: Option<(Tensor, Tensor)>,
}

impl Vit {
    /// Loads `config.json`, `preprocessor_config.json` (if present) and the safetensors weights.
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let dir = ModelDir::new(dir)?;
        let config = VitConfig::from_file(&dir.config_path())?;
        let preprocessor = Preprocessor::load(&dir.root, &config)?;
        let store = WeightStore::open(&dir.root)?;
        Self::from_store(config, preprocessor, &store, device)
    }

    pub fn from_store(
        config: VitConfig,
        preprocessor: Preprocessor,
        store: &WeightStore,
        device: Device,
    ) -> Result<Self, ModelError> {
        let (d, i, c, p) = (
            config.d_model,
            config.d_mlp,
            config.channels,
            config.patch_size,
        );
        let get = |name: &str, shape: &[usize]| store.load(name, shape, device);
        let dense =
            |name: &str, out: usize, inp: &[usize], bias: bool| -> Result<Dense, ModelError> {
                let mut shape = vec![out];
                shape.extend_from_slice(inp);
                Ok(Dense {
                    weight: get(&format!("{name}.weight"), &shape)?,
                    bias: if bias {
                        Some(get(&format!("{name}.bias"), &[out])?)
                    } else {
                        None
                    },
                })
            };
        let norm = |name: &str| -> Result<(Tensor, Tensor), ModelError> {
            Ok((
                get(&format!("{name}.weight"), &[d])?,
                get(&format!("{name}.bias"), &[d])?,
            ))
        };
        let prefix: &'static str = if config.model_type == "deit" {
            "deit"
        } else {
            "vit"
        };
        let e = format!("{prefix}.embeddings");
        let blocks = (0..config.n_layer)
            .map(|l| {
                let layer = format!("{prefix}.encoder.layer.{l}");
                let attn = format!("{layer}.attention.attention");
                Ok(Block {
                    norm_before: norm(&format!("{layer}.layernorm_before"))?,
                    query: dense(&format!("{attn}.query"), d, &[d], config.qkv_bias)?,
                    key: dense(&format!("{attn}.key"), d, &[d], config.qkv_bias)?,
                    value: dense(&format!("{attn}.value"), d, &[d], config.qkv_bias)?,
                    attn_out: dense(&format!("{layer}.attention.output.dense"), d, &[d], true)?,
                    norm_after: norm(&format!("{layer}.layernorm_after"))?,
                    mlp_in: dense(&format!("{layer}.intermediate.dense"), i, &[d], true)?,
                    mlp_out: dense(&format!("{layer}.output.dense"), d, &[i], true)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let n_labels = config.labels.len();
        let head_names: &[&'static str] = match config.head {
            VitHead::Cls => &["classifier"],
            VitHead::ClsAndDistillation => &["cls_classifier", "distillation_classifier"],
        };
        let heads = head_names
            .iter()
            .map(|&name| Ok((name, dense(name, n_labels, &[d], true)?)))
            .collect::<Result<Vec<_>, ModelError>>()?;
        let params = Params {
            prefix,
            patch: dense(
                &format!("{e}.patch_embeddings.projection"),
                d,
                &[c, p, p],
                true,
            )?,
            cls_token: get(&format!("{e}.cls_token"), &[1, 1, d])?,
            distillation_token: if config.distillation_token {
                Some(get(&format!("{e}.distillation_token"), &[1, 1, d])?)
            } else {
                None
            },
            position: get(
                &format!("{e}.position_embeddings"),
                &[1, config.seq_len(), d],
            )?,
            blocks,
            final_norm: norm(&format!("{prefix}.layernorm"))?,
            heads,
        };
        let normalize = match preprocessor.normalization(c) {
            Some((scale, shift)) => {
                let t = |v: Vec<f32>| {
                    Tensor::from_vec_f32(v, [1, c, 1, 1], device)
                        .map_err(engine("the preprocessor's normalisation"))
                };
                Some((t(scale)?, t(shift)?))
            }
            None => None,
        };
        Ok(Vit {
            hook_names: transformer_hook_names(config.n_layer),
            params,
            normalize,
            preprocessor,
            device,
            config,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn input_kind(&self) -> InputKind {
        InputKind::Pixels {
            channels: self.config.channels,
            height: self.config.image_size,
            width: self.config.image_size,
            labels: self.config.labels.clone(),
        }
    }

    /// Hook names in the order the forward pass reaches them.
    pub fn hook_names(&self) -> &[String] {
        &self.hook_names
    }

    /// Every weight under its Hugging Face name (`vit.encoder.layer.0.intermediate.dense.weight`), in
    /// the stored layout.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        arch::weights(self)
    }

    pub fn parameter_count(&self) -> usize {
        self.weights().iter().map(|(_, w)| w.numel()).sum()
    }

    /// The shape of a hook's activation for a batch of `batch` images.
    pub fn hook_layout(&self, name: &str) -> HookLayout {
        let c = &self.config;
        transformer_hook_layout(name, c.d_model, c.n_head, c.d_mlp)
    }

    /// Bytes a forward pass over `batch` images allocates at its peak, roughly (see `Gpt2::forward_bytes`).
    pub fn forward_bytes(&self, batch: usize, spec: &RunSpec) -> Result<u64, ModelError> {
        let c = &self.config;
        let seq = c.seq_len();
        let captured = super::select_hooks(&self.hook_names, &spec.capture)?;
        let numel = |shape: Vec<usize>| shape.iter().map(|&d| d as u64).product::<u64>();
        let mut elements: u64 = captured
            .iter()
            .map(|h| numel(self.hook_layout(h).shape(batch, seq)))
            .sum();
        let tokens = (batch * seq) as u64;
        let pixels = (batch * c.channels * c.image_size * c.image_size) as u64;
        elements += 3 * pixels
            + tokens * (5 * c.d_model + c.d_mlp) as u64
            + numel(vec![batch, c.n_head, seq, seq]);
        Ok(elements * 4)
    }

    /// [`Vit::forward_bytes`] with what the tape keeps and the gradients (see `Gpt2`'s).
    pub fn forward_with_grad_bytes(&self, batch: usize, spec: &RunSpec) -> Result<u64, ModelError> {
        let c = &self.config;
        let seq = c.seq_len();
        let tokens = (batch * seq) as u64;
        let pattern = (batch * c.n_head * seq * seq) as u64;
        let per_layer = tokens * (12 * c.d_model + 3 * c.d_mlp) as u64 + 2 * pattern;
        let pixels = (batch * c.channels * c.image_size * c.image_size) as u64;
        let saved = per_layer * c.n_layer as u64 + 4 * pixels;
        let grads = self.parameter_count() as u64 + per_layer + pixels;
        Ok(self.forward_bytes(batch, spec)? + (saved + grads) * 4)
    }

    /// Runs the model on `pixels` (`[batch, channels, height, width]`, f32 in [0, 1]).
    pub fn forward_until(
        &self,
        pixels: &Tensor,
        spec: &RunSpec,
        stop: &StopSignal,
    ) -> Result<RunOutput, ModelError> {
        arch::run(self, pixels, spec, stop)
    }

    /// A forward pass with gradients (see `Gpt2::forward_with_grad`); `input` is the pixels.
    pub fn forward_with_grad(
        &self,
        pixels: &Tensor,
        spec: &RunSpec,
        grad: &GradSpec,
        stop: &StopSignal,
    ) -> Result<GradOutput, ModelError> {
        arch::run_with_grad(self, pixels, spec, grad, stop)
    }

    /// `[batch, n_patches, channels · patch²]`: each patch's pixels in the convolution weight's order.
    fn patches(&self, x: &Tensor) -> loupe_kernels::Result<Tensor> {
        let (c, p, g) = (
            self.config.channels,
            self.config.patch_size,
            self.config.grid(),
        );
        let batch = x.dims()[0];
        x.reshape([batch, c, g, p, g, p])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape([batch, g * g, c * p * p])
    }
}

impl Architecture for Vit {
    type Params = Params;

    fn params(&self) -> &Params {
        &self.params
    }

    fn weights_mut(p: &mut Params) -> Vec<(String, &mut Tensor)> {
        p.each_mut()
    }

    fn hook_names(&self) -> &[String] {
        &self.hook_names
    }

    fn device(&self) -> Device {
        self.device
    }

    fn input_grad(&self) -> InputGrad {
        InputGrad::Leaf
    }

    fn check_input(&self, x: &Tensor) -> Result<(), ModelError> {
        let c = &self.config;
        let want = [c.channels, c.image_size, c.image_size];
        if x.rank() != 4 || x.dims()[1..] != want || x.dtype() != loupe_kernels::DType::F32 {
            return Err(ModelError::Input(format!(
                "pixels must be f32 [batch, {}, {}, {}] in [0, 1], got {:?} {}; images are resized to the model's size when loaded",
                want[0],
                want[1],
                want[2],
                x.dtype(),
                x.shape()
            )));
        }
        Ok(())
    }

    fn default_labels(&self, _: &Tensor) -> Result<Vec<i32>, ModelError> {
        Err(ModelError::Input(
            "a classifier's cross-entropy needs labels: give one class index per image".into(),
        ))
    }

    fn forward_on(
        &self,
        p: &Params,
        pixels: &Tensor,
        pass: &mut Pass<'_>,
        stop: &StopSignal,
    ) -> Result<Tensor, Stop> {
        let c = &self.config;
        let (batch, seq, d) = (pixels.dims()[0], c.seq_len(), c.d_model);
        let x = match &self.normalize {
            Some((scale, shift)) => pixels
                .mul(scale)
                .and_then(|x| x.add(shift))
                .map_err(engine("normalising the pixels"))?,
            None => pixels.clone(),
        };
        let patches = self
            .patches(&x)
            .and_then(|x| {
                let w = &p.patch.weight;
                let flat = Dense {
                    weight: w.reshape([w.dims()[0], w.numel() / w.dims()[0]])?,
                    bias: p.patch.bias.clone(),
                };
                flat.apply(&x)
            })
            .map_err(engine("patch embedding"))?;
        // As in ViT-Prisma, `hook_embed` holds the patch embeddings alone, before the class tokens.
        let patches = pass.at("hook_embed", patches)?;
        // One row of zeros per image broadcasts the class (and distillation) token over the batch.
        let zeros = Tensor::zeros([batch, 1, d], self.device).map_err(engine("tokens"))?;
        let mut tokens = vec![zeros.add(&p.cls_token).map_err(engine("CLS token"))?];
        if let Some(t) = &p.distillation_token {
            tokens.push(zeros.add(t).map_err(engine("distillation token"))?);
        }
        tokens.push(patches);
        let parts: Vec<&Tensor> = tokens.iter().collect();
        let embed = Tensor::concat(&parts, 1).map_err(engine("token sequence"))?;
        let pos_embed = Tensor::zeros([batch, seq, d], self.device)
            .and_then(|z| z.add(&p.position))
            .map_err(engine("position embedding"))?;
        let pos_embed = pass.at("hook_pos_embed", pos_embed)?;
        let mut resid = embed.add(&pos_embed).map_err(engine("embedding sum"))?;

        let shape = BlockShape {
            batch,
            seq,
            d_model: d,
            heads: c.n_head,
            d_head: c.d_head(),
            eps: c.layer_norm_eps,
            scale: 1.0 / (c.d_head() as f32).sqrt(),
            causal: false,
            activation: c.activation,
        };
        for (l, weights) in p.blocks.iter().enumerate() {
            pass.enter_layer(l)?;
            stop.check("forward")
                .map_err(engine(format!("blocks.{l}: before the layer")))?;
            resid = block::block(pass, l, resid, weights, &shape)?;
        }

        stop.check("forward")
            .map_err(engine("before the final layer norm"))?;
        let final_norm = resid
            .layer_norm(&p.final_norm.0, &p.final_norm.1, c.layer_norm_eps)
            .map_err(engine("final layernorm"))?;
        let final_norm = pass.at("ln_final.hook_normalized", final_norm)?;
        let e = engine("classifier");
        let token = |i: usize| final_norm.slice(1, i, i + 1)?.reshape([batch, d]);
        // One head reads CLS; a distilled DeiT's two heads (CLS, distillation token) are averaged.
        let mut logits = token(0).and_then(|t| p.heads[0].1.apply(&t)).map_err(&e)?;
        if let Some((_, distilled)) = p.heads.get(1) {
            logits = token(1)
                .and_then(|t| distilled.apply(&t))
                .and_then(|t| t.add(&logits))
                .and_then(|t| t.affine(0.5, 0.0))
                .map_err(&e)?;
        }
        Ok(logits)
    }
}
