//! GPT-2 forward pass (HF `GPT2LMHeadModel`) with TransformerLens hook points.

use std::path::Path;

use loupe_kernels::{Device, StopSignal, Tensor};

use super::arch::{self, Architecture, InputGrad};
use super::block::{self, BlockShape, BlockWeights};
use super::grad::{self, GradOutput, GradSpec};
use super::pass::{Pass, Stop, engine};
use super::{Gpt2Config, ModelDir, ModelError, RunOutput, RunSpec, WeightStore, gpt2_hook_names};

/// One transformer block's parameters. Matrices are `[in, out]` as HF's Conv1D stores them.
#[derive(Clone)]
struct Block {
    ln1: (Tensor, Tensor),
    attn_qkv: (Tensor, Tensor),
    attn_out: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
    mlp_in: (Tensor, Tensor),
    mlp_out: (Tensor, Tensor),
}

impl BlockWeights for Block {
    fn norm1(&self) -> (&Tensor, &Tensor) {
        (&self.ln1.0, &self.ln1.1)
    }

    fn norm2(&self) -> (&Tensor, &Tensor) {
        (&self.ln2.0, &self.ln2.1)
    }

    /// One fused `c_attn` product, split in three.
    fn qkv(&self, x: &Tensor) -> loupe_kernels::Result<[Tensor; 3]> {
        let qkv = x.linear(&self.attn_qkv.0, Some(&self.attn_qkv.1))?;
        let d = self.attn_out.1.numel();
        Ok([
            qkv.slice(-1, 0, d)?,
            qkv.slice(-1, d, 2 * d)?,
            qkv.slice(-1, 2 * d, 3 * d)?,
        ])
    }

    fn attn_out(&self, z: &Tensor) -> loupe_kernels::Result<Tensor> {
        z.linear(&self.attn_out.0, Some(&self.attn_out.1))
    }

    fn mlp_in(&self, x: &Tensor) -> loupe_kernels::Result<Tensor> {
        x.linear(&self.mlp_in.0, Some(&self.mlp_in.1))
    }

    fn mlp_out(&self, x: &Tensor) -> loupe_kernels::Result<Tensor> {
        x.linear(&self.mlp_out.0, Some(&self.mlp_out.1))
    }
}

/// Every weight of a GPT-2. A forward pass reads them from here, so a pass with gradients runs on a
/// copy whose wanted weights are watched by the tape.
#[derive(Clone)]
pub(crate) struct Params {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: (Tensor, Tensor),
    /// `[vocab, d_model]` when the unembedding is not tied to `wte`.
    lm_head: Option<Tensor>,
}

/// A block's weight pairs under their Hugging Face module names.
fn block_parts(b: &mut Block) -> [(&'static str, &mut (Tensor, Tensor)); 6] {
    [
        ("ln_1", &mut b.ln1),
        ("attn.c_attn", &mut b.attn_qkv),
        ("attn.c_proj", &mut b.attn_out),
        ("ln_2", &mut b.ln2),
        ("mlp.c_fc", &mut b.mlp_in),
        ("mlp.c_proj", &mut b.mlp_out),
    ]
}

impl Params {
    /// Every weight under its Hugging Face name, in a fixed order; `lm_head.weight` only when untied.
    fn each_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out = vec![
            ("wte.weight".to_string(), &mut self.wte),
            ("wpe.weight".to_string(), &mut self.wpe),
        ];
        for (l, b) in self.blocks.iter_mut().enumerate() {
            for (part, (w, bias)) in block_parts(b) {
                out.push((format!("h.{l}.{part}.weight"), w));
                out.push((format!("h.{l}.{part}.bias"), bias));
            }
        }
        out.push(("ln_f.weight".to_string(), &mut self.ln_f.0));
        out.push(("ln_f.bias".to_string(), &mut self.ln_f.1));
        if let Some(head) = &mut self.lm_head {
            out.push(("lm_head.weight".to_string(), head));
        }
        out
    }
}

