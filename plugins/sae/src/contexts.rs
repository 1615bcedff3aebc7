//! Every latent's top-activating contexts on the evaluation rows. Which latents a reader wants (the
//! most active, a random sample, a list) is only known once the evaluation is done, so the running top
//! list of *every* latent is kept on the host — values `[d_sae, k]` and the flat token index of each —
//! and merged there batch by batch: nothing per latent comes back to the plugin until the end, when
//! only the chosen latents' lists are read. The plugin keeps the evaluated token ids (4 bytes a row)
//! to decode the text around each hit.

use loupe_plugin_api::contexts::{TopContext, window_around};
use loupe_plugin_api::prelude::*;
use serde::Serialize;

/// Flat indices travel through f32 in the merge, which is exact up to 2²⁴; larger tables are merged
/// in slices of latents that stay below it.
const EXACT_F32: usize = 1 << 24;

/// One latent's top contexts.
#[derive(Debug, Clone, Serialize)]
pub struct LatentContexts {
    pub latent: usize,
    pub top: Vec<TopContext>,
}

pub struct TopContexts {
    /// Latents (from 0) written to `top_contexts.json`.
    first_latents: usize,
    k: usize,
    /// Tokens of text kept on each side of a hit.
    window: usize,
    /// `[d_sae, k']` (k' ≤ k while fewer rows have been seen), largest first.
    values: Option<Tensor>,
    /// s32 `[d_sae, k']`: index into `tokens` of each value's token.
    rows: Option<Tensor>,
    /// The token ids of every evaluated sequence, in order.
    tokens: Vec<i32>,
    seq_len: usize,
    /// The dataset row of the first evaluated sequence.
    first_sequence: u64,
}

impl TopContexts {
    /// Keeps the `k` top contexts of every latent, with `window` tokens of text on each side; the
    /// first `first_latents` go into `top_contexts.json`.
    pub fn new(first_latents: usize, k: usize, window: usize) -> Self {
        TopContexts {
            first_latents,
            k,
            window,
            values: None,
            rows: None,
            tokens: Vec::new(),
            seq_len: 0,
            first_sequence: 0,
        }
    }

    /// Nothing to gather: no contexts asked for.
    pub fn is_empty(&self) -> bool {
        self.k == 0
    }

    /// Whether `top_contexts.json` is wanted.
    pub fn writes_json(&self) -> bool {
        self.first_latents > 0 && self.k > 0
    }

    /// Whether any batch was merged (model runs only).
    pub fn has_rows(&self) -> bool {
        self.values.is_some()
    }

    /// The dataset row of the first sequence merged (the evaluation's first row; 0 unless told).
    pub fn start_at_sequence(&mut self, first: u64) {
        self.first_sequence = first;
    }

    /// Records sequences that gave no rows (every position excluded), so later hits keep their
    /// dataset rows.
    pub fn pass_over(&mut self, tokens: &[i32], seq_len: usize) {
        self.seq_len = seq_len;
        self.tokens.extend_from_slice(tokens);
    }

    /// Merges a batch: latents `f` `[n, d_sae]` of rows that sit at flattened positions `positions`
    /// (`None`: row i is position i) of `tokens` (`[sequences, seq_len]` ids, row-major), the next
    /// sequences of the evaluation.
    pub fn merge(
        &mut self,
        f: &Tensor,
        positions: Option<&[i32]>,
        tokens: &[i32],
        seq_len: usize,
    ) -> Result<()> {
        let (n, m) = (f.shape()[0], f.shape()[1]);
        self.seq_len = seq_len;
        let base = self.tokens.len() as i32;
        self.tokens.extend_from_slice(tokens);
        let k = self.k.min(n);
        if k == 0 {
            return Ok(());
        }
        // Where each row of `f` sits among all evaluated tokens.
        let flat: Vec<i32> = match positions {
            Some(p) => p.iter().map(|&i| base + i).collect(),
            None => (base..base + n as i32).collect(),
        };
        let flat = Tensor::from_i32(&flat, &[n])?;
        let (values, local) = f.transpose(0, 1)?.top_k(k)?;
        let rows = flat
            .index_select(0, &local.reshape(&[m * k])?)?
            .reshape(&[m, k])?;
        let (values, rows) = match (self.values.take(), self.rows.take()) {
            (Some(v), Some(r)) => merge_tops(&v, &r, &values, &rows, self.k)?,
            _ => (values, rows),
        };
        self.values = Some(values);
        self.rows = Some(rows);
        Ok(())
    }

