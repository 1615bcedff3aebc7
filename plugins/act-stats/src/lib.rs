//! act-stats: per-neuron statistics of an activation over a dataset — mean, variance, max, fraction
//! active — and each neuron's top-k activating tokens with their context.
//!
//! Statistics are reduced on the host per batch (a few `[n]` vectors come back) and merged here in f64
//! with Chan et al.'s pairwise update, so the variance stays accurate over long datasets. The top-k
//! activations of each batch are found on the host and merged with the running top-k here.

mod figure;
mod stats;
mod topk;

use loupe_plugin_api::contexts::TopContext;
use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use stats::RunningStats;
use topk::{Hit, TopK};

#[derive(Deserialize)]
struct Params {
    hook: String,
    dataset: String,
    batch_size: usize,
    max_batches: usize,
    top_k: usize,
    context: usize,
    report_neurons: usize,
    active_threshold: f64,
}

struct ActStats;

impl Plugin for ActStats {
    type Params = Params;

    fn manifest() -> Manifest {
        Manifest::new(
            "act-stats",
            env!("CARGO_PKG_VERSION"),
            "act-stats",
            "Per-neuron statistics at a hook over a dataset: mean, variance, max, fraction active, and the top-k activating tokens with context",
        )
        .param(Param::string(
            "hook",
            "blocks.0.mlp.hook_post",
            "Hook to read (TransformerLens name); per-head hooks count head × d_head neurons",
        ))
        .param(Param::string("dataset", "default", "Text dataset to read, by its name in the experiment"))
        .param(Param::int("batch_size", 8, "Sequences per forward pass"))
        .param(Param::int("max_batches", 0, "Stop after this many batches (0: the whole dataset)"))
        .param(Param::int("top_k", 5, "Top activating tokens kept per neuron"))
        .param(Param::int("context", 4, "Tokens of context shown on each side of a top activation"))
        .param(Param::int(
            "report_neurons",
            32,
            "Neurons (from 0) whose top activations go into top_activations.json (0: all)",
        ))
        .param(Param::float(
            "active_threshold",
            0.0,
            "A neuron counts as active where its activation is above this",
        ))
    }

