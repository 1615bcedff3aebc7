//! GPT-2 forward pass (HF `GPT2LMHeadModel`) with TransformerLens hook points.

use std::path::Path;

use loupe_kernels::{Device, StopSignal, Tensor};

use super::hooks::HookPlan;
use super::{
    Activation, Gpt2Config, ModelDir, ModelError, RunOutput, RunSpec, WeightStore, gpt2_hook_names,
};

/// One transformer block's parameters. Matrices are `[in, out]` as HF's Conv1D stores them.
struct Block {
    ln1: (Tensor, Tensor),
    attn_qkv: (Tensor, Tensor),
    attn_out: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
    mlp_in: (Tensor, Tensor),
    mlp_out: (Tensor, Tensor),
}

/// A loaded GPT-2 family model.
pub struct Gpt2 {
    pub config: Gpt2Config,
    device: Device,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: (Tensor, Tensor),
    /// `[vocab, d_model]` when the unembedding is not tied to `wte`.
    lm_head: Option<Tensor>,
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
        Ok(Gpt2 {
            wte: get("wte.weight", &[v, d])?,
            wpe: get("wpe.weight", &[p, d])?,
            ln_f: pair("ln_f", &[d], &[d])?,
            blocks,
            lm_head,
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
    pub fn weights(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![
            ("wte.weight".to_string(), &self.wte),
            ("wpe.weight".to_string(), &self.wpe),
        ];
        for (l, b) in self.blocks.iter().enumerate() {
            for (part, (w, bias)) in [
                ("ln_1", &b.ln1),
                ("attn.c_attn", &b.attn_qkv),
                ("attn.c_proj", &b.attn_out),
                ("ln_2", &b.ln2),
                ("mlp.c_fc", &b.mlp_in),
                ("mlp.c_proj", &b.mlp_out),
            ] {
                out.push((format!("h.{l}.{part}.weight"), w));
                out.push((format!("h.{l}.{part}.bias"), bias));
            }
        }
        out.push(("ln_f.weight".to_string(), &self.ln_f.0));
        out.push(("ln_f.bias".to_string(), &self.ln_f.1));
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head));
        }
        out
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

