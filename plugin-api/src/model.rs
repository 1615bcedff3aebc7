//! The run's model: facts, tokens, forward passes with captures and interventions, weights.

use std::collections::BTreeMap;

use crate::bindings::loupe::plugin::model as wit;
use crate::error::{Error, ErrorKind, Result};
use crate::tensor::Tensor;

pub use wit::{ImageInput, ModelInfo, ModelInput};

/// Sizes, BOS token and hook names of the run's model.
pub fn info() -> Result<ModelInfo> {
    Ok(wit::info()?)
}

/// What the run's model takes: token ids, or pixels of a given size (with its class names). A
/// forward pass is fed the one or the other in [`Forward::new`].
pub fn input() -> Result<ModelInput> {
    Ok(wit::input()?)
}

pub fn tokenize(text: &str) -> Result<Vec<u32>> {
    Ok(wit::tokenize(text)?)
}

pub fn decode(ids: &[u32]) -> Result<String> {
    Ok(wit::decode(ids)?)
}

/// A weight by its name in the model's safetensors (`h.0.mlp.c_fc.weight`, `wte.weight`); read-only.
pub fn weight(name: &str) -> Result<Tensor> {
    Ok(Tensor(wit::weight(name)?))
}

/// Every weight name with its shape.
pub fn weight_names() -> Result<Vec<(String, Vec<usize>)>> {
    Ok(wit::weight_names()?
        .into_iter()
        .map(|(name, shape)| (name, shape.into_iter().map(|d| d as usize).collect()))
        .collect())
}

enum EditKind<'a> {
    Replace(&'a Tensor),
    Add(&'a Tensor),
    Scale(f32),
    Zero,
}

/// A change to the activation at one hook, optionally limited to some heads and positions.
pub struct Intervention<'a> {
    hook: String,
    edit: EditKind<'a>,
    heads: Option<Vec<u32>>,
    positions: Option<Vec<u32>>,
}

impl<'a> Intervention<'a> {
    fn new(hook: &str, edit: EditKind<'a>) -> Self {
        Intervention {
            hook: hook.to_string(),
            edit,
            heads: None,
            positions: None,
        }
    }

    /// Use `value` (broadcast) instead of the activation.
    pub fn replace(hook: &str, value: &'a Tensor) -> Self {
        Self::new(hook, EditKind::Replace(value))
    }

    /// Add `value` (broadcast): a steering vector, a reconstruction error.
    pub fn add(hook: &str, value: &'a Tensor) -> Self {
        Self::new(hook, EditKind::Add(value))
    }

    pub fn scale(hook: &str, factor: f32) -> Self {
        Self::new(hook, EditKind::Scale(factor))
    }

    /// Ablate: set to zero.
    pub fn zero(hook: &str) -> Self {
        Self::new(hook, EditKind::Zero)
    }

    /// Only these heads (hooks with a head axis).
    pub fn heads(mut self, heads: &[usize]) -> Self {
        self.heads = Some(heads.iter().map(|&h| h as u32).collect());
        self
    }

    /// Only these positions.
    pub fn positions(mut self, positions: &[usize]) -> Self {
        self.positions = Some(positions.iter().map(|&p| p as u32).collect());
        self
    }

    fn to_wit(&self) -> wit::Intervention<'a> {
        wit::Intervention {
            hook: self.hook.clone(),
            edit: match self.edit {
                EditKind::Replace(t) => wit::Edit::Replace(&t.0),
                EditKind::Add(t) => wit::Edit::Add(&t.0),
                EditKind::Scale(f) => wit::Edit::Scale(f),
                EditKind::Zero => wit::Edit::Zero,
            },
            heads: self.heads.clone(),
            positions: self.positions.clone(),
        }
    }
}

/// A forward pass to run: `Forward::new(&tokens).capture("blocks.0.hook_resid_post").run()?`.
pub struct Forward<'a> {
    tokens: &'a Tensor,
    capture: Vec<String>,
    interventions: Vec<Intervention<'a>>,
    logits: bool,
}

impl<'a> Forward<'a> {
    /// A pass over i32 token ids `[batch, pos]`, returning logits unless told otherwise.
    pub fn new(tokens: &'a Tensor) -> Self {
        Forward {
            tokens,
            capture: Vec::new(),
            interventions: Vec::new(),
            logits: true,
        }
    }

    /// Return the activation at a hook (a name or a glob like `blocks.*.hook_resid_post`).
    pub fn capture(mut self, hook: &str) -> Self {
        self.capture.push(hook.to_string());
        self
    }

