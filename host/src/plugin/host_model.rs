//! The `model` interface: facts, tokens, forward passes with captures and interventions, weights.

use std::sync::Arc;

use loupe_kernels::{DType, Tensor, guarded};
use wasmtime::component::Resource;

use super::bindings::loupe::plugin::model as wit;
use super::bindings::{ApiError, ErrorKind};
use super::contain::fault_point;
use super::state::{RunState, TensorEntry, api_error, engine_error};
use crate::model::{
    GradSpec, InputKind, Intervention, InterventionAction, LoadedModel, ModelError, Objective,
    RunOutput, RunSpec,
};
use crate::tokenizer::{TextTokenizer, TokenizerError};

type Answer<T> = wasmtime::Result<Result<T, ApiError>>;

/// A request checked and ready to run: the model, the token ids and what to do at the hooks.
type PreparedRun = (Arc<LoadedModel>, Tensor, RunSpec);

/// Text one `model.tokenize` call may take. A tokenizer call cannot be interrupted, so it is bounded
/// instead: this much takes well under a second even in the worst case (random characters), and the run's deadline is
/// checked between calls.
pub const MAX_TOKENIZE_BYTES: usize = 512 << 10;
/// Ids one `model.decode` call may take, for the same reason.
pub const MAX_DECODE_IDS: usize = 1 << 18;

fn model_error(op: &str, e: ModelError) -> ApiError {
    match e {
        ModelError::Engine { context, source } => {
            let mut err = engine_error(op, source);
            err.message = format!("{context}: {}", err.message);
            err
        }
        ModelError::Hook(msg) => api_error(ErrorKind::NotFound, op, msg),
        ModelError::Input(msg) => api_error(ErrorKind::Model, op, msg),
        other => api_error(ErrorKind::Internal, op, other.to_string()),
    }
}

impl RunState {
    fn model(&self, op: &str) -> Result<Arc<LoadedModel>, ApiError> {
        self.ctx.model.clone().ok_or_else(|| {
            api_error(
                ErrorKind::NotFound,
                op,
                "the run declares no model; add `model = \"path/to/model\"` to its [[run]]",
            )
        })
    }

    /// The input must be what the model takes: token ids i32 `[batch, pos]` within the vocabulary
    /// (checked here so the error names the offending id and position rather than an embedding
    /// lookup), or pixels f32 `[batch, channels, height, width]`.
    fn check_input(&self, op: &str, loaded: &LoadedModel, input: &Tensor) -> Result<(), ApiError> {
        let vocab = match loaded.model.input_kind() {
            InputKind::Tokens { vocab, .. } => vocab,
            InputKind::Pixels { .. } => {
                return loaded
                    .model
                    .check_input(input)
                    .map_err(|e| api_error(ErrorKind::InvalidArgument, op, e.to_string()));
            }
        };
        if input.rank() != 2 || input.dtype() != DType::I32 {
            return Err(api_error(
                ErrorKind::InvalidArgument,
                op,
                format!(
                    "tokens must be s32 [batch, pos], got {:?} {:?}",
                    input.dtype(),
                    input.dims()
                ),
            ));
        }
        let values = input.to_vec_i32().map_err(|e| engine_error(op, e))?;
        if let Some((i, id)) = values
            .iter()
            .enumerate()
            .find(|(_, id)| **id < 0 || **id as usize >= vocab)
        {
            let pos = input.dims()[1].max(1);
            return Err(api_error(
                ErrorKind::Model,
                op,
                format!(
                    "token id {id} (sequence {}, position {}) is out of range: vocab_size is {vocab}",
                    i / pos,
                    i % pos
                ),
            ));
        }
        Ok(())
    }

    /// Runs `f` with the model's tokenizer, mapping a missing model or tokenizer to an error value.
    fn with_tokenizer<T>(
        &self,
        op: &str,
        f: impl FnOnce(&TextTokenizer) -> Result<T, TokenizerError>,
    ) -> Result<T, ApiError> {
        let loaded = self.model(op)?;
        let tokenizer = loaded.tokenizer.as_ref().ok_or_else(|| {
            api_error(
                ErrorKind::NotFound,
                op,
                format!("{} has no tokenizer.json", loaded.dir.display()),
            )
        })?;
        f(tokenizer).map_err(|e| api_error(ErrorKind::Model, op, e.to_string()))
    }

