//! Reading features (spec §A5, §A6): the tokens that express a feature most (its top coefficients in
//! G, each with the surrounding tokens of its own document), and what the feature writes (its unit
//! direction through W_out, the final layer norm and the unembedding, for +z and −z).

use loupe_plugin_api::contexts::TopContext;
use loupe_plugin_api::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use crate::collect::Columns;

/// A top token in the shape every plugin writes (value, token, text before and after, dataset row and
/// position), plus where it sits in SNMF's own indexing.
#[derive(Serialize)]
struct TopToken {
    /// `before` and `after` stop at the token's document (a BOS inside a row starts a new one).
    #[serde(flatten)]
    context: TopContext,
    /// Its document: a dataset row, split again at every BOS.
    sample: i32,
    /// Index of its column in A (row of G).
    column: usize,
}

fn decode(ids: &[i32]) -> Result<String> {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    model::decode(&ids)
}

fn ids(ids: &[i32]) -> Vec<u32> {
    ids.iter().map(|&i| i as u32).collect()
}

/// Per feature, the `top` columns with the largest positive coefficients in `g_tokens` `[n, k]`.
pub fn top_tokens(
    g_tokens: &Tensor,
    columns: &Columns,
    top: usize,
    window: usize,
) -> Result<Vec<Value>> {
    let (n, k) = (g_tokens.shape()[0], g_tokens.shape()[1]);
    let top = top.min(n);
    let (values, rows) = g_tokens.transpose(0, 1)?.top_k(top)?;
    let (values, rows) = (values.to_vec_f32()?, rows.to_vec_i32()?);
    let mut features = Vec::with_capacity(k);
    for feature in 0..k {
        let mut entries = Vec::new();
        for j in 0..top {
            let value = values[feature * top + j];
            if value <= 0.0 {
                break;
            }
            let column = rows[feature * top + j] as usize;
            let sample = columns.sample_ids[column];
            let same = |c: &usize| columns.sample_ids[*c] == sample;
            let start = (column.saturating_sub(window)..column)
                .find(same)
                .unwrap_or(column);
            let end = (column + 1..(column + 1 + window).min(n))
                .take_while(same)
                .last()
                .map_or(column + 1, |c| c + 1);
            entries.push(TopToken {
                context: TopContext::decode(
                    value,
                    columns.rows[column],
                    columns.row_positions[column],
                    &ids(&columns.token_ids[start..column]),
                    columns.token_ids[column] as u32,
                    &ids(&columns.token_ids[column + 1..end]),
                )?,
                sample,
                column,
            });
        }
        features.push(json!({ "feature": feature, "top": entries }));
    }
    Ok(features)
}

/// The weights a feature's direction is read through: the layer's W_out `[d_mlp, d_model]`, the final
/// layer norm and the unembedding `[vocab, d_model]`.
pub struct Readout {
    w_out: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    unembed: Tensor,
    eps: f32,
}

/// GPT-2's layer-norm epsilon (its config default; the plugin API does not carry the value).
const LN_EPS: f32 = 1e-5;

impl Readout {
    /// GPT-2 names; `None` with a warning when the model lacks them (another architecture) or when
    /// the site is not read through W_out.
    pub fn gpt2(layer: usize, site: &str) -> Result<Option<Readout>> {
        if site != "mlp.hook_post" {
            return Ok(None);
        }
        let names: Vec<String> = model::weight_names()?.into_iter().map(|(n, _)| n).collect();
        let has = |n: &str| names.iter().any(|m| m == n);
        let w_out = format!("h.{layer}.mlp.c_proj.weight");
        let unembed = if has("lm_head.weight") {
            "lm_head.weight"
        } else {
            "wte.weight"
        };
        if !(has(&w_out) && has("ln_f.weight") && has("ln_f.bias") && has(unembed)) {
            warn(&format!(
                "no vocabulary projection: the model lacks GPT-2's `{w_out}`, `ln_f.*` or `{unembed}`"
            ));
            return Ok(None);
        }
        Ok(Some(Readout {
            w_out: model::weight(&w_out)?,
            ln_weight: model::weight("ln_f.weight")?,
            ln_bias: model::weight("ln_f.bias")?,
            unembed: model::weight(unembed)?,
            eps: LN_EPS,
        }))
    }

    /// Logits `[k, vocab]` of the unit directions `±h[i]/‖h[i]‖` (`sign` ±1), without the MLP bias.
    fn logits(&self, h: &Tensor, sign: f32) -> Result<Tensor> {
        let k = h.shape()[0];
        let norms = h
            .l2_norm(1, false)?
            .clamp(1e-12, f32::MAX)?
            .reshape(&[k, 1])?;
        let unit = h.div(&norms)?.affine(sign, 0.0)?;
        unit.matmul(&self.w_out)?
            .layer_norm(&self.ln_weight, &self.ln_bias, self.eps)?
            .matmul_t(&self.unembed, false, true)
    }

    /// Per feature, the `top` tokens of `+z` and of `−z`.
    pub fn vocab_projection(&self, h: &Tensor, top: usize) -> Result<Vec<Value>> {
        let k = h.shape()[0];
        let mut sides = Vec::new();
        for sign in [1.0, -1.0] {
            let logits = self.logits(h, sign)?;
            let top = top.min(logits.shape()[1]);
            let (values, ids) = logits.top_k(top)?;
            sides.push((top, values.to_vec_f32()?, ids.to_vec_i32()?));
        }
        let mut out = Vec::with_capacity(k);
        for feature in 0..k {
            let mut entry = json!({ "feature": feature });
            for ((top, values, ids), side) in sides.iter().zip(["positive", "negative"]) {
                let mut tokens = Vec::new();
                for j in feature * top..(feature + 1) * top {
                    tokens.push(json!({ "token": decode(&ids[j..=j])?, "token_id": ids[j], "logit": values[j] }));
                }
                entry[side] = Value::Array(tokens);
            }
            out.push(entry);
        }
        Ok(out)
    }
}
