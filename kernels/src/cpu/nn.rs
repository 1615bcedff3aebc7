//! The fused neural-network ops: softmax, layer norm, embedding gather, top-k, causal masking.

use rayon::prelude::*;

use super::{rows_per_task, simd};

/// Softmax (or log-softmax) over the middle axis of `x` viewed as `[outer, len, inner]`.
pub(crate) fn softmax(x: &[f32], len: usize, inner: usize, log: bool) -> Vec<f32> {
    let mut out = x.to_vec();
    if inner == 1 {
        if len == 0 {
            return out;
        }
        out.par_chunks_mut(len)
            .with_min_len(rows_per_task(len))
            .for_each(|row| simd::softmax_row(row, log));
        return out;
    }
    // Strided case: gather each column, normalise, scatter back.
    if inner == 0 || len == 0 {
        return out;
    }
    out.par_chunks_mut(len * inner).for_each(|block| {
        let mut column = vec![0.0; len];
        for i in 0..inner {
            for j in 0..len {
                column[j] = block[j * inner + i];
            }
            simd::softmax_row(&mut column, log);
            for j in 0..len {
                block[j * inner + i] = column[j];
            }
        }
    });
    out
}

/// Softmax over each row of `[.., q, k]` score matrices in place; with `causal`, entries above the
/// diagonal (key `j > i + k - q`) become exactly 0, as a `-inf` mask would make them.
pub(crate) fn masked_softmax_in_place(scores: &mut [f32], q: usize, k: usize, causal: bool) {
    if k == 0 || q == 0 {
        return;
    }
    let shift = k - q.min(k);
    scores
        .par_chunks_mut(k)
        .with_min_len(rows_per_task(k))
        .enumerate()
        .for_each(|(row, values)| {
            let visible = if causal {
                (row % q + shift + 1).min(k)
            } else {
                k
            };
            let (kept, masked) = values.split_at_mut(visible);
            simd::softmax_row(kept, false);
            masked.fill(0.0);
        });
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` over rows of length `d` (biased variance, as PyTorch).
pub(crate) fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], d: usize, eps: f32) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    if d == 0 {
        return out;
    }
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(rows_per_task(d))
        .for_each(|(o, row)| simd::layer_norm_row(o, row, weight, bias, eps));
    out
}

/// Rows of `table` (`[vocab, d]`) picked by `ids`; the ids were range-checked by the caller.
pub(crate) fn embedding(ids: &[i32], table: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0.0; ids.len() * d];
    if d == 0 {
        return out;
    }
    out.par_chunks_mut(d)
        .zip(ids.par_iter())
        .with_min_len(rows_per_task(d))
        .for_each(|(o, &id)| {
            let start = id as usize * d;
            o.copy_from_slice(&table[start..start + d]);
        });
    out
}

/// The `k` largest values of each row of length `len`, largest first (lower index first on ties),
/// with their indices.
pub(crate) fn top_k(x: &[f32], len: usize, k: usize) -> (Vec<f32>, Vec<i32>) {
    let rows = x.len().checked_div(len).unwrap_or(0);
    let mut values = vec![0.0; rows * k];
    let mut indices = vec![0i32; rows * k];
    if k == 0 {
        return (values, indices);
    }
    values
        .par_chunks_mut(k)
        .zip(indices.par_chunks_mut(k))
        .zip(x.par_chunks(len))
        .for_each(|((vals, idx), row)| {
            let mut order: Vec<usize> = (0..len).collect();
            let by_value_desc = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
            if k < len {
                order.select_nth_unstable_by(k - 1, by_value_desc);
                order.truncate(k);
            }
            order.sort_unstable_by(by_value_desc);
            for (j, &i) in order.iter().enumerate() {
                vals[j] = row[i];
                idx[j] = i as i32;
            }
        });
    (values, indices)
}

/// Each row with all but its `k` largest entries set to 0 (ties: the lower index is kept).
pub(crate) fn keep_top_k(x: &[f32], len: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    if k == 0 || len == 0 {
        return out;
    }
    out.par_chunks_mut(len)
        .zip(x.par_chunks(len))
        .with_min_len(rows_per_task(len))
        .for_each(|(dst, row)| {
            if k >= len {
                dst.copy_from_slice(row);
                return;
            }
            let mut order: Vec<usize> = (0..len).collect();
            order.select_nth_unstable_by(k - 1, |a, b| row[*b].total_cmp(&row[*a]).then(a.cmp(b)));
            for &i in &order[..k] {
                dst[i] = row[i];
            }
        });
    out
}

/// Sets entries above the causal diagonal of each `[q, k]` matrix to `fill`. Query `i` may see keys
/// `0..=i + (k - q)`, so a block of new queries after cached keys lines up on the right.
pub(crate) fn causal_mask(x: &[f32], q: usize, k: usize, fill: f32) -> Vec<f32> {
    let mut out = x.to_vec();
    if k == 0 || q == 0 {
        return out;
    }
    let shift = k - q;
    out.par_chunks_mut(k)
        .with_min_len(rows_per_task(k))
        .enumerate()
        .for_each(|(row, dst)| {
            let i = row % q;
            for v in dst.iter_mut().skip(i + shift + 1) {
                *v = fill;
            }
        });
    out
}
