//! Reverse-mode automatic differentiation: a [`Tape`] records the engine ops applied to the tensors it
//! watches, and [`Tape::backward`] sweeps them in reverse to give gradients at chosen tensors.
//!
//! The graph lives in the tensors, so code written against the engine (a model's forward pass) gets
//! gradients without edits: an op whose operand is tracked records a node and returns a tracked result.
//! Every public op either records itself through a [`Recorder`] — the one way such an op returns —
//! or refuses a tracked operand with [`Error::NotDifferentiable`]: no op hands back an untracked
//! result from a tracked input, so a gradient is never cut silently.
//!
//! Conventions follow PyTorch, whose numbers the fixtures hold: relu′(0) = abs′(0) = 0; a tie of
//! `maximum`/`minimum` splits the gradient in half. Vector–Jacobian products run on detached tensors
//! (no second order), and the sweep consumes the tape, freeing each node once used.

mod sweep;
mod vjp;
mod vjp_attention;
mod vjp_nn;
mod vjp_select;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Device, Error, Result, Shape, Tensor};

pub(crate) use vjp::{
    BinaryVjp, ClampVjp, ConcatVjp, LinearVjp, MatmulVjp, PermuteVjp, ReduceVjp, ReshapeVjp,
    ScaleVjp, SliceVjp, UnaryVjp, WhereVjp,
};
pub(crate) use vjp_attention::{AttentionPatternVjp, AttentionValuesVjp, CausalMaskVjp};
pub(crate) use vjp_nn::{CrossEntropyVjp, EmbeddingVjp, LayerNormVjp, SoftmaxVjp};
pub(crate) use vjp_select::{ExtremeVjp, IndexSelectVjp, KeepTopKVjp, L2NormVjp, TopKVjp};

/// A node's index on its tape: the order ops ran in, so a node's inputs always have lower ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeId(u32);

/// How a recorded op's output depends on its inputs: given the cotangent of the output, the
/// cotangents of the inputs that `needs` asks for (`None` for the others).
pub(crate) trait Vjp: Send {
    fn vjp(self: Box<Self>, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>>;
}

struct Node {
    /// The tracked operands' nodes (`None`: an operand the tape does not track).
    inputs: Vec<Option<NodeId>>,
    /// `None` for a leaf (a watched tensor).
    vjp: Option<Box<dyn Vjp>>,
    /// For the zero gradient of a tensor no seed reaches.
    shape: Shape,
    device: Device,
}

#[derive(Default)]
struct TapeInner {
    nodes: Vec<Node>,
    /// Set by [`Tape::backward`]: a consumed tape records nothing more.
    consumed: bool,
}

/// One recording: create it, [`watch`](Tape::watch) the inputs to differentiate by, run ops, then
/// [`backward`](Tape::backward). Cheap to clone (shared); tensors it tracks keep it alive.
#[derive(Clone, Default)]
pub struct Tape(Arc<Mutex<TapeInner>>);

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tape({} nodes)", self.inner().nodes.len())
    }
}

/// A tracked tensor's place on its tape.
#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub(crate) tape: Tape,
    pub(crate) id: NodeId,
}

impl Tape {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, TapeInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn same(&self, other: &Tape) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Nodes recorded so far.
    pub fn len(&self) -> usize {
        self.inner().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, op: &'static str, node: Node) -> Result<NodeId> {
        let mut inner = self.inner();
        if inner.consumed {
            return Err(Error::invalid(
                op,
                "the tape was already swept by backward(); record on a new tape",
            ));
        }
        let id = u32::try_from(inner.nodes.len())
            .map_err(|_| Error::invalid(op, "the tape holds 2^32 nodes; record less"))?;
        inner.nodes.push(node);
        Ok(NodeId(id))
    }

    /// `t` as a leaf of this tape: the same values, tracked, so the ops applied to it are recorded and
    /// [`backward`](Self::backward) can give its gradient. A tensor already on another tape is
    /// watched afresh (detached from that one).
    pub fn watch(&self, t: &Tensor) -> Result<Tensor> {
        if t.dtype() != crate::DType::F32 {
            return Err(Error::NotDifferentiable {
                op: "watch",
                why: format!("only f32 tensors have gradients, this one is {}", t.dtype()),
            });
        }
        let id = self.push(
            "watch",
            Node {
                inputs: Vec::new(),
                vjp: None,
                shape: t.shape.clone(),
                device: t.device(),
            },
        )?;
        let mut out = t.detach();
        out.node = Some(Tracked {
            tape: self.clone(),
            id,
        });
        Ok(out)
    }
}

impl Tensor {
    /// The same values, not tracked by any tape: what a gradient does not flow through.
    pub fn detach(&self) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            shape: self.shape.clone(),
            node: None,
        }
    }

    /// Whether a tape tracks this tensor.
    pub fn is_tracked(&self) -> bool {
        self.node.is_some()
    }
}

/// Records one op: built from its operands before it runs, finished with its output and, when an
/// operand is tracked, its VJP.
pub(crate) struct Recorder {
    op: &'static str,
    tape: Option<Tape>,
    inputs: Vec<Option<NodeId>>,
}

impl Recorder {
    /// Fails when operands are tracked by two different tapes.
    pub(crate) fn new(op: &'static str, operands: &[&Tensor]) -> Result<Self> {
        let mut tape: Option<Tape> = None;
        let mut inputs = Vec::with_capacity(operands.len());
        for t in operands {
            match &t.node {
                None => inputs.push(None),
                Some(tracked) => {
                    if let Some(tape) = &tape
                        && !tape.same(&tracked.tape)
                    {
                        return Err(Error::invalid(
                            op,
                            "operands are tracked by two different tapes; watch them on one",
                        ));
                    }
                    tape = Some(tracked.tape.clone());
                    inputs.push(Some(tracked.id));
                }
            }
        }
        Ok(Recorder { op, tape, inputs })
    }

    /// The op's output, tracked with the VJP `vjp` makes (from the untracked output, for ops whose
    /// derivative reads it) when an operand was tracked.
    pub(crate) fn finish<V: Vjp + 'static>(
        self,
        out: Tensor,
        vjp: impl FnOnce(&Tensor) -> V,
    ) -> Result<Tensor> {
        let Some(tape) = self.tape else {
            return Ok(out);
        };
        let id = tape.push(
            self.op,
            Node {
                inputs: self.inputs,
                vjp: Some(Box::new(vjp(&out))),
                shape: out.shape.clone(),
                device: out.device(),
            },
        )?;
        let mut out = out;
        out.node = Some(Tracked { tape, id });
        Ok(out)
    }
}

/// For an op with no gradient (yet): refuses tracked operands, naming the op and why, instead of
/// returning a result the tape would not know about.
pub(crate) fn refuse(op: &'static str, operands: &[&Tensor], why: &str) -> Result<()> {
    if operands.iter().any(|t| t.is_tracked()) {
        return Err(Error::NotDifferentiable {
            op,
            why: why.to_string(),
        });
    }
    Ok(())
}

/// The reason ops without a VJP so far give.
pub(crate) const NO_VJP_YET: &str =
    "it has no gradient in this engine yet; detach() its inputs to use it outside the gradient";

#[cfg(test)]
mod tests;