/// A loaded GPT-2 family model.
pub struct Gpt2 {
    pub config: Gpt2Config,
    device: Device,
    params: Params,
    hook_names: Vec<String>,
}

impl Gpt2 {
    /// Loads `config.json` and the safetensors weights of a Hugging Face GPT-2 directory.
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let dir = ModelDir::new(dir)?;
        let config = Gpt2Config::from_file(&dir.config_path())?;
        let store = WeightStore::open(&dir.root)?;
        Self::from_store(config, &store, device)
    }

    pub fn from_store(
        config: Gpt2Config,
        store: &WeightStore,
        device: Device,
    ) -> Result<Self, ModelError> {
        let (d, v, p, i) = (
            config.d_model,
            config.vocab_size,
            config.n_positions,
            config.d_mlp,
        );
        let get = |name: &str, shape: &[usize]| store.load(name, shape, device);
        let pair =
            |prefix: &str, w: &[usize], b: &[usize]| -> Result<(Tensor, Tensor), ModelError> {
                Ok((
                    get(&format!("{prefix}.weight"), w)?,
                    get(&format!("{prefix}.bias"), b)?,
                ))
            };
        let blocks = (0..config.n_layer)
            .map(|l| {
                let h = format!("h.{l}");
                Ok(Block {
                    ln1: pair(&format!("{h}.ln_1"), &[d], &[d])?,
                    attn_qkv: pair(&format!("{h}.attn.c_attn"), &[d, 3 * d], &[3 * d])?,
                    attn_out: pair(&format!("{h}.attn.c_proj"), &[d, d], &[d])?,
                    ln2: pair(&format!("{h}.ln_2"), &[d], &[d])?,
                    mlp_in: pair(&format!("{h}.mlp.c_fc"), &[d, i], &[i])?,
                    mlp_out: pair(&format!("{h}.mlp.c_proj"), &[i, d], &[d])?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let lm_head = if !config.tie_word_embeddings && store.contains("lm_head.weight") {
            Some(get("lm_head.weight", &[v, d])?)
        } else {
            None
        };
        let params = Params {
            wte: get("wte.weight", &[v, d])?,
            wpe: get("wpe.weight", &[p, d])?,
            ln_f: pair("ln_f", &[d], &[d])?,
            blocks,
            lm_head,
        };
        Ok(Gpt2 {
            params,
            hook_names: gpt2_hook_names(config.n_layer),
            device,
            config,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Hook names in the order the forward pass reaches them.
    pub fn hook_names(&self) -> &[String] {
        &self.hook_names
    }

    /// Every weight under its Hugging Face name (`h.0.mlp.c_fc.weight`), in the stored `[in, out]`
    /// layout; `lm_head.weight` only when untied.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        arch::weights(self)
    }

    /// Bytes a forward pass over `[batch, seq]` allocates at its peak, roughly: what it returns (captures,
    /// logits) plus one block's working set. Lets a caller refuse a pass that cannot fit before it starts.
    pub fn forward_bytes(
        &self,
        batch: usize,
        seq: usize,
        spec: &RunSpec,
    ) -> Result<u64, ModelError> {
        let c = &self.config;
        let captured = super::select_hooks(&self.hook_names, &spec.capture)?;
        let numel = |shape: Vec<usize>| shape.iter().map(|&d| d as u64).product::<u64>();
        let mut elements: u64 = captured
            .iter()
            .map(|h| numel(super::gpt2_hook_shape(h, batch, seq, c)))
            .sum();
        if !spec.skip_logits {
            elements += numel(vec![batch, seq, c.vocab_size]);
        }
        // Residual stream, q/k/v, the MLP's hidden layer and one layer's attention pattern.
        let tokens = (batch * seq) as u64;
        elements +=
            tokens * (5 * c.d_model + c.d_mlp) as u64 + numel(vec![batch, c.n_head, seq, seq]);
        Ok(elements * 4)
    }

    /// [`Gpt2::forward_bytes`] for a pass with gradients, roughly: what the tape keeps for the backward
    /// sweep (each layer's inputs to its matrix products, norms, attention and activation), the
    /// logits' softmax, and gradients as large as every weight and the saved activations.
    pub fn forward_with_grad_bytes(
        &self,
        batch: usize,
        seq: usize,
        spec: &RunSpec,
    ) -> Result<u64, ModelError> {
        let c = &self.config;
        let forward = self.forward_bytes(batch, seq, spec)?;
        let tokens = (batch * seq) as u64;
        let pattern = (batch * c.n_head * seq * seq) as u64;
        let per_layer = tokens * (12 * c.d_model + 3 * c.d_mlp) as u64 + 2 * pattern;
        let saved = per_layer * c.n_layer as u64 + 2 * tokens * c.vocab_size as u64;
        let grads = self.parameter_count() as u64 + per_layer;
        Ok(forward + (saved + grads) * 4)
    }

    /// Number of parameters (the tied unembedding counted once).
    pub fn parameter_count(&self) -> usize {
        let p = &self.params;
        let block: usize = p.blocks.first().map_or(0, |b| {
            [
                &b.ln1,
                &b.attn_qkv,
                &b.attn_out,
                &b.ln2,
                &b.mlp_in,
                &b.mlp_out,
            ]
            .iter()
            .map(|(w, bias)| w.numel() + bias.numel())
            .sum()
        });
        p.wte.numel()
            + p.wpe.numel()
            + block * p.blocks.len()
            + 2 * self.config.d_model
            + p.lm_head.as_ref().map_or(0, Tensor::numel)
    }

    /// Checks a batch of token sequences against the model and packs it as an i32 `[batch, pos]` tensor.
    pub fn input_ids(&self, batch: &[Vec<u32>]) -> Result<Tensor, ModelError> {
        let len = batch.first().map_or(0, Vec::len);
        if len == 0 {
            return Err(ModelError::Input(
                "no tokens to run: give at least one non-empty sequence".into(),
            ));
        }
        if let Some((b, seq)) = batch.iter().enumerate().find(|(_, s)| s.len() != len) {
            return Err(ModelError::Input(format!(
                "sequence {b} has {} tokens but sequence 0 has {len}; a batch needs equal lengths",
                seq.len()
            )));
        }
        if len > self.config.n_positions {
            return Err(ModelError::Input(format!(
                "sequence of {len} tokens is longer than the model's n_positions = {}",
                self.config.n_positions
            )));
        }
        for (b, seq) in batch.iter().enumerate() {
            if let Some((pos, id)) = seq
                .iter()
                .enumerate()
                .find(|(_, id)| **id as usize >= self.config.vocab_size)
            {
                return Err(ModelError::Input(format!(
                    "token id {id} (sequence {b}, position {pos}) is out of range: vocab_size is {}",
                    self.config.vocab_size
                )));
            }
        }
        let flat = batch.iter().flatten().map(|&id| id as i32).collect();
        Tensor::from_vec_i32(flat, [batch.len(), len], self.device).map_err(|source| {
            ModelError::Engine {
                context: "packing input ids".into(),
                source,
            }
        })
    }

    /// Runs the model on `ids` (`[batch, pos]`, i32), capturing and editing activations as `spec` asks.
    pub fn forward(&self, ids: &Tensor, spec: &RunSpec) -> Result<RunOutput, ModelError> {
        self.forward_until(ids, spec, &StopSignal::never())
    }

    /// [`Gpt2::forward`] that gives up between layers once `stop` fires (a plugin's run reached its
    /// deadline or was cancelled): a pass over a huge batch must not outlive the run.
    pub fn forward_until(
        &self,
        ids: &Tensor,
        spec: &RunSpec,
        stop: &StopSignal,
    ) -> Result<RunOutput, ModelError> {
        arch::run(self, ids, spec, stop)
    }

    /// A forward pass that also gives the gradients of `grad`'s objective with respect to what
    /// `grad.wrt` names: the token embeddings (`input`, i.e. `hook_embed`'s value), hook activations
    /// (after the hook's interventions, so a replaced hook cuts the gradient above it) and weights.
    /// The returned run holds what `spec` asks for; nothing returned is tracked.
    pub fn forward_with_grad(
        &self,
        ids: &Tensor,
        spec: &RunSpec,
        grad: &GradSpec,
        stop: &StopSignal,
    ) -> Result<GradOutput, ModelError> {
        arch::run_with_grad(self, ids, spec, grad, stop)
    }
}

impl Architecture for Gpt2 {
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
        // Token ids have no gradient: `input` is the token embeddings they select.
        InputGrad::Hook("hook_embed")
    }

    fn check_input(&self, ids: &Tensor) -> Result<(), ModelError> {
        if ids.rank() != 2 {
            return Err(ModelError::Input(format!(
                "input ids must be [batch, pos], got {}",
                ids.shape()
            )));
        }
        let seq = ids.dims()[1];
        if seq > self.config.n_positions {
            return Err(ModelError::Input(format!(
                "sequence of {seq} tokens is longer than the model's n_positions = {}",
                self.config.n_positions
            )));
        }
        Ok(())
    }

    fn default_labels(&self, ids: &Tensor) -> Result<Vec<i32>, ModelError> {
        grad::next_token_labels(ids)
    }

    fn forward_on(
        &self,
        p: &Params,
        ids: &Tensor,
        pass: &mut Pass<'_>,
        stop: &StopSignal,
    ) -> Result<Tensor, Stop> {
        let (batch, seq) = (ids.dims()[0], ids.dims()[1]);
        let embed = pass.at(
            "hook_embed",
            p.wte.embedding(ids).map_err(engine("token embedding"))?,
        )?;
        let positions: Vec<i32> = (0..batch).flat_map(|_| 0..seq as i32).collect();
        let positions = Tensor::from_vec_i32(positions, [batch, seq], self.device)
            .map_err(engine("positions"))?;
        let pos_embed = pass.at(
            "hook_pos_embed",
            p.wpe
                .embedding(&positions)
                .map_err(engine("position embedding"))?,
        )?;
        let mut resid = embed.add(&pos_embed).map_err(engine("embedding sum"))?;

        let c = &self.config;
        let (d, dh) = (c.d_model, c.d_head());
        for (l, block) in p.blocks.iter().enumerate() {
            pass.enter_layer(l)?;
            stop.check("forward")
                .map_err(engine(format!("blocks.{l}: before the layer")))?;
            let mut scale = if c.scale_attn_weights {
                1.0 / (dh as f32).sqrt()
            } else {
                1.0
            };
            if c.scale_attn_by_inverse_layer_idx {
                scale /= (l + 1) as f32;
            }
            let shape = BlockShape {
                batch,
                seq,
                d_model: d,
                heads: c.n_head,
                d_head: dh,
                eps: c.layer_norm_eps,
                scale,
                causal: true,
                activation: c.activation,
            };
            resid = block::block(pass, l, resid, block, &shape)?;
        }

        stop.check("forward")
            .map_err(engine("before the final layer norm"))?;
        let final_norm = resid
            .layer_norm(&p.ln_f.0, &p.ln_f.1, c.layer_norm_eps)
            .map_err(engine("ln_f"))?;
        let final_norm = pass.at("ln_final.hook_normalized", final_norm)?;
        let unembed = p.lm_head.as_ref().unwrap_or(&p.wte);
        Ok(final_norm
            .matmul_t(unembed, false, true)
            .map_err(engine("unembedding"))?)
    }
}
