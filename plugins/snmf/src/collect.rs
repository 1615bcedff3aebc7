//! The matrices to factorise: per layer, the activations `X` `[tokens, neurons]` (the spec's `A = Xᵀ`)
//! collected from the model with every layer captured in the same forward pass, or one matrix read from
//! a cached activations file. For model runs each kept token (column of `A`) remembers its token id, the
//! document it came from and its position there, so features can be shown in context.

use loupe_plugin_api::data::DatasetKind;
use loupe_plugin_api::prelude::*;

/// Where each column of `A` (row of `X`) came from.
#[derive(Debug, Default, Clone)]
pub struct Columns {
    pub token_ids: Vec<i32>,
    /// A document: a dataset sequence, split again at every BOS token (packed datasets put several
    /// documents in one sequence, separated by BOS).
    pub sample_ids: Vec<i32>,
    /// Position within the document (0: its first token after BOS).
    pub positions: Vec<i32>,
    /// The dataset row (sequence) the token is in, and its position there: where a reader finds it.
    pub rows: Vec<u64>,
    pub row_positions: Vec<u32>,
}

impl Columns {
    pub fn len(&self) -> usize {
        self.token_ids.len()
    }
}

/// One matrix to factorise.
pub struct Matrix {
    /// `layer{L}/` for model activations, empty for a cached file: where its artifacts go.
    pub prefix: String,
    /// The hook it was read at (empty for a cached file).
    pub hook: String,
    pub layer: Option<usize>,
    /// `[n, d]`: one row per token.
    pub x: Tensor,
}

pub struct Collected {
    pub matrices: Vec<Matrix>,
    /// `None` for a cached file (no token ids there).
    pub columns: Option<Columns>,
}

/// Labels the kept positions of one batch of sequences and gives their flattened indices.
/// `next_sample` carries the document count across batches; the batch starts at dataset row
/// `first_row`.
fn label_positions(
    ids: &[i32],
    first_row: u64,
    seq_len: usize,
    bos: Option<i32>,
    exclude_bos: bool,
    next_sample: &mut i32,
    columns: &mut Columns,
) -> Vec<i32> {
    let mut kept = Vec::with_capacity(ids.len());
    for (s, seq) in ids.chunks(seq_len).enumerate() {
        let mut sample = *next_sample;
        *next_sample += 1;
        let mut position = 0;
        for (p, &id) in seq.iter().enumerate() {
            let is_bos = Some(id) == bos;
            if is_bos && p > 0 {
                // A BOS inside a sequence starts a new document (or is padding after one).
                sample = *next_sample;
                *next_sample += 1;
                position = 0;
            }
            if is_bos && exclude_bos {
                continue;
            }
            kept.push((s * seq_len + p) as i32);
            columns.token_ids.push(id);
            columns.sample_ids.push(sample);
            columns.positions.push(position);
            columns.rows.push(first_row + s as u64);
            columns.row_positions.push(p as u32);
            position += 1;
        }
    }
    kept
}

/// The hook of `layer`, checked against the model's hooks.
fn hook_of(info: &model::ModelInfo, layer: usize, site: &str) -> Result<String> {
    if layer >= info.n_layers as usize {
        return Err(Error::invalid(
            "snmf",
            format!(
                "layers: the model has {} layers (0..={}), so layer {layer} does not exist",
                info.n_layers,
                info.n_layers.saturating_sub(1)
            ),
        ));
    }
    let hook = format!("blocks.{layer}.{site}");
    if !info.hook_names.contains(&hook) {
        return Err(Error::new(
            ErrorKind::NotFound,
            "snmf",
            format!(
                "site: the model has no hook `{hook}`; use mlp.hook_post, hook_mlp_out or hook_resid_post"
            ),
        ));
    }
    Ok(hook)
}

