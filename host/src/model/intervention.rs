//! Changing an activation as the forward pass reaches its hook.

use loupe_kernels::{Shape, Tensor};

use super::ModelError;

/// What to do to the activation at a hook.
#[derive(Debug, Clone)]
pub enum InterventionAction {
    /// Use this value instead (broadcast to the hook's shape).
    Replace(Tensor),
    /// Add this value (broadcast to the hook's shape): steering vectors, patches.
    Add(Tensor),
    /// Multiply by a constant.
    Scale(f32),
    /// Set to zero (ablation).
    Zero,
}

/// An edit at one hook, optionally limited to some heads (per-head hooks only) and some positions.
#[derive(Debug, Clone)]
pub struct Intervention {
    pub hook: String,
    pub action: InterventionAction,
    /// Head indices; `None` means every head.
    pub heads: Option<Vec<usize>>,
    /// Token positions (the query position for `attn.hook_pattern`); `None` means every position.
    pub positions: Option<Vec<usize>>,
}

/// Which axes of a hook's activation hold positions and heads.
#[derive(Debug, Clone, Copy)]
pub struct HookAxes {
    pub position: usize,
    pub head: Option<usize>,
}

impl HookAxes {
    /// TransformerLens layouts: `[batch, pos, ...]`, `[batch, pos, head, d_head]` for q/k/v/z and
    /// `[batch, head, query, key]` for the pattern.
    pub fn of(hook: &str) -> HookAxes {
        if hook.ends_with("attn.hook_pattern") {
            HookAxes {
                position: 2,
                head: Some(1),
            }
        } else if ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"]
            .iter()
            .any(|h| hook.ends_with(h))
        {
            HookAxes {
                position: 1,
                head: Some(2),
            }
        } else {
            HookAxes {
                position: 1,
                head: None,
            }
        }
    }
}

impl Intervention {
    /// Applies this edit to `x`, the activation at `self.hook`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let engine = |source| ModelError::Engine {
            context: format!("intervention at `{}`", self.hook),
            source,
        };
        let scalar = |v: f32| Tensor::full([1], v, x.device()).map_err(engine);
        // `edited` may be smaller than `x`: the final `where` broadcasts it (and the mask) to x's shape.
        let edited = match &self.action {
            InterventionAction::Replace(v) => {
                self.check_broadcast(v, x)?;
                v.clone()
            }
            InterventionAction::Add(v) => {
                self.check_broadcast(v, x)?;
                x.add(v).map_err(engine)?
            }
            InterventionAction::Scale(s) => x.affine(*s, 0.0).map_err(engine)?,
            InterventionAction::Zero => scalar(0.0)?,
        };
        let mask = match self.mask(x)? {
            Some(mask) => mask,
            None if edited.shape() == x.shape() => return Ok(edited),
            None => scalar(1.0)?,
        };
        mask.where_(&edited, x).map_err(engine)
    }

    fn check_broadcast(&self, v: &Tensor, x: &Tensor) -> Result<(), ModelError> {
        match Shape::broadcast("intervention", x.shape(), v.shape()) {
            Ok(s) if s == *x.shape() => Ok(()),
            _ => Err(ModelError::Hook(format!(
                "intervention at `{}`: value of shape {} does not broadcast to the hook's shape {}",
                self.hook,
                v.shape(),
                x.shape()
            ))),
        }
    }

    /// A 0/1 tensor, broadcastable to `x`, marking the selected heads and positions; `None` when the
    /// edit covers everything.
    fn mask(&self, x: &Tensor) -> Result<Option<Tensor>, ModelError> {
        if self.heads.is_none() && self.positions.is_none() {
            return Ok(None);
        }
        let axes = HookAxes::of(&self.hook);
        let mut dims = vec![1; x.rank()];
        let n_pos = x.dims()[axes.position];
        let pos_selected = selection(&self.hook, "position", self.positions.as_deref(), n_pos)?;
        dims[axes.position] = n_pos;
        let head_selected = match (axes.head, &self.heads) {
            (None, Some(_)) => {
                return Err(ModelError::Hook(format!(
                    "intervention at `{}`: this hook has no head axis; heads apply to attn.hook_q|k|v|z|pattern",
                    self.hook
                )));
            }
            (Some(axis), heads) => {
                dims[axis] = x.dims()[axis];
                selection(&self.hook, "head", heads.as_deref(), x.dims()[axis])?
            }
            (None, None) => vec![true],
        };
        // Build the mask in the axis order it will be laid out in.
        let mut values = Vec::with_capacity(pos_selected.len() * head_selected.len());
        let head_first = axes.head.is_some_and(|h| h < axes.position);
        let (outer, inner) = if head_first {
            (&head_selected, &pos_selected)
        } else {
            (&pos_selected, &head_selected)
        };
        for &a in outer {
            for &b in inner {
                values.push(if a && b { 1.0 } else { 0.0 });
            }
        }
        Tensor::from_vec_f32(values, dims, x.device())
            .map(Some)
            .map_err(|source| ModelError::Engine {
                context: format!("intervention at `{}`", self.hook),
                source,
            })
    }
}

