//! Hook points: their TransformerLens names, selection by name or glob, and the per-run plan that the
//! forward pass consults at each point.

use std::collections::{HashMap, HashSet};

use super::{Gpt2Config, Intervention, ModelError, RunSpec};

/// Every hook of a GPT-2 with `n_layer` blocks, in the order the forward pass reaches them.
pub fn gpt2_hook_names(n_layer: usize) -> Vec<String> {
    transformer_hook_names(n_layer)
}

/// Every hook of a pre-norm transformer with `n_layer` blocks (GPT-2, ViT, DeiT), in forward order.
pub fn transformer_hook_names(n_layer: usize) -> Vec<String> {
    const BLOCK: [&str; 14] = [
        "hook_resid_pre",
        "ln1.hook_normalized",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_pattern",
        "attn.hook_z",
        "hook_attn_out",
        "hook_resid_mid",
        "ln2.hook_normalized",
        "mlp.hook_pre",
        "mlp.hook_post",
        "hook_mlp_out",
        "hook_resid_post",
    ];
    let mut names = vec!["hook_embed".to_string(), "hook_pos_embed".to_string()];
    for l in 0..n_layer {
        names.extend(BLOCK.iter().map(|h| format!("blocks.{l}.{h}")));
    }
    names.push("ln_final.hook_normalized".into());
    names
}

/// A run's hooks resolved against a model: which to capture, which to change, and how far to compute.
#[derive(Debug, Default)]
pub struct HookPlan {
    capture: HashSet<String>,
    interventions: HashMap<String, Vec<Intervention>>,
    /// Index (in hook order) past which nothing more is needed, when the logits are not wanted.
    stop_after: Option<usize>,
    order: HashMap<String, usize>,
}

impl HookPlan {
    /// Resolves `spec` against `hook_names` (in forward order). Unknown names are errors that list the
    /// closest real ones.
    pub fn new(hook_names: &[String], spec: &RunSpec) -> Result<Self, ModelError> {
        let order: HashMap<String, usize> = hook_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let capture = select_hooks(hook_names, &spec.capture)?;
        let mut interventions: HashMap<String, Vec<Intervention>> = HashMap::new();
        for iv in &spec.interventions {
            if !order.contains_key(&iv.hook) {
                return Err(unknown_hook(&iv.hook, hook_names));
            }
            interventions
                .entry(iv.hook.clone())
                .or_default()
                .push(iv.clone());
        }
        let stop_after = spec.skip_logits.then(|| {
            capture
                .iter()
                .chain(interventions.keys())
                .filter_map(|h| order.get(h).copied())
                .max()
                .unwrap_or(0)
        });
        Ok(HookPlan {
            capture,
            interventions,
            stop_after,
            order,
        })
    }

    pub fn captures(&self, hook: &str) -> bool {
        self.capture.contains(hook)
    }

    pub fn interventions(&self, hook: &str) -> &[Intervention] {
        self.interventions
            .get(hook)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// True once `hook` has been reached and nothing later is needed.
    pub fn done_after(&self, hook: &str) -> bool {
        match (self.stop_after, self.order.get(hook)) {
            (Some(stop), Some(&i)) => i >= stop,
            _ => false,
        }
    }

    /// True if no block from `layer` on is needed.
    pub fn done_before_layer(&self, layer: usize) -> bool {
        let first = self.order.get(&format!("blocks.{layer}.hook_resid_pre"));
        matches!((self.stop_after, first), (Some(stop), Some(&i)) if i > stop)
    }
}

/// How a hook's activation is laid out, as TransformerLens lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookLayout {
    /// `[batch, pos, width]`.
    Stream { width: usize },
    /// `[batch, pos, head, d_head]`: q, k, v, z.
    PerHead { heads: usize, d_head: usize },
    /// `[batch, head, query, key]`.
    Pattern { heads: usize },
}

impl HookLayout {
    pub fn shape(&self, batch: usize, seq: usize) -> Vec<usize> {
        match *self {
            HookLayout::Stream { width } => vec![batch, seq, width],
            HookLayout::PerHead { heads, d_head } => vec![batch, seq, heads, d_head],
            HookLayout::Pattern { heads } => vec![batch, heads, seq, seq],
        }
    }
}