    /// The model, checked tokens and run spec of a request, once the pass (with gradients when `grad`
    /// is given) is known to fit the run's tensor quota: a pass too big is refused before it
    /// allocates anything.
    fn prepare_run(
        &self,
        op: &str,
        request: wit::RunRequest,
        grad: Option<&GradSpec>,
    ) -> wasmtime::Result<Result<PreparedRun, ApiError>> {
        let loaded = match self.model(op) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let ids = self.tensor(&request.tokens)?;
        if let Err(e) = self.check_input(op, &loaded, &ids) {
            return Ok(Err(e));
        }
        let interventions = request
            .interventions
            .into_iter()
            .map(|i| self.intervention(i))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        let spec = RunSpec {
            capture: request.capture,
            interventions,
            skip_logits: !request.logits,
        };
        let (batch, seq) = (ids.dims()[0], loaded.model.seq_len(&ids));
        let pass_over = match loaded.model.input_kind() {
            InputKind::Tokens { .. } => format!("[{batch}, {seq}] tokens"),
            InputKind::Pixels { .. } => format!("{batch} images"),
        };
        let bytes = loaded.model.pass_bytes(ids.dims(), &spec, grad.is_some());
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(model_error(op, e))),
        };
        if self.quota.check(op, &[batch, seq], bytes).is_err() {
            return Ok(Err(api_error(
                ErrorKind::OutOfQuota,
                op,
                format!(
                    "a pass over {pass_over} needs about {} MiB for its activations{}, \
                     but the run's tensor quota of {} MiB has {} MiB in use; use smaller batches, \
                     fewer captures, or raise [run.limits] tensor_mb",
                    bytes.div_ceil(1 << 20),
                    match (grad.is_some(), spec.skip_logits) {
                        (true, _) => ", the tape and the gradients",
                        (false, true) => "",
                        (false, false) => " and logits",
                    },
                    self.quota.limit() >> 20,
                    self.quota.used() >> 20
                ),
            )));
        }
        Ok(Ok((loaded, ids, spec)))
    }

    /// Hands a pass's logits and captures to the plugin: captures in the order the forward pass
    /// reached them, after the logits if any.
    fn hand_out_run(
        &mut self,
        op: &str,
        loaded: &LoadedModel,
        out: RunOutput,
    ) -> Answer<wit::RunOutput> {
        let order = loaded.model.hook_names();
        let mut captures: Vec<(String, Tensor)> = out.captures.into_iter().collect();
        captures.sort_by_key(|(name, _)| order.iter().position(|h| h == name));
        let has_logits = out.logits.is_some();
        let (hooks, tensors): (Vec<String>, Vec<Tensor>) = captures.into_iter().unzip();
        let tensors = out.logits.into_iter().chain(tensors).collect();
        let mut handed = match self.hand_out_all(op, tensors)? {
            Ok(h) => h.into_iter(),
            Err(e) => return Ok(Err(e)),
        };
        let logits = if has_logits { handed.next() } else { None };
        let captures = hooks
            .into_iter()
            .zip(handed)
            .map(|(hook, value)| wit::Captured { hook, value })
            .collect();
        Ok(Ok(wit::RunOutput { logits, captures }))
    }

    fn intervention(&self, i: wit::Intervention) -> wasmtime::Result<Intervention> {
        let action = match i.edit {
            wit::Edit::Replace(h) => InterventionAction::Replace(self.tensor(&h)?),
            wit::Edit::Add(h) => InterventionAction::Add(self.tensor(&h)?),
            wit::Edit::Scale(f) => InterventionAction::Scale(f),
            wit::Edit::Zero => InterventionAction::Zero,
        };
        let usizes = |v: Option<Vec<u32>>| v.map(|v| v.into_iter().map(|x| x as usize).collect());
        Ok(Intervention {
            hook: i.hook,
            action,
            heads: usizes(i.heads),
            positions: usizes(i.positions),
        })
    }
}

