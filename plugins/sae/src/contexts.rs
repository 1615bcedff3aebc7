//! The top-activating contexts of the first latents: per batch the host finds each latent's top
//! activations; the running top list and the token windows are kept here.

use loupe_plugin_api::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub value: f32,
    /// Token ids up to and including the activating one.
    pub context: Vec<u32>,
}

pub struct TopContexts {
    latents: usize,
    k: usize,
    window: usize,
    hits: Vec<Vec<Hit>>,
}

impl TopContexts {
    pub fn new(latents: usize, k: usize, window: usize) -> Self {
        TopContexts {
            latents,
            k,
            window,
            hits: vec![Vec::new(); latents],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.latents == 0 || self.k == 0
    }

    /// Merges a batch: latents `f` `[n, d_sae]` of rows that sit at flattened positions `positions`
    /// (`None`: row i is position i) of `tokens` (`[sequences, seq_len]` ids, row-major).
    pub fn merge(
        &mut self,
        f: &Tensor,
        positions: Option<&[i32]>,
        tokens: &[i32],
        seq_len: usize,
    ) -> Result<()> {
        let (n, m) = (f.shape()[0], f.shape()[1]);
        let latents = self.latents.min(m);
        let k = self.k.min(n);
        if latents == 0 || k == 0 {
            return Ok(());
        }
        let (values, rows) = f.slice(1, 0, latents)?.transpose(0, 1)?.top_k(k)?;
        let (values, rows) = (values.to_vec_f32()?, rows.to_vec_i32()?);
        for latent in 0..latents {
            for j in 0..k {
                let value = values[latent * k + j];
                if value <= 0.0 {
                    break;
                }
                let row = rows[latent * k + j] as usize;
                let flat = positions.map_or(row, |p| p[row] as usize);
                let (seq, pos) = (flat / seq_len, flat % seq_len);
                let start = pos.saturating_sub(self.window);
                let context = tokens[seq * seq_len + start..=seq * seq_len + pos]
                    .iter()
                    .map(|&t| t as u32)
                    .collect();
                self.hits[latent].push(Hit { value, context });
            }
            let list = &mut self.hits[latent];
            list.sort_by(|a, b| b.value.total_cmp(&a.value));
            list.truncate(self.k);
        }
        Ok(())
    }

    /// The contexts as JSON, decoded to text.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut out = Vec::new();
        for (latent, hits) in self.hits.iter().enumerate() {
            let mut entries = Vec::new();
            for hit in hits {
                let (last, before) = hit.context.split_last().expect("a context holds its token");
                entries.push(serde_json::json!({
                    "value": hit.value,
                    "token": model::decode(&[*last])?,
                    "before": model::decode(before)?,
                    "token_ids": hit.context,
                }));
            }
            out.push(serde_json::json!({ "latent": latent, "top": entries }));
        }
        Ok(serde_json::Value::Array(out))
    }
}
