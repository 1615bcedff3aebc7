//! One forward pass's bookkeeping at its hook points, written once for every architecture: the
//! interventions registered at a hook, its capture, the early stop once nothing later is needed and,
//! with gradients, the tape's tracked values. An architecture only computes and calls [`Pass::at`].

use loupe_kernels::Tensor;

use super::grad::{self, GradTrace};
use super::hooks::HookPlan;
use super::{ModelError, RunOutput};

/// Why a forward pass ended before its logits: the plan needed nothing more, or something failed.
/// Both travel through `?`, so an architecture's forward code reads as straight-line computation.
pub(crate) enum Stop {
    Done,
    Failed(ModelError),
}

impl From<ModelError> for Stop {
    fn from(e: ModelError) -> Self {
        Stop::Failed(e)
    }
}

/// The state of one forward pass: its plan, what it has captured so far and, with gradients, the
/// tape's tracked values.
pub(crate) struct Pass<'a> {
    plan: &'a HookPlan,
    out: RunOutput,
    trace: Option<&'a mut GradTrace>,
}

impl<'a> Pass<'a> {
    pub fn new(plan: &'a HookPlan, trace: Option<&'a mut GradTrace>) -> Self {
        Pass {
            plan,
            out: RunOutput::default(),
            trace,
        }
    }

    /// The value that flows on from hook `name`: `x` after the interventions registered there,
    /// tracked from here when it is differentiated by, and captured (detached) if asked for. Ends
    /// the pass with [`Stop::Done`] once nothing after this hook is needed.
    pub fn at(&mut self, name: &str, mut x: Tensor) -> Result<Tensor, Stop> {
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
        if self.plan.done_after(name) {
            return Err(Stop::Done);
        }
        Ok(x)
    }

    /// Ends the pass before layer `layer` when no block from there on is needed.
    pub fn enter_layer(&self, layer: usize) -> Result<(), Stop> {
        if self.plan.done_before_layer(layer) {
            return Err(Stop::Done);
        }
        Ok(())
    }

    /// Runs `forward` (which returns the logits) on this pass and hands back what it collected.
    pub fn run(
        mut self,
        forward: impl FnOnce(&mut Pass<'a>) -> Result<Tensor, Stop>,
    ) -> Result<RunOutput, ModelError> {
        match forward(&mut self) {
            Ok(logits) => {
                let logits = match self.trace.as_mut() {
                    Some(trace) => trace.at(grad::LOGITS, logits)?,
                    None => logits,
                };
                self.out.logits = Some(logits.detach());
                Ok(self.out)
            }
            Err(Stop::Done) => Ok(self.out),
            Err(Stop::Failed(e)) => Err(e),
        }
    }
}

/// Maps an engine error to a [`ModelError`] that says where in the model it happened.
pub(crate) fn engine(context: impl Into<String>) -> impl Fn(loupe_kernels::Error) -> ModelError {
    let context = context.into();
    move |source| ModelError::Engine {
        context: context.clone(),
        source,
    }
}
