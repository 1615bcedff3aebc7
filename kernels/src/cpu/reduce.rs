use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, rows_per_task, simd};
use crate::ops::ReduceOp;

/// Reduces `x`, viewed as `[outer, len, inner]`, along the middle axis into `[outer, inner]`.
pub(crate) fn reduce(op: ReduceOp, x: &[f32], outer: usize, len: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0.0; outer * inner];
    if inner == 0 || outer == 0 {
        return out;
    }
    if inner == 1 {
        out.par_iter_mut()
            .with_min_len(rows_per_task(len))
            .enumerate()
            .for_each(|(o, d)| *d = reduce_row(op, &x[o * len..(o + 1) * len]));
        return out;
    }
    // Along a middle axis, whole rows of `inner` values are added into the output row in order, so
    // memory is read front to back and each output still sums its column in index order (the same
    // value as a column walk, bit for bit). Columns are split into blocks for the threads, which
    // matters when `outer` is 1 (a bias gradient: the sum over every row of a batch).
    let columns = column_block(inner, len);
    out.par_chunks_mut(inner).enumerate().for_each(|(o, dst)| {
        let block = &x[o * len * inner..(o + 1) * len * inner];
        dst.par_chunks_mut(columns)
            .enumerate()
            .for_each(|(c, d)| reduce_columns(op, d, block, c * columns, len, inner));
    });
    out
}

/// Columns per task: enough that each task reads at least `PAR_MIN_ELEMS` values, and a multiple of
/// 16 floats (a cache line) so that tasks do not share lines.
fn column_block(inner: usize, len: usize) -> usize {
    (PAR_MIN_ELEMS / len.max(1))
        .next_multiple_of(16)
        .clamp(16, inner.next_multiple_of(16))
}

/// `dst[i] = op over j of block[j · inner + first + i]`.
fn reduce_columns(
    op: ReduceOp,
    dst: &mut [f32],
    block: &[f32],
    first: usize,
    len: usize,
    inner: usize,
) {
    let width = dst.len();
    let row = |j: usize| &block[j * inner + first..j * inner + first + width];
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            dst.fill(0.0);
            (0..len).for_each(|j| simd::zip_assign(dst, row(j), |a, v| a + v));
            if op == ReduceOp::Mean {
                dst.iter_mut().for_each(|d| *d /= len as f32);
            }
        }
        ReduceOp::Max => {
            dst.fill(f32::NEG_INFINITY);
            (0..len).for_each(|j| simd::zip_assign(dst, row(j), f32::max));
        }
        ReduceOp::Min => {
            dst.fill(f32::INFINITY);
            (0..len).for_each(|j| simd::zip_assign(dst, row(j), f32::min));
        }
        ReduceOp::L2Norm => {
            dst.fill(0.0);
            (0..len).for_each(|j| simd::zip_assign(dst, row(j), |a, v| a + v * v));
            dst.iter_mut().for_each(|d| *d = d.sqrt());
        }
    }
}

fn reduce_row(op: ReduceOp, values: &[f32]) -> f32 {
    let values = values.iter().copied();
    let len = values.len();
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