impl wit::Host for RunState {
    fn info(&mut self) -> Answer<wit::ModelInfo> {
        fault_point("model.info");
        let loaded = match self.model("model.info") {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let model = &loaded.model;
        let (n_layers, d_model, n_heads, d_mlp) = model.sizes();
        // A classifier's "vocabulary" is its classes (the logits' width), its context the sequence
        // of CLS, distillation and patch tokens.
        let d_vocab = match model.input_kind() {
            InputKind::Tokens { vocab, .. } => vocab,
            InputKind::Pixels { labels, .. } => labels.len(),
        };
        Ok(Ok(wit::ModelInfo {
            architecture: model.model_type().into(),
            n_layers: n_layers as u32,
            d_model: d_model as u32,
            n_heads: n_heads as u32,
            d_head: (d_model / n_heads.max(1)) as u32,
            d_mlp: d_mlp as u32,
            d_vocab: d_vocab as u32,
            n_ctx: model.n_ctx() as u32,
            bos_token: loaded.bos,
            hook_names: loaded.model.hook_names().to_vec(),
        }))
    }

    fn input(&mut self) -> Answer<wit::ModelInput> {
        fault_point("model.input");
        let loaded = match self.model("model.input") {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(match loaded.model.input_kind() {
            InputKind::Tokens { .. } => wit::ModelInput::Tokens,
            InputKind::Pixels {
                channels,
                height,
                width,
                labels,
            } => wit::ModelInput::Pixels(wit::ImageInput {
                channels: channels as u32,
                height: height as u32,
                width: width as u32,
                labels,
            }),
        }))
    }

    fn tokenize(&mut self, text: String) -> Answer<Vec<u32>> {
        const OP: &str = "model.tokenize";
        fault_point(OP);
        if let Err(e) = self.stop.check("tokenize") {
            return Ok(Err(engine_error(OP, e)));
        }
        if text.len() > MAX_TOKENIZE_BYTES {
            return Ok(Err(api_error(
                ErrorKind::InvalidArgument,
                OP,
                format!(
                    "the text is {} bytes, over the {} KiB one call may tokenize; split it (at line \
                     breaks, say) and tokenize the parts",
                    text.len(),
                    MAX_TOKENIZE_BYTES >> 10
                ),
            )));
        }
        Ok(self.with_tokenizer(OP, |t| t.encode(&text)))
    }

    fn decode(&mut self, ids: Vec<u32>) -> Answer<String> {
        const OP: &str = "model.decode";
        if let Err(e) = self.stop.check("decode") {
            return Ok(Err(engine_error(OP, e)));
        }
        if ids.len() > MAX_DECODE_IDS {
            return Ok(Err(api_error(
                ErrorKind::InvalidArgument,
                OP,
                format!(
                    "{} ids are more than the {MAX_DECODE_IDS} one call may decode; decode them in parts",
                    ids.len()
                ),
            )));
        }
        Ok(self.with_tokenizer(OP, |t| t.decode(&ids)))
    }

    fn run(&mut self, request: wit::RunRequest) -> Answer<wit::RunOutput> {
        const OP: &str = "model.run";
        let (loaded, ids, spec) = match self.prepare_run(OP, request, None)? {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        // Long ops inside the pass, and the pass between its layers, stop with the run.
        let stop = self.stop.clone();
        let (out, _) = guarded(None, stop.clone(), || {
            loaded.model.forward_until(&ids, &spec, &stop)
        });
        match out {
            Ok(out) => self.hand_out_run(OP, &loaded, out),
            Err(e) => Ok(Err(model_error(OP, e))),
        }
    }

    fn run_with_grad(&mut self, request: wit::GradRequest) -> Answer<wit::GradOutput> {
        const OP: &str = "model.run-with-grad";
        let objective = match request.objective {
            wit::Objective::CrossEntropy(labels) => Objective::CrossEntropy {
                labels: labels.map(|l| self.tensor(&l)).transpose()?,
            },
            wit::Objective::Cotangent((at, direction)) => Objective::Cotangent {
                at,
                direction: self.tensor(&direction)?,
            },
        };
        let grad = GradSpec {
            objective,
            wrt: request.wrt,
        };
        let (loaded, ids, spec) = match self.prepare_run(OP, request.run, Some(&grad))? {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let stop = self.stop.clone();
        let (out, _) = guarded(None, stop.clone(), || {
            loaded.model.forward_with_grad(&ids, &spec, &grad, &stop)
        });
        let out = match out {
            Ok(out) => out,
            Err(e) => return Ok(Err(model_error(OP, e))),
        };
        let (names, tensors): (Vec<String>, Vec<Tensor>) = out.grads.into_iter().unzip();
        let handed = match self.hand_out_all(OP, tensors)? {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let output = match self.hand_out_run(OP, &loaded, out.run)? {
            Ok(output) => output,
            Err(e) => return Ok(Err(e)),
        };
        let grads = names
            .into_iter()
            .zip(handed)
            .map(|(name, value)| wit::Gradient { name, value })
            .collect();
        Ok(Ok(wit::GradOutput {
            output,
            value: out.value,
            grads,
        }))
    }

    fn weight_names(&mut self) -> Answer<Vec<(String, Vec<u32>)>> {
        let loaded = match self.model("model.weight-names") {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(loaded
            .model
            .weights()
            .into_iter()
            .map(|(name, t)| (name, t.dims().iter().map(|&d| d as u32).collect()))
            .collect()))
    }

    fn weight(&mut self, name: String) -> Answer<Resource<TensorEntry>> {
        const OP: &str = "model.weight";
        let loaded = match self.model(OP) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let weights = loaded.model.weights();
        match weights.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => {
                let t = (*t).clone();
                Ok(Ok(self.hand_out_weight(t)?))
            }
            None => {
                let names: Vec<String> = weights.iter().map(|(n, _)| n.clone()).collect();
                let close = crate::suggest::closest_names(&name, &names);
                Ok(Err(api_error(
                    ErrorKind::NotFound,
                    OP,
                    if close.is_empty() {
                        format!("no weight `{name}`; model.weight-names lists them")
                    } else {
                        format!("no weight `{name}`; did you mean {}?", close.join(", "))
                    },
                )))
            }
        }
    }
}
