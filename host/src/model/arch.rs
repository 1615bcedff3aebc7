//! The seam between architectures and everything else: an architecture says what it takes, names its
//! hooks and weights and computes its forward pass through a [`Pass`]; plain runs and runs with
//! gradients are driven from here, once for every architecture.

use std::collections::BTreeSet;

use loupe_kernels::{Device, StopSignal, Tape, Tensor};

use super::grad::{self, GradOutput, GradSpec, GradTrace, Objective, Targets};
use super::hooks::HookPlan;
use super::pass::{Pass, Stop, engine};
use super::{ModelError, RunOutput, RunSpec};

/// What a model's forward pass takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// Token ids `[batch, pos]` (i32), at most `n_ctx` positions.
    Tokens { vocab: usize, n_ctx: usize },
    /// Pixels `[batch, channels, height, width]` (f32 in [0, 1]), and the class names of its head.
    Pixels {
        channels: usize,
        height: usize,
        width: usize,
        labels: Vec<String>,
    },
}

/// Where gradients with respect to the model's `input` are taken.
pub(crate) enum InputGrad {
    /// At a hook's value (a language model's token embeddings: ids have no gradient).
    Hook(&'static str),
    /// At the input tensor itself (pixels), watched before the pass.
    Leaf,
}

/// One family of models. Implementations compute; hooks, interventions, captures, early stops and
/// gradients are handled by [`Pass`] and the functions below.
pub(crate) trait Architecture {
    /// Every weight, as the forward pass reads them. Cloning shares the tensors' storage.
    type Params: Clone;

