//! Gradients through a model's forward pass: what to differentiate (an [`Objective`]), with respect to
//! what (the input, hook activations, weights: [`GradSpec::wrt`]), and what comes back.
//!
//! A model needs no backward code of its own: its forward pass runs on the engine's tape
//! (`loupe_kernels::Tape`) with the wanted weights watched, and [`GradTrace`] keeps the tracked value at
//! each hook asked for. Everything returned is detached, so no tape outlives the call.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use loupe_kernels::{Tape, Tensor};

use super::{ModelError, RunOutput};

/// The name `wrt` uses for the model's input: the token embeddings fed to the first block (before the
/// position embedding is added) for a language model, the pixels for a vision model.
pub const INPUT: &str = "input";
/// The name an objective uses for the model's output.
pub const LOGITS: &str = "logits";

/// The scalar whose gradient is taken.
#[derive(Debug, Clone)]
pub enum Objective {
    /// The cross-entropy of the logits against `labels`, summed over every labelled position (i32).
    /// A language model takes `[batch, pos]` labels, where `-100` marks a position to leave out (the
    /// Hugging Face convention); `None` means next-token labels from the input ids (position `t`
    /// predicts token `t + 1`; the last position is left out).
    CrossEntropy { labels: Option<Tensor> },
    /// `⟨value at at, direction⟩`, `at` a hook name or `logits`: the vector–Jacobian product.
    Cotangent { at: String, direction: Tensor },
}

impl Objective {
    /// The hook (or `logits`) whose value the objective reads.
    pub fn at(&self) -> &str {
        match self {
            Objective::CrossEntropy { .. } => LOGITS,
            Objective::Cotangent { at, .. } => at,
        }
    }
}

/// A forward pass with gradients: the objective and what to differentiate it by. `wrt` holds names
/// or globs over [`INPUT`], the hook names and the weight names (`h.0.mlp.c_fc.weight`).
#[derive(Debug, Clone)]
pub struct GradSpec {
    pub objective: Objective,
    pub wrt: Vec<String>,
}

/// What a forward pass with gradients returns.
#[derive(Debug, Default)]
pub struct GradOutput {
    /// The logits and captures the run asked for, as a plain run gives them.
    pub run: RunOutput,
    /// The objective's value (the summed cross-entropy, or the ⟨value, direction⟩ product).
    pub value: f32,
    /// Gradients by name (`input`, a hook, a weight), each shaped as what it differentiates by.
    pub grads: BTreeMap<String, Tensor>,
}

/// `wrt` resolved against a model.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    pub input: bool,
    pub hooks: BTreeSet<String>,
    pub weights: BTreeSet<String>,
}

impl Targets {
    /// Resolves names and globs; a name or glob that matches nothing is an error naming it.
    pub fn resolve(
        wrt: &[String],
        hooks: &[String],
        weights: &[String],
    ) -> Result<Targets, ModelError> {
        if wrt.is_empty() {
            return Err(ModelError::Input(
                "nothing to differentiate by: give `input`, hook names or weight names (globs allowed)"
                    .into(),
            ));
        }
        let mut targets = Targets::default();
        for pattern in wrt {
            if pattern == INPUT {
                targets.input = true;
                continue;
            }
            let glob = glob::Pattern::new(pattern).map_err(|e| {
                ModelError::Input(format!("wrt pattern `{pattern}` is not a valid glob: {e}"))
            })?;
            let before = targets.hooks.len() + targets.weights.len();
            targets
                .hooks
                .extend(hooks.iter().filter(|h| glob.matches(h)).cloned());
            targets
                .weights
                .extend(weights.iter().filter(|w| glob.matches(w)).cloned());
            if targets.hooks.len() + targets.weights.len() == before {
                let mut all: Vec<String> = hooks.iter().chain(weights).cloned().collect();
                all.push(INPUT.to_string());
                let close = crate::suggest::closest_names(pattern, &all);
                return Err(ModelError::Input(format!(
                    "wrt `{pattern}` names no hook or weight; closest: {} (all names: `loupe models inspect DIR`)",
                    close.join(", ")
                )));
            }
        }
        Ok(targets)
    }
}

/// The tape of one forward pass with gradients and the tracked values it keeps.
pub(crate) struct GradTrace {
    tape: Tape,
    /// Hooks differentiated by: a value no tracked tensor led to is watched there, as a leaf.
    watch: BTreeSet<String>,
    /// Every hook (or `logits`) whose tracked value is kept: `watch` and the objective's.
    keep: BTreeSet<String>,
    values: HashMap<String, Tensor>,
}