    /// The top contexts of `latents`, decoded (hits of value 0, where a latent fired fewer than k
    /// times, are left out).
    pub fn of(&self, latents: &[usize]) -> Result<Vec<LatentContexts>> {
        let (Some(values), Some(rows)) = (&self.values, &self.rows) else {
            return Ok(latents
                .iter()
                .map(|&latent| LatentContexts {
                    latent,
                    top: Vec::new(),
                })
                .collect());
        };
        if latents.is_empty() {
            return Ok(Vec::new());
        }
        let k = values.shape()[1];
        let index: Vec<i32> = latents.iter().map(|&l| l as i32).collect();
        let index = Tensor::from_i32(&index, &[index.len()])?;
        let values = values.index_select(0, &index)?.to_vec_f32()?;
        let rows = rows.index_select(0, &index)?.to_vec_i32()?;
        let mut out = Vec::with_capacity(latents.len());
        for (i, &latent) in latents.iter().enumerate() {
            let mut top = Vec::new();
            for j in i * k..(i + 1) * k {
                if values[j] <= 0.0 {
                    break;
                }
                top.push(self.context(values[j], rows[j] as usize)?);
            }
            out.push(LatentContexts { latent, top });
        }
        Ok(out)
    }

    fn context(&self, value: f32, flat: usize) -> Result<TopContext> {
        let (sequence, position) = (flat / self.seq_len, flat % self.seq_len);
        let ids: Vec<u32> = self.tokens[sequence * self.seq_len..(sequence + 1) * self.seq_len]
            .iter()
            .map(|&t| t as u32)
            .collect();
        let (before, after) = window_around(ids.len(), position, self.window);
        TopContext::decode(
            value,
            self.first_sequence + sequence as u64,
            position as u32,
            &ids[before],
            ids[position],
            &ids[after],
        )
    }

    /// `top_contexts.json`: the first latents' contexts.
    pub fn to_json(&self, d_sae: usize) -> Result<serde_json::Value> {
        let first: Vec<usize> = (0..self.first_latents.min(d_sae)).collect();
        Ok(serde_json::to_value(self.of(&first)?).expect("contexts serialize"))
    }
}

/// The `k` largest of two per-latent top lists (`[m, a]` and `[m, b]` values, with the flat token
/// index of each), largest first; on ties the first list's entries (earlier rows) win.
fn merge_tops(
    values_a: &Tensor,
    rows_a: &Tensor,
    values_b: &Tensor,
    rows_b: &Tensor,
    k: usize,
) -> Result<(Tensor, Tensor)> {
    let m = values_a.shape()[0];
    let width = values_a.shape()[1] + values_b.shape()[1];
    let chunk = (EXACT_F32 / width).max(1);
    if m > chunk {
        let (mut values, mut rows) = (Vec::new(), Vec::new());
        for start in (0..m).step_by(chunk) {
            let end = (start + chunk).min(m);
            let part = |t: &Tensor| t.slice(0, start, end);
            let (v, r) = merge_tops(
                &part(values_a)?,
                &part(rows_a)?,
                &part(values_b)?,
                &part(rows_b)?,
                k,
            )?;
            values.push(v);
            rows.push(r);
        }
        let join = |parts: &Vec<Tensor>| Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0);
        return Ok((join(&values)?, join(&rows)?));
    }
    let k = k.min(width);
    let (values, picked) = Tensor::concat(&[values_a, values_b], 1)?.top_k(k)?;
    // Row r's pick j sits at r·width + j in the joined index table.
    let offsets: Vec<f32> = (0..m).map(|r| (r * width) as f32).collect();
    let flat = picked
        .to_dtype(DType::F32)?
        .add(&Tensor::from_f32(&offsets, &[m, 1])?)?
        .to_dtype(DType::I32)?
        .reshape(&[m * k])?;
    let rows = Tensor::concat(&[rows_a, rows_b], 1)?
        .reshape(&[m * width])?
        .index_select(0, &flat)?
        .reshape(&[m, k])?;
    Ok((values, rows))
}