    fn params(&self) -> &Self::Params;
    /// Every weight under its Hugging Face name, in a fixed order.
    fn weights_mut(params: &mut Self::Params) -> Vec<(String, &mut Tensor)>;
    /// Hook names in the order the forward pass reaches them.
    fn hook_names(&self) -> &[String];
    fn device(&self) -> Device;
    fn input_grad(&self) -> InputGrad;
    /// Checks the input's shape against the model before a pass starts.
    fn check_input(&self, input: &Tensor) -> Result<(), ModelError>;
    /// The labels a cross-entropy objective uses when none are given.
    fn default_labels(&self, input: &Tensor) -> Result<Vec<i32>, ModelError>;
    /// The forward pass on `params` (the model's own, or a copy with some watched); returns the logits.
    fn forward_on(
        &self,
        params: &Self::Params,
        input: &Tensor,
        pass: &mut Pass<'_>,
        stop: &StopSignal,
    ) -> Result<Tensor, Stop>;
}

/// Every weight of `model` under its Hugging Face name.
pub(crate) fn weights<A: Architecture>(model: &A) -> Vec<(String, Tensor)> {
    let mut params = model.params().clone();
    A::weights_mut(&mut params)
        .into_iter()
        .map(|(name, w)| (name, w.clone()))
        .collect()
}

/// A plain forward pass, capturing and editing activations as `spec` asks.
pub(crate) fn run<A: Architecture>(
    model: &A,
    input: &Tensor,
    spec: &RunSpec,
    stop: &StopSignal,
) -> Result<RunOutput, ModelError> {
    run_on(model, model.params(), input, spec, stop, None)
}

fn run_on<A: Architecture>(
    model: &A,
    params: &A::Params,
    input: &Tensor,
    spec: &RunSpec,
    stop: &StopSignal,
    trace: Option<&mut GradTrace>,
) -> Result<RunOutput, ModelError> {
    model.check_input(input)?;
    let plan = HookPlan::new(model.hook_names(), spec)?;
    Pass::new(&plan, trace).run(|pass| model.forward_on(params, input, pass, stop))
}

/// Tensors under their names: weights, hooks or `input`, as a sweep differentiates by them.
type Named = Vec<(String, Tensor)>;

/// A copy of `params` (sharing storage) whose weights in `names` are leaves of `tape`, and those leaves.
fn watching<A: Architecture>(
    params: &A::Params,
    tape: &Tape,
    names: &BTreeSet<String>,
) -> Result<(A::Params, Named), ModelError> {
    let mut copy = params.clone();
    let mut leaves = Vec::with_capacity(names.len());
    for (name, w) in A::weights_mut(&mut copy) {
        if names.contains(&name) {
            *w = tape
                .watch(w)
                .map_err(engine(format!("tracking weight `{name}`")))?;
            leaves.push((name, w.clone()));
        }
    }
    Ok((copy, leaves))
}

/// A forward pass that also gives the gradients of `grad`'s objective with respect to what
/// `grad.wrt` names: the model's input (`input`), hook activations (after the hook's interventions,
/// so a replaced hook cuts the gradient above it) and weights. The returned run holds what `spec`
/// asks for; nothing returned is tracked, and the tape is gone when this returns.
pub(crate) fn run_with_grad<A: Architecture>(
    model: &A,
    input: &Tensor,
    spec: &RunSpec,
    grad: &GradSpec,
    stop: &StopSignal,
) -> Result<GradOutput, ModelError> {
    let hooks = model.hook_names();
    let weight_names: Vec<String> = weights(model).into_iter().map(|(n, _)| n).collect();
    let targets = Targets::resolve(&grad.wrt, hooks, &weight_names)?;
    let at = grad.objective.at().to_string();
    if at != grad::LOGITS && !hooks.contains(&at) {
        return Err(super::hooks::unknown_hook(&at, hooks));
    }
    let input_hook = match model.input_grad() {
        InputGrad::Hook(name) => Some(name),
        InputGrad::Leaf => None,
    };
    let mut watch = targets.hooks.clone();
    if let (true, Some(hook)) = (targets.input, input_hook) {
        watch.insert(hook.to_string());
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
    let (params, mut at_values) = watching::<A>(model.params(), &tape, &targets.weights)?;
    let device = model.device();
    let input = match (targets.input, input_hook) {
        (true, None) => {
            let leaf = input
                .to_device(device)
                .and_then(|x| tape.watch(&x))
                .map_err(engine("tracking the input"))?;
            at_values.push((grad::INPUT.to_string(), leaf.clone()));
            leaf
        }
        _ => input.clone(),
    };
    let mut trace = GradTrace::new(tape, watch, &at);
    let mut out = run_on(model, &params, &input, &inner, stop, Some(&mut trace))?;
    drop(params);

    let wanted = super::select_hooks(hooks, &spec.capture)?;
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
    let (objective, direction) = match &grad.objective {
        Objective::CrossEntropy { labels } => {
            let labels = match labels {
                Some(l) => l.to_vec_i32().map_err(|_| {
                    ModelError::Input("labels must be i32 class or token ids".into())
                })?,
                None => model.default_labels(&input)?,
            };
            let (loss, _) = grad::cross_entropy_sum(&output, &labels)?;
            let one = Tensor::ones([1usize], device).map_err(engine("seed"))?;
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
                .to_device(device)
                .map_err(engine("moving the direction"))?;
            (output, direction)
        }
    };
    let value = objective_value(&objective, &direction)?;
    for hook in &targets.hooks {
        at_values.push((hook.clone(), reached(hook)?));
    }
    if let (true, Some(hook)) = (targets.input, input_hook) {
        at_values.push((grad::INPUT.to_string(), reached(hook)?));
    }
    let grads = grad::sweep(trace.tape(), &objective, &direction, at_values)?;
    Ok(GradOutput {
        run: out,
        value,
        grads,
    })
}

/// `⟨output, direction⟩`, reduced where the tensors live so only the one number is read back.
fn objective_value(output: &Tensor, direction: &Tensor) -> Result<f32, ModelError> {
    let dot = output
        .detach()
        .mul(direction)
        .and_then(|p| p.reshape([p.numel()]))
        .and_then(|p| p.sum(0, false))
        .and_then(|s| s.to_vec_f32())
        .map_err(engine("the objective's value"))?;
    Ok(dot[0])
}
