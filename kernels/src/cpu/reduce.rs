use rayon::prelude::*;

use super::rows_per_task;
use crate::ops::ReduceOp;

/// Reduces `x`, viewed as `[outer, len, inner]`, along the middle axis into `[outer, inner]`.
pub(crate) fn reduce(op: ReduceOp, x: &[f32], outer: usize, len: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0.0; outer * inner];
    if inner == 0 || outer == 0 {
        return out;
    }
    out.par_chunks_mut(inner)
        .with_min_len(rows_per_task(len * inner))
        .enumerate()
        .for_each(|(o, dst)| {
            let block = &x[o * len * inner..(o + 1) * len * inner];
            for (i, d) in dst.iter_mut().enumerate() {
                *d = reduce_strided(op, block[i..].iter().step_by(inner).take(len).copied(), len);
            }
        });
    out
}

fn reduce_strided(op: ReduceOp, values: impl Iterator<Item = f32>, len: usize) -> f32 {
    match op {
        ReduceOp::Sum => values.sum(),
        ReduceOp::Mean => values.sum::<f32>() / len as f32,
        ReduceOp::Max => values.fold(f32::NEG_INFINITY, f32::max),
        ReduceOp::Min => values.fold(f32::INFINITY, f32::min),
        ReduceOp::L2Norm => values.map(|v| v * v).sum::<f32>().sqrt(),
    }
}

/// Index of the largest value along the middle axis of `[outer, len, inner]`; the first one on ties.
pub(crate) fn argmax(x: &[f32], outer: usize, len: usize, inner: usize) -> Vec<i32> {
    let mut out = vec![0i32; outer * inner];
    if inner == 0 || outer == 0 {
        return out;
    }
    out.par_chunks_mut(inner)
        .with_min_len(rows_per_task(len * inner))
        .enumerate()
        .for_each(|(o, dst)| {
            let block = &x[o * len * inner..(o + 1) * len * inner];
            for (i, d) in dst.iter_mut().enumerate() {
                let mut best = 0;
                for j in 1..len {
                    if block[j * inner + i] > block[best * inner + i] {
                        best = j;
                    }
                }
                *d = best as i32;
            }
        });
    out
}
