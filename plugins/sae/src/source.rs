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
        window: Window,
    },
    Cached {
        data: Dataset,
        rows_per_read: usize,
        window: Window,
    },
}

/// The part of a dataset a source reads, in dataset rows (sequences or activation rows): training reads
/// after the held-out evaluation slice, evaluation reads only that slice. Starting over skips the rows
/// before `start` again, so a training pass never re-reads held-out rows.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: u64,
    /// Exclusive; `u64::MAX`: to the dataset's end.
    pub end: u64,
    /// The next row the dataset will give.
    at: u64,
    /// A resumed run's first pass starts here, where the run it continues stood; starting over goes
    /// back to `start`.
    resume_at: Option<u64>,
}

impl Window {
    pub fn all() -> Self {
        Self::rows(0, u64::MAX)
    }

    pub fn rows(start: u64, end: u64) -> Self {
        Window {
            start,
            end,
            at: 0,
            resume_at: None,
        }
    }

    /// `start..end`, its first pass beginning at row `from` (where a checkpointed run stood).
    pub fn resuming(start: u64, end: u64, from: u64) -> Self {
        Window {
            resume_at: Some(from.max(start)),
            ..Self::rows(start, end)
        }
    }

    /// The dataset row the next read starts at.
    pub fn position(&self) -> u64 {
        self.at.max(self.resume_at.unwrap_or(self.start))
    }

    /// The next at most `want` rows of the window from `data`, or `None` at its end.
    pub fn read(&mut self, data: &Dataset, want: usize) -> Result<Option<Tensor>> {
        let first = self.resume_at.unwrap_or(self.start);
        while self.at < first {
            // Skipping: reads whose rows are dropped (token ids or cached rows; no forward pass).
            let skip = (first - self.at).min(1 << 16) as usize;
            match data.next_batch(skip)? {
                Some(t) => self.at += t.shape()[0] as u64,
                None => return Ok(None),
            }
        }
        let left = self.end.saturating_sub(self.at);
        if left == 0 {
            return Ok(None);
        }
        let n = (want as u64).min(left) as usize;
        let rows = data.next_batch(n)?;
        if let Some(t) = &rows {
            self.at += t.shape()[0] as u64;
        }
        Ok(rows)
    }

    /// Back to the window's first row.
    pub fn rewind(&mut self, data: &Dataset) -> Result<()> {
        data.reset()?;
        self.at = 0;
        self.resume_at = None;
        Ok(())
    }
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

/// One forward pass over `tokens` capturing `hook`: its activation flattened to rows, the hook's shape
/// (to splice rows back), and the logits when asked for (otherwise the pass stops after the hook's layer).
pub fn hook_rows(
    tokens: &Tensor,
    hook: &str,
    logits: bool,
) -> Result<(Tensor, Vec<usize>, Option<Tensor>)> {
    let mut pass = Forward::new(tokens).capture(hook);
    if !logits {
        pass = pass.without_logits();
    }
    let mut out = pass.run()?;
    let act = out.take(hook)?;
    Ok((flatten(&act, hook)?, act.shape(), out.logits))
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
                window,
            } => window.read(data, *rows_per_read),
            Source::Model {
                hook,
                data,
                sequences_per_pass,
                exclude,
                window,
            } => {
                // A pass whose every position is excluded gives no rows: read on.
                loop {
                    let Some(tokens) = window.read(data, *sequences_per_pass)? else {
                        return Ok(None);
                    };
                    let (rows, _, _) = hook_rows(&tokens, hook, false)?;
                    let kept = match exclude {
                        Some(_) => kept_positions(&tokens.to_vec_i32()?, *exclude),
                        None => None,
                    };
                    let rows = match kept {
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

    /// Back to the start of the source's window.
    pub fn rewind(&mut self) -> Result<()> {
        match self {
            Source::Model { data, window, .. } | Source::Cached { data, window, .. } => {
                window.rewind(data)
            }
        }
    }

    /// Reads `window` of the dataset from now on, from its start.
    pub fn set_window(&mut self, w: Window) -> Result<()> {
        match self {
            Source::Model { window, data, .. } | Source::Cached { window, data, .. } => {
                data.reset()?;
                // `w` reads from the dataset's first row, skipping to its own.
                *window = Window { at: 0, ..w };
                Ok(())
            }
        }
    }

    /// The dataset row the source reads next (for a checkpoint to resume from).
    pub fn position(&self) -> u64 {
        match self {
            Source::Model { window, .. } | Source::Cached { window, .. } => window.position(),
        }
    }

    pub fn dataset(&self) -> &Dataset {
        match self {
            Source::Model { data, .. } | Source::Cached { data, .. } => data,
        }
    }
}