/// The layout of a pre-norm transformer's hook.
pub fn transformer_hook_layout(
    name: &str,
    d_model: usize,
    heads: usize,
    d_mlp: usize,
) -> HookLayout {
    if name.ends_with("attn.hook_pattern") {
        HookLayout::Pattern { heads }
    } else if ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"]
        .iter()
        .any(|h| name.ends_with(h))
    {
        HookLayout::PerHead {
            heads,
            d_head: d_model / heads,
        }
    } else if name.ends_with("mlp.hook_pre") || name.ends_with("mlp.hook_post") {
        HookLayout::Stream { width: d_mlp }
    } else {
        HookLayout::Stream { width: d_model }
    }
}

/// The shape of a GPT-2 hook's activation for a `[batch, seq]` input, as TransformerLens shapes it.
pub fn gpt2_hook_shape(name: &str, batch: usize, seq: usize, config: &Gpt2Config) -> Vec<usize> {
    transformer_hook_layout(name, config.d_model, config.n_head, config.d_mlp).shape(batch, seq)
}

/// The hook names matched by `patterns` (exact names or globs with `*`, `?`, `[...]`).
pub fn select_hooks(
    hook_names: &[String],
    patterns: &[String],
) -> Result<HashSet<String>, ModelError> {
    let mut selected = HashSet::new();
    for pattern in patterns {
        let is_glob = pattern.contains(['*', '?', '[']);
        if !is_glob {
            if !hook_names.contains(pattern) {
                return Err(unknown_hook(pattern, hook_names));
            }
            selected.insert(pattern.clone());
            continue;
        }
        let glob = glob::Pattern::new(pattern).map_err(|e| {
            ModelError::Hook(format!(
                "capture pattern `{pattern}` is not a valid glob: {e}"
            ))
        })?;
        let mut matched_any = false;
        for name in hook_names.iter().filter(|n| glob.matches(n)) {
            matched_any = true;
            selected.insert(name.clone());
        }
        if !matched_any {
            return Err(ModelError::Hook(format!(
                "capture pattern `{pattern}` matches no hook; hooks look like `blocks.0.attn.hook_pattern` (see `loupe models inspect`)"
            )));
        }
    }
    Ok(selected)
}

/// "unknown hook `x`; did you mean ..." with the three closest names.
pub fn unknown_hook(name: &str, hook_names: &[String]) -> ModelError {
    let close = crate::suggest::closest_names(name, hook_names);
    ModelError::Hook(format!(
        "unknown hook `{name}`; closest: {} (all hooks: `loupe models inspect DIR`)",
        close.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_transformer_lens() {
        let names = gpt2_hook_names(2);
        assert_eq!(names.len(), 2 + 2 * 14 + 1);
        assert_eq!(names[2], "blocks.0.hook_resid_pre");
        assert!(names.contains(&"blocks.1.attn.hook_pattern".to_string()));
        assert_eq!(names.last().unwrap(), "ln_final.hook_normalized");
    }

    #[test]
    fn globs_and_exact_names_select() {
        let names = gpt2_hook_names(2);
        let s = select_hooks(
            &names,
            &["blocks.*.attn.hook_pattern".into(), "hook_embed".into()],
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            select_hooks(&names, &["*".into()]).unwrap().len(),
            names.len()
        );
        assert!(select_hooks(&names, &["blocks.9.*".into()]).is_err());
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let names = gpt2_hook_names(2);
        let err = select_hooks(&names, &["blocks.0.hook_resid_pr".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown hook `blocks.0.hook_resid_pr`"),
            "{err}"
        );
        assert!(err.contains("`blocks.0.hook_resid_pre`"), "{err}");
    }

    #[test]
    fn plan_stops_after_the_last_needed_hook() {
        let names = gpt2_hook_names(3);
        let spec = RunSpec {
            capture: vec!["blocks.1.hook_attn_out".into()],
            skip_logits: true,
            ..Default::default()
        };
        let plan = HookPlan::new(&names, &spec).unwrap();
        assert!(!plan.done_after("blocks.1.attn.hook_z"));
        assert!(plan.done_after("blocks.1.hook_attn_out"));
        assert!(!plan.done_before_layer(1));
        assert!(plan.done_before_layer(2));
        let full = HookPlan::new(
            &names,
            &RunSpec {
                capture: spec.capture.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!full.done_after("ln_final.hook_normalized"));
        assert!(!full.done_before_layer(2));
    }
}