    pub fn intervene(mut self, edit: Intervention<'a>) -> Self {
        self.interventions.push(edit);
        self
    }

    /// No logits: the pass stops after the last hook it needs.
    pub fn without_logits(mut self) -> Self {
        self.logits = false;
        self
    }

    pub fn run(self) -> Result<Output> {
        let interventions: Vec<wit::Intervention<'_>> = self
            .interventions
            .iter()
            .map(Intervention::to_wit)
            .collect();
        Ok(Output::from_wit(wit::run(&self.request(interventions))?))
    }

    /// The same pass with gradients of `objective`; name what to differentiate by with
    /// [`GradForward::wrt`]: `Forward::new(&tokens).grad_of(Objective::NextToken).wrt("input").run()?`.
    pub fn grad_of(self, objective: Objective<'a>) -> GradForward<'a> {
        GradForward {
            forward: self,
            objective,
            wrt: Vec::new(),
        }
    }

    fn request<'b>(&'b self, interventions: Vec<wit::Intervention<'b>>) -> wit::RunRequest<'b> {
        wit::RunRequest {
            tokens: &self.tokens.0,
            capture: self.capture.clone(),
            interventions,
            logits: self.logits,
        }
    }
}

/// The scalar a gradient is taken of.
pub enum Objective<'a> {
    /// The summed next-token cross-entropy: position t predicts token t + 1.
    NextToken,
    /// The cross-entropy against i32 labels `[batch, pos]` (an image classifier: `[batch]` class
    /// indices), summed; -100 leaves a position out.
    CrossEntropy(&'a Tensor),
    /// `⟨value at hook (or "logits"), direction⟩`: the vector–Jacobian product with `direction`.
    Cotangent { at: &'a str, direction: &'a Tensor },
}

/// A forward pass with gradients, built by [`Forward::grad_of`].
pub struct GradForward<'a> {
    forward: Forward<'a>,
    objective: Objective<'a>,
    wrt: Vec<String>,
}

impl GradForward<'_> {
    /// Differentiate by `name`: `input` (the token embeddings, or a vision model's pixels), a hook, a
    /// weight, or a glob of them.
    pub fn wrt(mut self, name: &str) -> Self {
        self.wrt.push(name.to_string());
        self
    }

    pub fn run(self) -> Result<GradOutput> {
        let interventions: Vec<wit::Intervention<'_>> = self
            .forward
            .interventions
            .iter()
            .map(Intervention::to_wit)
            .collect();
        let objective = match &self.objective {
            Objective::NextToken => wit::Objective::CrossEntropy(None),
            Objective::CrossEntropy(labels) => wit::Objective::CrossEntropy(Some(&labels.0)),
            Objective::Cotangent { at, direction } => {
                wit::Objective::Cotangent((at.to_string(), &direction.0))
            }
        };
        let request = wit::GradRequest {
            run: self.forward.request(interventions),
            objective,
            wrt: self.wrt.clone(),
        };
        let out = wit::run_with_grad(&request)?;
        Ok(GradOutput {
            output: Output::from_wit(out.output),
            value: out.value,
            grads: out
                .grads
                .into_iter()
                .map(|g| (g.name, Tensor(g.value)))
                .collect(),
        })
    }
}

/// What a forward pass with gradients returned.
pub struct GradOutput {
    /// The logits and captures, as [`Forward::run`] gives them.
    pub output: Output,
    /// The objective's value.
    pub value: f32,
    /// By name (`input`, a hook, a weight), each shaped as what it differentiates by.
    pub grads: BTreeMap<String, Tensor>,
}

impl GradOutput {
    /// Takes the gradient with respect to `name`.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.grads.remove(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "model.run-with-grad",
                format!("no gradient for `{name}`; add .wrt(\"{name}\") to the request"),
            )
        })
    }
}

/// What a forward pass returned.
pub struct Output {
    /// `[batch, pos, d_vocab]` (an image classifier: `[batch, classes]`), if asked for.
    pub logits: Option<Tensor>,
    /// By hook name.
    pub captures: BTreeMap<String, Tensor>,
}

impl Output {
    fn from_wit(out: wit::RunOutput) -> Self {
        Output {
            logits: out.logits.map(Tensor),
            captures: out
                .captures
                .into_iter()
                .map(|c| (c.hook, Tensor(c.value)))
                .collect(),
        }
    }

    /// Takes the activation captured at `hook`.
    pub fn take(&mut self, hook: &str) -> Result<Tensor> {
        self.captures.remove(hook).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "model.run",
                format!("`{hook}` was not captured; add .capture(\"{hook}\") to the Forward"),
            )
        })
    }
}
