//! Where activation rows come from: the model at a hook (the pass stops after that hook's layer), or a
//! cached `.safetensors` file. Rows stay on the host; the plugin only sees handles and token ids.

use loupe_plugin_api::prelude::*;

pub enum Source {
    Model {
        hook: String,
        data: Dataset,
        sequences_per_pass: usize,
        /// Positions holding this token are left out.
        exclude: Option<i32>,
    },
    Cached {
        data: Dataset,
        rows_per_read: usize,
    },
}

/// The shape of a hook's activation flattened to rows: `[batch, pos, rest...]` → `[batch·pos, Π rest]`.
pub fn flatten(act: &Tensor, hook: &str) -> Result<Tensor> {
    let shape = act.shape();
    if shape.len() < 3 || hook.ends_with("hook_pattern") || hook.ends_with("hook_attn_scores") {
        return Err(Error::invalid(
            "sae",
            format!(
                "hook `{hook}` has shape {shape:?}; an SAE needs a per-position activation [batch, pos, ...] (residual, MLP or attention-output hooks such as attn.hook_z)"
            ),
        ));
    }
    let width: usize = shape[2..].iter().product();
    act.reshape(&[shape[0] * shape[1], width])
}

/// The flattened positions of `ids` that do not hold the `exclude` token, or `None` when nothing is
/// excluded there.
pub fn kept_positions(ids: &[i32], exclude: Option<i32>) -> Option<Vec<i32>> {
    let bos = exclude?;
    let kept: Vec<i32> = (0..ids.len() as i32)
        .filter(|&i| ids[i as usize] != bos)
        .collect();
    (kept.len() < ids.len()).then_some(kept)
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Model { data, .. } | Source::Cached { data, .. } => &data.info().name,
        }
    }

    pub fn is_model(&self) -> bool {
        matches!(self, Source::Model { .. })
    }

    /// The next rows `[n, d_in]` (one read or forward pass), or `None` at the end of the dataset.
    pub fn next(&mut self) -> Result<Option<Tensor>> {
        match self {
            Source::Cached {
                data,
                rows_per_read,
            } => data.next_batch(*rows_per_read),
            Source::Model {
                hook,
                data,
                sequences_per_pass,
                exclude,
            } => {
                // A pass whose every position is excluded gives no rows: read on.
                loop {
                    let Some(tokens) = data.next_batch(*sequences_per_pass)? else {
                        return Ok(None);
                    };
                    let mut out = Forward::new(&tokens).capture(hook).without_logits().run()?;
                    let act = out.take(hook)?;
                    let rows = flatten(&act, hook)?;
                    let rows = match kept_positions(&tokens.to_vec_i32()?, *exclude) {
                        None => rows,
                        Some(kept) if kept.is_empty() => continue,
                        Some(kept) => {
                            rows.index_select(0, &Tensor::from_i32(&kept, &[kept.len()])?)?
                        }
                    };
                    return Ok(Some(rows));
                }
            }
        }
    }

    /// Back to the start of the dataset.
    pub fn rewind(&mut self) -> Result<()> {
        match self {
            Source::Model { data, .. } | Source::Cached { data, .. } => data.reset(),
        }
    }
}
