//! The `model` interface: facts, tokens, forward passes with captures and interventions, weights.

use std::sync::Arc;

use loupe_kernels::{DType, Tensor, guarded};
use wasmtime::component::Resource;

use super::bindings::loupe::plugin::model as wit;
use super::bindings::{ApiError, ErrorKind};
use super::contain::fault_point;
use super::state::{RunState, TensorEntry, api_error, engine_error};
use crate::model::{Intervention, InterventionAction, LoadedModel, ModelError, RunSpec};
use crate::tokenizer::{TextTokenizer, TokenizerError};

type Answer<T> = wasmtime::Result<Result<T, ApiError>>;

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

    /// Token ids must be i32 `[batch, pos]` within the vocabulary: checked here so the error names
    /// the offending id and position rather than an embedding lookup.
    fn check_tokens(&self, op: &str, loaded: &LoadedModel, ids: &Tensor) -> Result<(), ApiError> {
        if ids.rank() != 2 || ids.dtype() != DType::I32 {
            return Err(api_error(
                ErrorKind::InvalidArgument,
                op,
                format!(
                    "tokens must be s32 [batch, pos], got {:?} {:?}",
                    ids.dtype(),
                    ids.dims()
                ),
            ));
        }
        let vocab = loaded.model.config.vocab_size;
        let values = ids.to_vec_i32().map_err(|e| engine_error(op, e))?;
        if let Some((i, id)) = values
            .iter()
            .enumerate()
            .find(|(_, id)| **id < 0 || **id as usize >= vocab)
        {
            let pos = ids.dims()[1].max(1);
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
        let c = &loaded.model.config;
        Ok(Ok(wit::ModelInfo {
            architecture: "gpt2".into(),
            n_layers: c.n_layer as u32,
            d_model: c.d_model as u32,
            n_heads: c.n_head as u32,
            d_head: c.d_head() as u32,
            d_mlp: c.d_mlp as u32,
            d_vocab: c.vocab_size as u32,
            n_ctx: c.n_positions as u32,
            bos_token: loaded.bos,
            hook_names: loaded.model.hook_names().to_vec(),
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
        let loaded = match self.model(OP) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let ids = self.tensor(&request.tokens)?;
        if let Err(e) = self.check_tokens(OP, &loaded, &ids) {
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
        // A pass too big for the quota is refused before it allocates anything.
        let (batch, seq) = (ids.dims()[0], ids.dims()[1]);
        match loaded.model.forward_bytes(batch, seq, &spec) {
            Ok(bytes) => {
                if self.quota.check(OP, &[batch, seq], bytes).is_err() {
                    return Ok(Err(api_error(
                        ErrorKind::OutOfQuota,
                        OP,
                        format!(
                            "a pass over [{batch}, {seq}] tokens needs about {} MiB for its activations{}, \
                             but the run's tensor quota of {} MiB has {} MiB in use; use smaller batches, \
                             fewer captures, or raise [run.limits] tensor_mb",
                            bytes.div_ceil(1 << 20),
                            if spec.skip_logits { "" } else { " and logits" },
                            self.quota.limit() >> 20,
                            self.quota.used() >> 20
                        ),
                    )));
                }
            }
            Err(e) => return Ok(Err(model_error(OP, e))),
        }
        // Long ops inside the pass, and the pass between its layers, stop with the run.
        let stop = self.stop.clone();
        let (out, _) = guarded(None, stop.clone(), || {
            loaded.model.forward_until(&ids, &spec, &stop)
        });
        let out = match out {
            Ok(out) => out,
            Err(e) => return Ok(Err(model_error(OP, e))),
        };
        // Captures in the order the forward pass reached them, after the logits if any.
        let order = loaded.model.hook_names();
        let mut captures: Vec<(String, Tensor)> = out.captures.into_iter().collect();
        captures.sort_by_key(|(name, _)| order.iter().position(|h| h == name));
        let has_logits = out.logits.is_some();
        let (hooks, tensors): (Vec<String>, Vec<Tensor>) = captures.into_iter().unzip();
        let tensors = out.logits.into_iter().chain(tensors).collect();
        let mut handed = match self.hand_out_all(OP, tensors)? {
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
