//! Ops that move elements without computing on them.

use rayon::prelude::*;

use super::rows_per_task;
use crate::shape::Shape;

/// Copies `x` (of shape `src`) into the axis order `perm`, contiguous.
pub(crate) fn permute<T: Copy + Default + Send + Sync>(
    x: &[T],
    src: &Shape,
    perm: &[usize],
) -> Vec<T> {
    let src_strides = src.strides();
    let out_dims: Vec<usize> = perm.iter().map(|&p| src.dims()[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| src_strides[p]).collect();
    let numel = src.numel();
    let mut out = vec![T::default(); numel];
    let rank = out_dims.len();
    if numel == 0 || rank == 0 {
        out.copy_from_slice(x);
        return out;
    }
    let row_len = out_dims[rank - 1];
    let last_stride = strides[rank - 1];
    out.par_chunks_mut(row_len)
        .with_min_len(rows_per_task(row_len))
        .enumerate()
        .for_each(|(row, dst)| {
            let mut rem = row;
            let mut base = 0;
            for d in (0..rank - 1).rev() {
                base += (rem % out_dims[d]) * strides[d];
                rem /= out_dims[d];
            }
            for (j, v) in dst.iter_mut().enumerate() {
                *v = x[base + j * last_stride];
            }
        });
    out
}

/// `x` viewed as `[outer, len, inner]` → `[outer, end - start, inner]`.
pub(crate) fn slice<T: Copy + Send + Sync>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    start: usize,
    end: usize,
) -> Vec<T> {
    let take = (end - start) * inner;
    let mut out = Vec::with_capacity(outer * take);
    for o in 0..outer {
        let base = o * len * inner + start * inner;
        out.extend_from_slice(&x[base..base + take]);
    }
    out
}

/// Joins `[outer, len_i, inner]` parts along the middle axis.
pub(crate) fn concat<T: Copy>(parts: &[(&[T], usize)], outer: usize, inner: usize) -> Vec<T> {
    let total: usize = parts.iter().map(|(_, len)| len).sum();
    let mut out = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        for (data, len) in parts {
            let block = len * inner;
            out.extend_from_slice(&data[o * block..(o + 1) * block]);
        }
    }
    out
}

/// Picks entries `indices` (range-checked by the caller) along the middle axis of `[outer, len, inner]`.
pub(crate) fn index_select<T: Copy>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    indices: &[i32],
) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let base = (o * len + i as usize) * inner;
            out.extend_from_slice(&x[base..base + inner]);
        }
    }
    out
}