/// Activations at `blocks.{L}.{site}` for every layer over a text dataset, BOS positions left out when
/// `exclude_bos`, at most `max_tokens` columns (0: all).
pub fn from_model(
    data: &Dataset,
    layers: &[usize],
    site: &str,
    exclude_bos: bool,
    sequences_per_pass: usize,
    max_tokens: usize,
) -> Result<Collected> {
    let info = model::info()?;
    let hooks = layers
        .iter()
        .map(|&l| hook_of(&info, l, site))
        .collect::<Result<Vec<_>>>()?;
    let bos = info.bos_token.map(|b| b as i32);
    let seq_len = data.width();
    let limit = if max_tokens == 0 {
        usize::MAX
    } else {
        max_tokens
    };
    let total = data.rows() as u64;

    let mut columns = Columns::default();
    let mut parts: Vec<Vec<Tensor>> = hooks.iter().map(|_| Vec::new()).collect();
    let mut next_sample = 0;
    let mut sequences = 0u64;
    data.reset()?;
    while columns.len() < limit {
        let Some(tokens) = data.next_batch(sequences_per_pass)? else {
            break;
        };
        let ids = tokens.to_vec_i32()?;
        let before = columns.len();
        let mut kept = label_positions(
            &ids,
            sequences,
            seq_len,
            bos,
            exclude_bos,
            &mut next_sample,
            &mut columns,
        );
        if columns.len() > limit {
            let keep = limit - before;
            kept.truncate(keep);
            columns.token_ids.truncate(limit);
            columns.sample_ids.truncate(limit);
            columns.positions.truncate(limit);
            columns.rows.truncate(limit);
            columns.row_positions.truncate(limit);
        }
        sequences += (ids.len() / seq_len) as u64;
        report::progress("collect activations", sequences, total);
        if kept.is_empty() {
            continue;
        }
        let mut pass = Forward::new(&tokens).without_logits();
        for hook in &hooks {
            pass = pass.capture(hook);
        }
        let mut out = pass.run()?;
        let index = Tensor::from_i32(&kept, &[kept.len()])?;
        for (hook, part) in hooks.iter().zip(&mut parts) {
            let act = out.take(hook)?;
            let shape = act.shape();
            let rows = act.reshape(&[shape[0] * shape[1], shape[2..].iter().product()])?;
            part.push(rows.index_select(0, &index)?);
        }
    }
    if columns.len() == 0 {
        return Err(Error::invalid(
            "snmf",
            format!(
                "dataset `{}` gave no tokens to factorise (every position was BOS or padding); add text or set exclude_bos = false",
                data.info().name
            ),
        ));
    }
    let mut matrices = Vec::new();
    for ((layer, hook), part) in layers.iter().zip(hooks).zip(parts) {
        let refs: Vec<&Tensor> = part.iter().collect();
        matrices.push(Matrix {
            prefix: format!("layer{layer}/"),
            hook,
            layer: Some(*layer),
            x: Tensor::concat(&refs, 0)?,
        });
    }
    Ok(Collected {
        matrices,
        columns: Some(columns),
    })
}

/// Every row of a cached activations file (at most `max_tokens`; 0: all) as one matrix.
pub fn from_file(data: &Dataset, max_tokens: usize) -> Result<Collected> {
    let limit = if max_tokens == 0 {
        data.rows()
    } else {
        max_tokens.min(data.rows())
    };
    data.reset()?;
    let mut parts = Vec::new();
    let mut rows = 0;
    while rows < limit {
        let Some(batch) = data.next_batch((limit - rows).min(65_536))? else {
            break;
        };
        rows += batch.shape()[0];
        parts.push(batch);
        report::progress("read activations", rows as u64, limit as u64);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Ok(Collected {
        matrices: vec![Matrix {
            prefix: String::new(),
            hook: String::new(),
            layer: None,
            x: Tensor::concat(&refs, 0)?,
        }],
        columns: None,
    })
}

/// The matrices of the run's dataset: from the model for text, from the file for cached activations.
pub fn collect(p: &crate::params::Params) -> Result<Collected> {
    let data = Dataset::open(&p.dataset)?;
    match data.info().kind {
        DatasetKind::Text => {
            let layers: Vec<usize> = p.layers.iter().map(|&l| l as usize).collect();
            if layers.is_empty() {
                return Err(Error::invalid(
                    "snmf",
                    "layers is empty; name the layers to factorise, e.g. layers = [0]",
                ));
            }
            from_model(
                &data,
                &layers,
                &p.site,
                p.exclude_bos,
                p.model_batch_size,
                p.max_tokens,
            )
        }
        DatasetKind::Activations => from_file(&data, p.max_tokens),
        DatasetKind::Directory => Err(Error::invalid(
            "snmf",
            format!(
                "dataset `{}` is a directory; SNMF needs a text dataset or cached activations [tokens, neurons]",
                p.dataset
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_bos_and_bos_positions_are_dropped() {
        // Two sequences of 5: BOS a b BOS c | BOS d BOS BOS BOS (a padded one).
        let ids = [0, 11, 12, 0, 13, 0, 14, 0, 0, 0];
        let mut columns = Columns::default();
        let mut next = 0;
        // The batch starts at dataset row 7.
        let kept = label_positions(&ids, 7, 5, Some(0), true, &mut next, &mut columns);
        assert_eq!(kept, vec![1, 2, 4, 6]);
        assert_eq!(columns.token_ids, vec![11, 12, 13, 14]);
        assert_eq!(columns.sample_ids, vec![0, 0, 1, 2]);
        assert_eq!(columns.positions, vec![0, 1, 0, 0]);
        assert_eq!(columns.rows, vec![7, 7, 7, 8]);
        assert_eq!(columns.row_positions, vec![1, 2, 4, 1]);

        let mut columns = Columns::default();
        let mut next = 0;
        let kept = label_positions(&ids[..5], 0, 5, Some(0), false, &mut next, &mut columns);
        assert_eq!(kept, vec![0, 1, 2, 3, 4]);
        assert_eq!(columns.sample_ids, vec![0, 0, 0, 1, 1]);
        assert_eq!(columns.positions, vec![0, 1, 2, 0, 1]);
    }
}