    /// Number of parameters (the tied unembedding counted once).
    pub fn parameter_count(&self) -> usize {
        let block: usize = self.blocks.first().map_or(0, |b| {
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
        self.wte.numel()
            + self.wpe.numel()
            + block * self.blocks.len()
            + 2 * self.config.d_model
            + self.lm_head.as_ref().map_or(0, Tensor::numel)
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
        let plan = HookPlan::new(&self.hook_names, spec)?;
        let mut pass = Pass {
            plan: &plan,
            out: RunOutput::default(),
        };
        let engine = |context: &str| {
            let context = context.to_string();
            move |source| ModelError::Engine {
                context: context.clone(),
                source,
            }
        };
        if ids.rank() != 2 {
            return Err(ModelError::Input(format!(
                "input ids must be [batch, pos], got {}",
                ids.shape()
            )));
        }
        let (batch, seq) = (ids.dims()[0], ids.dims()[1]);
        if seq > self.config.n_positions {
            return Err(ModelError::Input(format!(
                "sequence of {seq} tokens is longer than the model's n_positions = {}",
                self.config.n_positions
            )));
        }

        macro_rules! hook {
            ($name:expr, $x:expr) => {{
                let name: &str = &$name;
                let x = pass.hook(name, $x)?;
                if pass.plan.done_after(name) {
                    return Ok(pass.out);
                }
                x
            }};
        }

        let embed = hook!(
            "hook_embed",
            self.wte.embedding(ids).map_err(engine("token embedding"))?
        );
        let positions: Vec<i32> = (0..batch).flat_map(|_| 0..seq as i32).collect();
        let positions = Tensor::from_vec_i32(positions, [batch, seq], self.device)
            .map_err(engine("positions"))?;
        let pos_embed = hook!(
            "hook_pos_embed",
            self.wpe
                .embedding(&positions)
                .map_err(engine("position embedding"))?
        );
        let mut resid = embed.add(&pos_embed).map_err(engine("embedding sum"))?;

        let (d, h, dh) = (
            self.config.d_model,
            self.config.n_head,
            self.config.d_head(),
        );
        let eps = self.config.layer_norm_eps;
        for (l, block) in self.blocks.iter().enumerate() {
            if plan.done_before_layer(l) {
                return Ok(pass.out);
            }
            let e = |what: &str| engine(&format!("blocks.{l}: {what}"));
            let name = |hook: &str| format!("blocks.{l}.{hook}");
            stop.check("forward").map_err(e("before the layer"))?;

            let resid_pre = hook!(name("hook_resid_pre"), resid);
            let ln1 = hook!(
                name("ln1.hook_normalized"),
                resid_pre
                    .layer_norm(&block.ln1.0, &block.ln1.1, eps)
                    .map_err(e("ln_1"))?
            );
            let qkv = ln1
                .linear(&block.attn_qkv.0, Some(&block.attn_qkv.1))
                .map_err(e("c_attn"))?;
            let split = |i: usize| {
                qkv.slice(-1, i * d, (i + 1) * d)?
                    .reshape([batch, seq, h, dh])
            };
            let q = hook!(name("attn.hook_q"), split(0).map_err(e("q"))?);
            let k = hook!(name("attn.hook_k"), split(1).map_err(e("k"))?);
            let v = hook!(name("attn.hook_v"), split(2).map_err(e("v"))?);

            let mut scale = if self.config.scale_attn_weights {
                1.0 / (dh as f32).sqrt()
            } else {
                1.0
            };
            if self.config.scale_attn_by_inverse_layer_idx {
                scale /= (l + 1) as f32;
            }
            let pattern = q
                .attention_pattern(&k, scale, true)
                .map_err(e("attention pattern"))?;
            let pattern = hook!(name("attn.hook_pattern"), pattern);
            let z = pattern
                .attention_values(&v)
                .map_err(e("attention-weighted values"))?;
            let z = hook!(name("attn.hook_z"), z);
            let attn_out = z
                .reshape([batch, seq, d])
                .and_then(|z| z.linear(&block.attn_out.0, Some(&block.attn_out.1)))
                .map_err(e("attn c_proj"))?;
            let attn_out = hook!(name("hook_attn_out"), attn_out);
            let resid_mid = hook!(
                name("hook_resid_mid"),
                resid_pre.add(&attn_out).map_err(e("residual"))?
            );

            let ln2 = hook!(
                name("ln2.hook_normalized"),
                resid_mid
                    .layer_norm(&block.ln2.0, &block.ln2.1, eps)
                    .map_err(e("ln_2"))?
            );
            let pre = hook!(
                name("mlp.hook_pre"),
                ln2.linear(&block.mlp_in.0, Some(&block.mlp_in.1))
                    .map_err(e("c_fc"))?
            );
            let post = match self.config.activation {
                Activation::GeluTanh => pre.gelu_tanh(),
                Activation::GeluErf => pre.gelu_erf(),
                Activation::Relu => pre.relu(),
            };
            let post = hook!(name("mlp.hook_post"), post.map_err(e("activation"))?);
            let mlp_out = hook!(
                name("hook_mlp_out"),
                post.linear(&block.mlp_out.0, Some(&block.mlp_out.1))
                    .map_err(e("mlp c_proj"))?
            );
            resid = hook!(
                name("hook_resid_post"),
                resid_mid.add(&mlp_out).map_err(e("residual"))?
            );
        }

        stop.check("forward")
            .map_err(engine("before the final layer norm"))?;
        let final_norm = resid
            .layer_norm(&self.ln_f.0, &self.ln_f.1, eps)
            .map_err(engine("ln_f"))?;
        let final_norm = hook!("ln_final.hook_normalized", final_norm);
        let unembed = self.lm_head.as_ref().unwrap_or(&self.wte);
        pass.out.logits = Some(
            final_norm
                .matmul_t(unembed, false, true)
                .map_err(engine("unembedding"))?,
        );
        Ok(pass.out)
    }
}

/// The state of one forward pass: its plan and what it has captured so far.
struct Pass<'a> {
    plan: &'a HookPlan,
    out: RunOutput,
}

impl Pass<'_> {
    /// Applies the interventions registered at `name`, then captures the result if asked to.
    fn hook(&mut self, name: &str, mut x: Tensor) -> Result<Tensor, ModelError> {
        for intervention in self.plan.interventions(name) {
            x = intervention.apply(&x)?;
        }
        if self.plan.captures(name) {
            self.out.captures.insert(name.to_string(), x.clone());
        }
        Ok(x)
    }
}
