//! GPT-2 forward pass (HF `GPT2LMHeadModel`) with TransformerLens hook points.

use std::path::Path;

use std::collections::BTreeSet;

use loupe_kernels::{Device, StopSignal, Tape, Tensor};

use super::grad::{self, GradOutput, GradSpec, GradTrace, Objective, Targets};
use super::hooks::HookPlan;
use super::{
    Activation, Gpt2Config, ModelDir, ModelError, RunOutput, RunSpec, WeightStore, gpt2_hook_names,
};

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

/// Every weight of a GPT-2. A forward pass reads them from here, so a pass with gradients runs on a
/// copy whose wanted weights are watched by the tape.
#[derive(Clone)]
struct Params {
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

    /// A copy (sharing storage) whose weights in `names` are leaves of `tape`, and those leaves.
    fn watching(
        &self,
        tape: &Tape,
        names: &BTreeSet<String>,
    ) -> Result<(Params, Vec<(String, Tensor)>), ModelError> {
        let mut copy = self.clone();
        let mut leaves = Vec::with_capacity(names.len());
        for (name, w) in copy.each_mut() {
            if names.contains(&name) {
                *w = tape.watch(w).map_err(|source| ModelError::Engine {
                    context: format!("tracking weight `{name}`"),
                    source,
                })?;
                leaves.push((name, w.clone()));
            }
        }
        Ok((copy, leaves))
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
        // Tensors share storage: the copy costs a few reference counts.
        let mut params = self.params.clone();
        params
            .each_mut()
            .into_iter()
            .map(|(name, w)| (name, w.clone()))
            .collect()
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
        self.run(&self.params, ids, spec, stop, None)
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
        let weight_names: Vec<String> = self.weights().into_iter().map(|(n, _)| n).collect();
        let targets = Targets::resolve(&grad.wrt, &self.hook_names, &weight_names)?;
        let at = grad.objective.at().to_string();
        if at != grad::LOGITS && !self.hook_names.contains(&at) {
            return Err(super::hooks::unknown_hook(&at, &self.hook_names));
        }
        let mut watch = targets.hooks.clone();
        if targets.input {
            watch.insert(INPUT_HOOK.to_string());
        }
        // The pass must reach every hook it differentiates by and the objective's, and compute the
        // logits when the objective reads them.
        let mut inner = spec.clone();
        inner.capture.extend(watch.iter().cloned());
        if at == grad::LOGITS {
            inner.skip_logits = false;
        } else {
            inner.capture.push(at.clone());
        }
        let tape = Tape::new();
        let (params, leaves) = self.params.watching(&tape, &targets.weights)?;
        let mut trace = GradTrace::new(tape, watch, &at);
        let mut out = self.run(&params, ids, &inner, stop, Some(&mut trace))?;
        drop(params);

        let wanted = super::select_hooks(&self.hook_names, &spec.capture)?;
        out.captures.retain(|name, _| wanted.contains(name));
        if spec.skip_logits {
            // Computed for the objective, but not asked for.
            out.logits = None;
        }
        let reached = |name: &str| {
            trace
                .value(name)
                .cloned()
                .ok_or_else(|| ModelError::Hook(format!("the forward pass did not reach `{name}`")))
        };
        let output = reached(&at)?;
        let engine = |context: &'static str| {
            move |source| ModelError::Engine {
                context: context.into(),
                source,
            }
        };
        let (objective, direction) = match &grad.objective {
            Objective::CrossEntropy { labels } => {
                let labels = match labels {
                    Some(l) => l.to_vec_i32().map_err(|_| {
                        ModelError::Input("labels must be i32 token ids, one per position".into())
                    })?,
                    None => grad::next_token_labels(ids)?,
                };
                let (loss, _) = grad::cross_entropy_sum(&output, &labels)?;
                let one = Tensor::ones([1usize], self.device).map_err(engine("seed"))?;
                (loss, one)
            }
            Objective::Cotangent { direction, .. } => {
                if direction.shape() != output.shape() {
                    return Err(ModelError::Input(format!(
                        "the direction at `{at}` has shape {}, but the value there is {}",
                        direction.shape(),
                        output.shape()
                    )));
                }
                let direction = direction
                    .to_device(self.device)
                    .map_err(engine("moving the direction"))?;
                (output, direction)
            }
        };
        let value = objective_value(&objective, &direction)?;
        let mut at_values: Vec<(String, Tensor)> = leaves;
        for hook in &targets.hooks {
            at_values.push((hook.clone(), reached(hook)?));
        }
        if targets.input {
            at_values.push((grad::INPUT.to_string(), reached(INPUT_HOOK)?));
        }
        let grads = grad::sweep(trace.tape(), &objective, &direction, at_values)?;
        Ok(GradOutput {
            run: out,
            value,
            grads,
        })
    }

    /// The forward pass on `p` (the model's own weights, or a copy with some watched).
    fn run(
        &self,
        p: &Params,
        ids: &Tensor,
        spec: &RunSpec,
        stop: &StopSignal,
        trace: Option<&mut GradTrace>,
    ) -> Result<RunOutput, ModelError> {
        let plan = HookPlan::new(&self.hook_names, spec)?;
        let mut pass = Pass {
            plan: &plan,
            out: RunOutput::default(),
            trace,
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
            p.wte.embedding(ids).map_err(engine("token embedding"))?
        );
        let positions: Vec<i32> = (0..batch).flat_map(|_| 0..seq as i32).collect();
        let positions = Tensor::from_vec_i32(positions, [batch, seq], self.device)
            .map_err(engine("positions"))?;
        let pos_embed = hook!(
            "hook_pos_embed",
            p.wpe
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
        for (l, block) in p.blocks.iter().enumerate() {
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
            .layer_norm(&p.ln_f.0, &p.ln_f.1, eps)
            .map_err(engine("ln_f"))?;
        let final_norm = hook!("ln_final.hook_normalized", final_norm);
        let unembed = p.lm_head.as_ref().unwrap_or(&p.wte);
        let logits = final_norm
            .matmul_t(unembed, false, true)
            .map_err(engine("unembedding"))?;
        let logits = match pass.trace.as_mut() {
            Some(trace) => trace.at(grad::LOGITS, logits)?,
            None => logits,
        };
        pass.out.logits = Some(logits.detach());
        Ok(pass.out)
    }
}

/// The hook whose value is the model's input for gradients: the token embeddings.
const INPUT_HOOK: &str = "hook_embed";

/// `⟨output, direction⟩`, reduced where the tensors live so only the one number is read back.
fn objective_value(output: &Tensor, direction: &Tensor) -> Result<f32, ModelError> {
    let dot = output
        .detach()
        .mul(direction)
        .and_then(|p| p.reshape([p.numel()]))
        .and_then(|p| p.sum(0, false))
        .and_then(|s| s.to_vec_f32())
        .map_err(|source| ModelError::Engine {
            context: "the objective's value".into(),
            source,
        })?;
    Ok(dot[0])
}

/// The state of one forward pass: its plan, what it has captured so far and, with gradients, the
/// tape's tracked values.
struct Pass<'a> {
    plan: &'a HookPlan,
    out: RunOutput,
    trace: Option<&'a mut GradTrace>,
}

impl Pass<'_> {
    /// Applies the interventions registered at `name`, then captures the result if asked to.
    fn hook(&mut self, name: &str, mut x: Tensor) -> Result<Tensor, ModelError> {
        for intervention in self.plan.interventions(name) {
            x = intervention.apply(&x)?;
        }
        if let Some(trace) = self.trace.as_mut() {
            x = trace.at(name, x)?;
        }
        if self.plan.captures(name) {
            // Detached: a capture must not keep the tape alive.
            self.out.captures.insert(name.to_string(), x.detach());
        }
        Ok(x)
    }
}
