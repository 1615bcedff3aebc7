//! Products with sparse codes `(values, indices)` `[n, k]`, each row naming `k` rows of a dense matrix:
//! the encode/decode hot path of TopK sparse autoencoders, in O(n·k·d) instead of a dense `[n, m]`
//! product. Callers (the `ops` layer) have already checked shapes, dtypes and every index.

use multiversion::multiversion;
use rayon::prelude::*;

use super::{Stopper, rows_per_task};
use crate::guard::{StopReason, StopSignal};

/// `out[i] = Σ_j values[i, j] · table[indices[i, j]]` for `values`, `indices` `[n, k]` and `table`
/// `[m, d]`, all row-major; `[n, d]`.
pub(crate) fn sparse_matmul(
    values: &[f32],
    indices: &[i32],
    table: &[f32],
    n: usize,
    k: usize,
    d: usize,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
    let mut out = vec![0.0; n * d];
    if k == 0 || d == 0 {
        return Ok(out);
    }
    let stopper = Stopper::new(stop);
    out.par_chunks_mut(d)
        .zip(values.par_chunks(k).zip(indices.par_chunks(k)))
        .with_min_len(rows_per_task(k * d))
        .for_each(|(o, (v, idx))| {
            if !stopper.should_stop() {
                mix_rows(o, v, idx, table, |r| r as usize)
            }
        });
    stopper.finish(out)
}

/// `out[i, j] = lhs[i] · table[indices[i, j]]` for `lhs` `[n, d]`, `indices` `[n, k]` and `table`
/// `[m, d]`; `[n, k]`.
pub(crate) fn gather_dot(
    lhs: &[f32],
    indices: &[i32],
    table: &[f32],
    k: usize,
    d: usize,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
    let mut out = vec![0.0; indices.len()];
    if k == 0 || d == 0 {
        return Ok(out);
    }
    let stopper = Stopper::new(stop);
    out.par_chunks_mut(k)
        .zip(lhs.par_chunks(d).zip(indices.par_chunks(k)))
        .with_min_len(rows_per_task(k * d))
        .for_each(|(o, (x, idx))| {
            if !stopper.should_stop() {
                dots_into(o, x, idx, table)
            }
        });
    stopper.finish(out)
}

/// `out[r] = Σ over (i, j) with indices[i, j] = r of values[i, j] · rhs[i]` for `values`, `indices`
/// `[n, k]` and `rhs` `[n, d]`; `[rows, d]`.
///
/// Reproducible bit for bit whatever the thread count: a stable counting sort buckets the `(i, j)`
/// pairs by target row (ascending `i`, then `j`), then each output row is summed by one task in that
/// order. No atomics, no per-thread partial outputs to merge.
pub(crate) fn scatter_outer(
    values: &[f32],
    indices: &[i32],
    rhs: &[f32],
    k: usize,
    d: usize,
    rows: usize,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
    let mut out = vec![0.0; rows * d];
    if k == 0 || d == 0 || rows == 0 {
        return Ok(out);
    }
    // `start[r]..start[r + 1]` is row r's bucket in `coeffs` / `sources`.
    let mut start = vec![0usize; rows + 1];
    for &r in indices {
        start[r as usize + 1] += 1;
    }
    for r in 0..rows {
        start[r + 1] += start[r];
    }
    let mut next = start[..rows].to_vec();
    let mut coeffs = vec![0.0f32; indices.len()];
    let mut sources = vec![0usize; indices.len()];
    for (i, (v, idx)) in values
        .chunks_exact(k)
        .zip(indices.chunks_exact(k))
        .enumerate()
    {
        for (&value, &r) in v.iter().zip(idx) {
            let slot = &mut next[r as usize];
            coeffs[*slot] = value;
            sources[*slot] = i;
            *slot += 1;
        }
    }
    let stopper = Stopper::new(stop);
    out.par_chunks_mut(d)
        .enumerate()
        .with_min_len(rows_per_task(d))
        .for_each(|(r, o)| {
            // Rows no index points at are not touched: they stay zero, without a page fault.
            let bucket = start[r]..start[r + 1];
            if !bucket.is_empty() && !stopper.should_stop() {
                mix_rows(o, &coeffs[bucket.clone()], &sources[bucket], rhs, |i| i);
            }
        });
    stopper.finish(out)
}