fn selection(
    hook: &str,
    what: &str,
    chosen: Option<&[usize]>,
    len: usize,
) -> Result<Vec<bool>, ModelError> {
    let Some(chosen) = chosen else {
        return Ok(vec![true; len]);
    };
    let mut mask = vec![false; len];
    for &i in chosen {
        if i >= len {
            return Err(ModelError::Hook(format!(
                "intervention at `{hook}`: {what} {i} is out of range (the hook has {len})"
            )));
        }
        mask[i] = true;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_kernels::Device;

    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec_f32((0..n).map(|v| v as f32 + 1.0).collect(), shape, Device::Cpu).unwrap()
    }

    fn edit(
        hook: &str,
        action: InterventionAction,
        heads: Option<Vec<usize>>,
        positions: Option<Vec<usize>>,
    ) -> Intervention {
        Intervention {
            hook: hook.into(),
            action,
            heads,
            positions,
        }
    }

    #[test]
    fn zero_selected_heads_and_positions_of_hook_z() {
        let x = iota(&[1, 3, 2, 2]); // [batch, pos, head, d_head]
        let out = edit(
            "blocks.0.attn.hook_z",
            InterventionAction::Zero,
            Some(vec![1]),
            Some(vec![0, 2]),
        )
        .apply(&x)
        .unwrap()
        .to_vec_f32()
        .unwrap();
        assert_eq!(out, vec![1., 2., 0., 0., 5., 6., 7., 8., 9., 10., 0., 0.]);
    }

    #[test]
    fn pattern_heads_come_before_positions() {
        let x = iota(&[1, 2, 2, 2]); // [batch, head, query, key]
        let out = edit(
            "blocks.1.attn.hook_pattern",
            InterventionAction::Scale(10.0),
            Some(vec![0]),
            Some(vec![1]),
        )
        .apply(&x)
        .unwrap()
        .to_vec_f32()
        .unwrap();
        assert_eq!(out, vec![1., 2., 30., 40., 5., 6., 7., 8.]);
    }

    #[test]
    fn replace_and_add_broadcast_values() {
        let x = iota(&[2, 2, 3]);
        let v = Tensor::from_vec_f32(vec![0.5, 0.0, -1.0], [3], Device::Cpu).unwrap();
        let out = edit(
            "blocks.0.hook_resid_pre",
            InterventionAction::Replace(v.clone()),
            None,
            Some(vec![1]),
        )
        .apply(&x)
        .unwrap()
        .to_vec_f32()
        .unwrap();
        assert_eq!(
            out,
            vec![1., 2., 3., 0.5, 0., -1., 7., 8., 9., 0.5, 0., -1.]
        );
        let out = edit("hook_embed", InterventionAction::Add(v), None, None)
            .apply(&x)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        assert_eq!(&out[..3], &[1.5, 2., 2.]);
    }

    #[test]
    fn bad_edits_are_clear_errors() {
        let x = iota(&[1, 2, 3]);
        let err = edit(
            "blocks.0.hook_resid_pre",
            InterventionAction::Zero,
            Some(vec![0]),
            None,
        )
        .apply(&x)
        .unwrap_err();
        assert!(err.to_string().contains("no head axis"), "{err}");
        let err = edit(
            "blocks.0.hook_resid_pre",
            InterventionAction::Zero,
            None,
            Some(vec![5]),
        )
        .apply(&x)
        .unwrap_err();
        assert!(
            err.to_string().contains("position 5 is out of range"),
            "{err}"
        );
        let v = Tensor::zeros([4], Device::Cpu).unwrap();
        let err = edit(
            "blocks.0.hook_resid_pre",
            InterventionAction::Add(v),
            None,
            None,
        )
        .apply(&x)
        .unwrap_err();
        assert!(err.to_string().contains("does not broadcast"), "{err}");
    }
}