    fn run(p: Params) -> Result<Value> {
        if p.batch_size == 0 || p.top_k == 0 {
            return Err(Error::invalid(
                "act-stats",
                "batch_size and top_k must be at least 1",
            ));
        }
        let data = Dataset::open(&p.dataset)?;
        let seq_len = data.width();
        let batches_in_data = data.rows().div_ceil(p.batch_size);
        let total = match p.max_batches {
            0 => batches_in_data,
            m => m.min(batches_in_data),
        };
        info(&format!(
            "{} sequences of {seq_len} tokens; reading `{}` in {total} batches of {}",
            data.rows(),
            p.hook,
            p.batch_size
        ));

        let mut stats: Option<RunningStats> = None;
        let mut top: Option<TopK> = None;
        let mut position_sum: Option<Tensor> = None;
        let mut tokens: Vec<i32> = Vec::new();
        let mut sequences = 0usize;

        for step in 0..total {
            let Some(batch) = data.next_batch(p.batch_size)? else {
                break;
            };
            let batch_seqs = batch.shape()[0];
            let mut out = Forward::new(&batch)
                .capture(&p.hook)
                .without_logits()
                .run()?;
            let act = by_position(out.take(&p.hook)?, &p.hook)?;
            let dims = act.shape();
            let neurons: usize = dims[2..].iter().product();
            let rows = act.reshape(&[batch_seqs * seq_len, neurons])?;

            // Moments, max and activity of this batch, reduced on the host.
            let mean = rows.mean(0, true)?;
            let centered = &rows - &mean;
            let m2 = (&centered * &centered).sum(0, false)?;
            let max = rows.max(0, false)?;
            let threshold = Tensor::scalar(p.active_threshold as f32)?;
            let active = rows.gt(&threshold)?.sum(0, false)?;
            let s = stats.get_or_insert_with(|| RunningStats::new(neurons));
            s.merge(
                (batch_seqs * seq_len) as u64,
                &mean.to_vec_f32()?,
                &m2.to_vec_f32()?,
                &max.to_vec_f32()?,
                &active.to_vec_f32()?,
            );

            // Each neuron's top activations in this batch: top-k along the rows of the transpose.
            let k = p.top_k.min(batch_seqs * seq_len);
            let (values, indices) = rows.transpose(0, 1)?.top_k(k)?;
            let first_row = tokens.len() as u64;
            top.get_or_insert_with(|| TopK::new(neurons, p.top_k))
                .merge(&values.to_vec_f32()?, &indices.to_vec_i32()?, k, first_row);
            tokens.extend(batch.to_vec_i32()?);

            // Mean activation by position, for the heat map.
            let by_pos = act
                .reshape(&[batch_seqs, seq_len, neurons])?
                .sum(0, false)?;
            position_sum = Some(match position_sum {
                None => by_pos,
                Some(acc) => &acc + &by_pos,
            });
            sequences += batch_seqs;

            let s = stats.as_ref().expect("merged above");
            report::metric("frac_active", step as u64, s.mean_frac_active());
            report::metric("mean_activation", step as u64, s.grand_mean());
            report::progress("batches", step as u64 + 1, total as u64);
        }

        let (Some(stats), Some(top), Some(position_sum)) = (stats, top, position_sum) else {
            return Err(Error::invalid(
                "act-stats",
                format!("dataset `{}` gave no batches", p.dataset),
            ));
        };
        let n = stats.neurons();
        // The final statistics, computed once (each accessor converts from f64).
        let (means, variances, maxes, frac_active) = (
            stats.means(),
            stats.variances(),
            stats.maxes(),
            stats.frac_active(),
        );
        let as_tensor = |v: &[f32]| Tensor::from_f32(v, &[n]);
        let (mean, var, max, frac) = (
            as_tensor(&means)?,
            as_tensor(&variances)?,
            as_tensor(&maxes)?,
            as_tensor(&frac_active)?,
        );
        report::save_tensors(
            "stats.safetensors",
            &[
                ("mean", &mean),
                ("var", &var),
                ("max", &max),
                ("frac_active", &frac),
            ],
        )?;
        let rows: Vec<Vec<String>> = (0..n)
            .map(|j| {
                vec![
                    j.to_string(),
                    means[j].to_string(),
                    variances[j].to_string(),
                    maxes[j].to_string(),
                    frac_active[j].to_string(),
                ]
            })
            .collect();
        report::save_csv(
            "stats.csv",
            &["neuron", "mean", "var", "max", "frac_active"],
            &rows,
        )?;

        let heat = position_sum * (1.0 / sequences as f32);
        // `[seq_len, neurons]`: positions down, neurons across.
        let dims = heat.shape();
        let (positions, columns) = (dims[0], dims[1..].iter().product());
        let title = format!("mean activation by position · {}", p.hook);
        let fig = figure::heat_map(&heat.to_vec_f32()?, positions, columns, &title)
            .map_err(|e| Error::invalid("act-stats", e))?;
        if let Some(note) = &fig.note {
            info(&format!("position_mean.png: {note} to fit the figure"));
        }
        let image = Tensor::from_f32(&fig.rgb, &[fig.height, fig.width, 3])?;
        report::save_png("position_mean.png", &image)?;

        let shown = if p.report_neurons == 0 {
            n
        } else {
            p.report_neurons.min(n)
        };
        let mut neurons_json = Vec::with_capacity(shown);
        for j in 0..shown {
            let hits = top.of(j);
            let hits: Vec<TopContext> = hits
                .iter()
                .map(|h| describe_hit(h, &tokens, seq_len, p.context))
                .collect::<Result<_>>()?;
            neurons_json.push(json!({
                "neuron": j,
                "mean": means[j],
                "max": maxes[j],
                "frac_active": frac_active[j],
                "top": hits,
            }));
        }
        report::save_json(
            "top_activations.json",
            &json!({ "hook": p.hook, "top_k": p.top_k, "context": p.context, "neurons": neurons_json }),
        )?;

        let dead = frac_active.iter().filter(|&&f| f == 0.0).count();
        Ok(json!({
            "hook": p.hook,
            "neurons": n,
            "sequences": sequences,
            "tokens": stats.count(),
            "mean_frac_active": stats.mean_frac_active(),
            "never_active": dead,
            "max_activation": maxes.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        }))
    }
}

/// The activation with positions on axis 1: `[batch, pos, ...]` as TransformerLens shapes most hooks;
/// attention patterns `[batch, head, query, key]` are turned to `[batch, query, head, key]`.
fn by_position(act: Tensor, hook: &str) -> Result<Tensor> {
    if hook.ends_with("hook_pattern") {
        act.permute(&[0, 2, 1, 3])
    } else if act.shape().len() < 3 {
        Err(Error::invalid(
            "act-stats",
            format!(
                "`{hook}` has shape {:?}; expected [batch, pos, ...]",
                act.shape()
            ),
        ))
    } else {
        Ok(act)
    }
}

/// A top activation with its token and the tokens around it (within its sequence).
fn describe_hit(hit: &Hit, tokens: &[i32], seq_len: usize, context: usize) -> Result<TopContext> {
    let row = hit.row as usize;
    let (sequence, position) = (row / seq_len, row % seq_len);
    let ids: Vec<u32> = tokens[sequence * seq_len..(sequence + 1) * seq_len]
        .iter()
        .map(|&t| t as u32)
        .collect();
    TopContext::in_sequence(hit.value, sequence as u64, &ids, position, context)
}

export_plugin!(ActStats);
