//! What a latent writes, read in tokens: its decoder direction carried to the residual stream (through
//! the attention or MLP output weights when the SAE sits before them), through the final layer norm's
//! linear part (centring and its per-dimension scale γ; the normalisation only rescales, and ln_f's
//! bias adds the same logits for every latent) and the unembedding. For a residual-stream SAE this is
//! SAELens's and Neuronpedia's logit weights `W_dec · W_U`, with ln_f's γ folded in as SNMF does.

use loupe_plugin_api::prelude::*;
use serde::Serialize;

/// A token at one end of a projection.
#[derive(Debug, Clone, Serialize)]
pub struct VocabToken {
    pub token: String,
    pub token_id: u32,
    /// The logit a unit step along the latent's direction adds to this token.
    pub logit: f32,
}

/// Hook sites that are the residual stream itself (or add straight into it).
const RESIDUAL: [&str; 5] = [
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
];

pub struct Vocabulary {
    /// `[d_in, d_model]` (GPT-2's `[in, out]` layout) when the hook sits before an output projection.
    to_residual: Option<(String, Tensor)>,
    ln_scale: Tensor,
    /// `[vocab, d_model]`.
    unembed: Tensor,
    unembed_name: &'static str,
}

impl Vocabulary {
    /// The readout for an SAE with inputs of width `d_in` at `hook`, or why there is none (no model,
    /// a hook that does not lead linearly to the residual stream, weights that are not GPT-2's).
    pub fn for_hook(hook: &str, d_in: usize) -> Result<std::result::Result<Vocabulary, String>> {
        let Ok(names) = model::weight_names() else {
            return Ok(Err(
                "no vocabulary projection: the run has no model (activations read from a file)"
                    .into(),
            ));
        };
        let shape_of = |name: &str| {
            names
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
        };
        let unembed_name = if shape_of("lm_head.weight").is_some() {
            "lm_head.weight"
        } else {
            "wte.weight"
        };
        let (Some(unembed_shape), Some(ln_shape)) =
            (shape_of(unembed_name), shape_of("ln_f.weight"))
        else {
            return Ok(Err(format!(
                "no vocabulary projection: the model has no GPT-2 `{unembed_name}` or `ln_f.weight`"
            )));
        };
        let d_model = ln_shape[0];
        let site = hook.strip_prefix("blocks.").and_then(|rest| {
            let (layer, site) = rest.split_once('.')?;
            Some((layer.parse::<usize>().ok()?, site))
        });
        let to_residual = match site {
            _ if hook == "hook_embed" || hook == "hook_pos_embed" => None,
            Some((_, site)) if RESIDUAL.contains(&site) => None,
            Some((layer, "attn.hook_z")) => Some(format!("h.{layer}.attn.c_proj.weight")),
            Some((layer, "mlp.hook_post")) => Some(format!("h.{layer}.mlp.c_proj.weight")),
            _ => {
                return Ok(Err(format!(
                    "no vocabulary projection: `{hook}` is not the residual stream, attn.hook_z or mlp.hook_post, whose directions lead linearly to the logits"
                )));
            }
        };
        let width = match &to_residual {
            None => d_model,
            Some(name) => match shape_of(name) {
                Some(s) if s.len() == 2 && s[1] == d_model => s[0],
                _ => {
                    return Ok(Err(format!(
                        "no vocabulary projection: the model has no `{name}` of shape [·, {d_model}]"
                    )));
                }
            },
        };
        if width != d_in || unembed_shape.get(1) != Some(&d_model) {
            return Ok(Err(format!(
                "no vocabulary projection: the SAE reads {d_in} dimensions at `{hook}`, but the model's weights there take {width}"
            )));
        }
        Ok(Ok(Vocabulary {
            to_residual: match to_residual {
                Some(name) => {
                    let w = model::weight(&name)?;
                    Some((name, w))
                }
                None => None,
            },
            ln_scale: model::weight("ln_f.weight")?,
            unembed: model::weight(unembed_name)?,
            unembed_name,
        }))
    }

    /// How the projection is made, in words.
    pub fn method(&self) -> String {
        let through = match &self.to_residual {
            Some((name, _)) => format!("through `{name}`, "),
            None => String::new(),
        };
        format!(
            "each latent's unit decoder direction {through}centred and scaled by `ln_f.weight`, times `{}`ᵀ: the logit a unit step along it adds to each token",
            self.unembed_name
        )
    }

    /// For each of `latents`, the `n` tokens its direction raises most and the `n` it lowers most.
    pub fn project(
        &self,
        w_dec: &Tensor,
        latents: &[usize],
        n: usize,
    ) -> Result<Vec<(Vec<VocabToken>, Vec<VocabToken>)>> {
        if latents.is_empty() || n == 0 {
            return Ok(vec![(Vec::new(), Vec::new()); latents.len()]);
        }
        let c = latents.len();
        let index: Vec<i32> = latents.iter().map(|&l| l as i32).collect();
        let rows = w_dec.index_select(0, &Tensor::from_i32(&index, &[c])?)?;
        let rows = match &self.to_residual {
            Some((_, w)) => rows.matmul(w)?,
            None => rows,
        };
        let norms = rows
            .l2_norm(1, false)?
            .clamp(1e-12, f32::MAX)?
            .reshape(&[c, 1])?;
        let unit = rows.div(&norms)?;
        let centred = unit.sub(&unit.mean(1, true)?)?;
        let logits = centred
            .mul(&self.ln_scale)?
            .matmul_t(&self.unembed, false, true)?;
        let n = n.min(logits.shape()[1]);
        let (top_values, top_ids) = logits.top_k(n)?;
        let (bottom_values, bottom_ids) = logits.affine(-1.0, 0.0)?.top_k(n)?;
        let side = |values: Tensor, ids: Tensor, sign: f32| -> Result<Vec<Vec<VocabToken>>> {
            let (values, ids) = (values.to_vec_f32()?, ids.to_vec_i32()?);
            let mut out = Vec::with_capacity(c);
            for i in 0..c {
                let mut tokens = Vec::with_capacity(n);
                for j in i * n..(i + 1) * n {
                    let id = ids[j] as u32;
                    tokens.push(VocabToken {
                        token: model::decode(&[id])?,
                        token_id: id,
                        logit: sign * values[j],
                    });
                }
                out.push(tokens);
            }
            Ok(out)
        };
        let tops = side(top_values, top_ids, 1.0)?;
        let bottoms = side(bottom_values, bottom_ids, -1.0)?;
        Ok(tops.into_iter().zip(bottoms).collect())
    }
}