impl GradTrace {
    pub fn new(tape: Tape, watch: BTreeSet<String>, objective_at: &str) -> Self {
        let mut keep = watch.clone();
        keep.insert(objective_at.to_string());
        GradTrace {
            tape,
            watch,
            keep,
            values: HashMap::new(),
        }
    }

    pub fn tape(&self) -> &Tape {
        &self.tape
    }

    /// The value that flows on from hook `name`: tracked from here if it is differentiated by.
    pub fn at(&mut self, name: &str, x: Tensor) -> Result<Tensor, ModelError> {
        if !self.keep.contains(name) {
            return Ok(x);
        }
        let x = if self.watch.contains(name) && !x.is_tracked() {
            self.tape.watch(&x).map_err(|source| ModelError::Engine {
                context: format!("tracking `{name}`"),
                source,
            })?
        } else {
            x
        };
        self.values.insert(name.to_string(), x.clone());
        Ok(x)
    }

    /// The tracked value kept at `name`, once the pass reached it.
    pub fn value(&self, name: &str) -> Option<&Tensor> {
        self.values.get(name)
    }
}

fn engine(context: &str) -> impl Fn(loupe_kernels::Error) -> ModelError + '_ {
    move |source| ModelError::Engine {
        context: context.to_string(),
        source,
    }
}

/// Next-token labels for `ids` `[batch, pos]`: position `t` predicts `ids[t + 1]`; the last is left out.
pub(crate) fn next_token_labels(ids: &Tensor) -> Result<Vec<i32>, ModelError> {
    let (batch, seq) = (ids.dims()[0], ids.dims()[1]);
    let ids = ids.to_vec_i32().map_err(engine("reading the input ids"))?;
    Ok((0..batch * seq)
        .map(|i| {
            if (i + 1) % seq == 0 {
                IGNORE
            } else {
                ids[i + 1]
            }
        })
        .collect())
}

/// PyTorch's `ignore_index`: a label that leaves its position out of the loss.
const IGNORE: i32 = -100;

/// `Σ −log softmax(logits)[label]` over the labelled rows of `logits` `[.., classes]` (labels `-100`
/// left out), a `[1]` tensor on the tape when the logits are tracked. Also the number of rows counted.
pub(crate) fn cross_entropy_sum(
    logits: &Tensor,
    labels: &[i32],
) -> Result<(Tensor, usize), ModelError> {
    let classes = *logits.dims().last().unwrap_or(&0);
    let rows = logits.numel() / classes.max(1);
    if labels.len() != rows {
        return Err(ModelError::Input(format!(
            "{} labels for {rows} predictions (logits {}); give one label per position, -100 to leave one out",
            labels.len(),
            logits.shape()
        )));
    }
    let mut count = 0;
    for (row, &label) in labels.iter().enumerate() {
        if label == IGNORE {
            continue;
        }
        if label < 0 || label as usize >= classes {
            return Err(ModelError::Input(format!(
                "label {label} (prediction {row}) is out of range: the model has {classes} classes; -100 leaves a position out"
            )));
        }
        count += 1;
    }
    if count == 0 {
        return Err(ModelError::Input(
            "every label is -100: the cross-entropy has no term; label at least one position"
                .into(),
        ));
    }
    let e = engine("cross-entropy");
    let labels = Tensor::from_vec_i32(labels.to_vec(), [rows], logits.device()).map_err(&e)?;
    let loss = logits
        .reshape([rows, classes])
        .and_then(|l| l.cross_entropy(&labels, IGNORE))
        .and_then(|l| l.sum(0, true))
        .map_err(&e)?;
    Ok((loss, count))
}

/// Sweeps the tape from `output` (seeded with `direction`) to the tracked values in `at`, returning
/// the gradients detached under their names; a name the output does not depend on gets zeros.
pub(crate) fn sweep(
    tape: &Tape,
    output: &Tensor,
    direction: &Tensor,
    at: Vec<(String, Tensor)>,
) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let e = engine("backward pass");
    if !output.is_tracked() {
        // Nothing differentiated by leads to the output (an intervention replaced everything above
        // it): every gradient is zero.
        return at
            .into_iter()
            .map(|(name, t)| {
                let zeros = Tensor::zeros(t.shape().clone(), t.device()).map_err(&e)?;
                Ok((name, zeros))
            })
            .collect();
    }
    let wrt: Vec<&Tensor> = at.iter().map(|(_, t)| t).collect();
    let grads = tape.backward(&[(output, direction)], &wrt).map_err(&e)?;
    Ok(at
        .into_iter()
        .zip(grads)
        .map(|((name, _), g)| (name, g.detach()))
        .collect())
}
