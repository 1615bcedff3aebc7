//! The reverse sweep: which nodes matter, then their VJPs from the last seed back, each cotangent
//! taken (freed) as it is used.

use std::collections::HashMap;

use super::{NodeId, Tape};
use crate::{Error, Result, Tensor};

const OP: &str = "backward";

impl Tape {
    /// Gradients at `wrt` of `Σ ⟨seed output, cotangent⟩` over `seeds` (a loss and `1` is the usual
    /// seed; an activation and a direction gives a vector–Jacobian product). Each `wrt` must be tracked
    /// by this tape (a watched leaf or any recorded result); one the seeds do not depend on gets zeros.
    /// The sweep consumes the tape: its nodes are freed, and it records nothing more.
    pub fn backward(&self, seeds: &[(&Tensor, &Tensor)], wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        let wanted: Vec<NodeId> = wrt
            .iter()
            .enumerate()
            .map(|(i, t)| self.node_of(t, &format!("wrt[{i}]")))
            .collect::<Result<_>>()?;
        let mut cotangents: HashMap<NodeId, Tensor> = HashMap::new();
        for (i, (output, g)) in seeds.iter().enumerate() {
            let id = self.node_of(output, &format!("seed {i}"))?;
            if g.shape != output.shape {
                return Err(Error::shapes(
                    OP,
                    &output.shape,
                    &g.shape,
                    format!("seed {i}'s cotangent must have its output's shape"),
                ));
            }
            accumulate(&mut cotangents, id, (*g).clone())?;
        }
        let mut nodes = {
            let mut inner = self.inner();
            if inner.consumed {
                return Err(Error::invalid(
                    OP,
                    "the tape was already swept; record the forward pass again",
                ));
            }
            inner.consumed = true;
            std::mem::take(&mut inner.nodes)
        };
        // A node matters if a wanted node is itself or among its inputs, transitively; ids are in
        // topological order, so one forward pass finds them all.
        let mut leads = vec![false; nodes.len()];
        for &w in &wanted {
            leads[w.0 as usize] = true;
        }
        for (i, node) in nodes.iter().enumerate() {
            if node.inputs.iter().flatten().any(|p| leads[p.0 as usize]) {
                leads[i] = true;
            }
        }
        let mut found: HashMap<NodeId, Tensor> = HashMap::new();
        let last = cotangents.keys().map(|id| id.0 as usize).max();
        for i in (0..last.map_or(0, |l| l + 1)).rev() {
            let id = NodeId(i as u32);
            let Some(g) = cotangents.remove(&id) else {
                continue;
            };
            if wanted.contains(&id) {
                found.insert(id, g.clone());
            }
            let node = &mut nodes[i];
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|p| p.is_some_and(|p| leads[p.0 as usize]))
                .collect();
            if !needs.iter().any(|&n| n) {
                continue;
            }
            let Some(vjp) = node.vjp.take() else {
                continue;
            };
            let grads = vjp.vjp(&g, &needs)?;
            for (input, grad) in node.inputs.iter().zip(grads) {
                if let (Some(input), Some(grad)) = (input, grad) {
                    accumulate(&mut cotangents, *input, grad)?;
                }
            }
        }
        wanted
            .iter()
            .map(|id| match found.get(id) {
                Some(g) => Ok(g.clone()),
                None => {
                    let node = &nodes[id.0 as usize];
                    Tensor::zeros(node.shape.clone(), node.device)
                }
            })
            .collect()
    }

    fn node_of(&self, t: &Tensor, what: &str) -> Result<NodeId> {
        match &t.node {
            Some(tracked) if tracked.tape.same(self) => Ok(tracked.id),
            _ => Err(Error::invalid(
                OP,
                format!(
                    "{what} is not tracked by this tape; watch the input and run the ops on it"
                ),
            )),
        }
    }
}

/// Adds `g` into the cotangent of `id`, or makes it the cotangent.
fn accumulate(store: &mut HashMap<NodeId, Tensor>, id: NodeId, g: Tensor) -> Result<()> {
    let g = g.detach();
    let sum = match store.remove(&id) {
        Some(previous) => previous.add(&g)?,
        None => g,
    };
    store.insert(id, sum);
    Ok(())
}