/// `out = Σ_t coeffs[t] · src[row(ids[t])]`, rows of `src` being `out.len()` long; `out` is left as
/// it is when there are no terms. Four source rows per pass over `out`, so it is loaded and stored a
/// quarter as often; the order of the sum is fixed by the order of `coeffs`.
///
/// The first pass stores without reading: `out` is usually freshly allocated, and reading a fresh page
/// first would map the shared zero page, then fault again (and flush the TLB of every thread) to copy
/// it on the write, which costs more than the arithmetic.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
fn mix_rows<I: Copy, F: Fn(I) -> usize>(
    out: &mut [f32],
    coeffs: &[f32],
    ids: &[I],
    src: &[f32],
    row: F,
) {
    let d = out.len();
    let at = |id: I| &src[row(id) * d..][..d];
    let (c4, i4) = (coeffs.chunks_exact(4), ids.chunks_exact(4));
    let (c_tail, i_tail) = (c4.remainder(), i4.remainder());
    let mut fresh = true;
    for (c, id) in c4.zip(i4) {
        let x = [at(id[0]), at(id[1]), at(id[2]), at(id[3])];
        let c = [c[0], c[1], c[2], c[3]];
        if fresh {
            axpy4::<false>(out, c, x);
        } else {
            axpy4::<true>(out, c, x);
        }
        fresh = false;
    }
    for (&c, &id) in c_tail.iter().zip(i_tail) {
        if fresh {
            axpy::<false>(out, c, at(id));
        } else {
            axpy::<true>(out, c, at(id));
        }
        fresh = false;
    }
}

/// `out (+)= c[0]·x[0] + c[1]·x[1] + c[2]·x[2] + c[3]·x[3]`: added to `out` when `ACC`, else stored.
#[inline(always)]
fn axpy4<const ACC: bool>(out: &mut [f32], c: [f32; 4], x: [&[f32]; 4]) {
    let [x0, x1, x2, x3] = x;
    for ((((o, &a), &b), &e), &f) in out.iter_mut().zip(x0).zip(x1).zip(x2).zip(x3) {
        let s = c[0] * a + c[1] * b + c[2] * e + c[3] * f;
        *o = if ACC { *o + s } else { s };
    }
}

/// `out (+)= c · x`: added to `out` when `ACC`, else stored.
#[inline(always)]
fn axpy<const ACC: bool>(out: &mut [f32], c: f32, x: &[f32]) {
    for (o, &a) in out.iter_mut().zip(x) {
        *o = if ACC { *o + c * a } else { c * a };
    }
}

/// Independent partial sums per dot product, so that the reductions vectorise (and, four at a time,
/// hide the latency of the adds).
const LANES: usize = 16;

/// `out[j] = x · table[ids[j]]`, rows of `table` being `x.len()` long; four dot products per pass
/// over `x`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
fn dots_into(out: &mut [f32], x: &[f32], ids: &[i32], table: &[f32]) {
    let d = x.len();
    let at = |id: i32| &table[id as usize * d..][..d];
    let (xs, x_tail) = x.as_chunks::<LANES>();
    let (o4, i4) = (out.chunks_exact_mut(4), ids.chunks_exact(4));
    let i_tail = i4.remainder();
    for (o, id) in o4.zip(i4) {
        let rows = [at(id[0]), at(id[1]), at(id[2]), at(id[3])];
        let [y0, y1, y2, y3] = rows.map(|r| r.as_chunks::<LANES>().0);
        let mut acc = [[0.0f32; LANES]; 4];
        for ((((x, a), b), c), e) in xs.iter().zip(y0).zip(y1).zip(y2).zip(y3) {
            for l in 0..LANES {
                acc[0][l] += x[l] * a[l];
                acc[1][l] += x[l] * b[l];
                acc[2][l] += x[l] * c[l];
                acc[3][l] += x[l] * e[l];
            }
        }
        for ((o, acc), row) in o.iter_mut().zip(&acc).zip(rows) {
            *o = acc.iter().sum::<f32>() + dot_tail(x_tail, &row[d - x_tail.len()..]);
        }
    }
    let done = ids.len() - i_tail.len();
    for (o, &id) in out[done..].iter_mut().zip(i_tail) {
        let row = at(id);
        let mut acc = [0.0f32; LANES];
        for (x, a) in xs.iter().zip(row.as_chunks::<LANES>().0) {
            for l in 0..LANES {
                acc[l] += x[l] * a[l];
            }
        }
        *o = acc.iter().sum::<f32>() + dot_tail(x_tail, &row[d - x_tail.len()..]);
    }
}

/// The plain dot product of the last `d % LANES` elements.
#[inline(always)]
fn dot_tail(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}
