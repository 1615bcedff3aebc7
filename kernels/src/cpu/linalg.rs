//! Dense solves in f64: the normal equations of a least-squares fit square the condition number, so
//! f32 accumulation would lose most of the digits the caller wants.

use multiversion::multiversion;
use rayon::prelude::*;

use std::sync::atomic::{AtomicBool, Ordering};

use super::rows_per_task;
use crate::guard::{StopReason, StopSignal};

/// The factorisation stopped at `pivot`: the remaining matrix has a non-positive (or NaN) diagonal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NotPositiveDefinite {
    pub pivot: usize,
    pub value: f64,
}

/// Why a solve gave up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SolveError {
    NotPositiveDefinite(NotPositiveDefinite),
    /// The caller's stop signal fired between columns.
    Stopped(StopReason),
}

impl From<NotPositiveDefinite> for SolveError {
    fn from(e: NotPositiveDefinite) -> Self {
        SolveError::NotPositiveDefinite(e)
    }
}

/// `x` `[n, m]` with `a · x = b` for a symmetric positive-definite `a` `[n, n]` and `b` `[n, m]`, all
/// row-major. Only the lower triangle of `a` is read. `stop` is checked once per column of the
/// factorisation and of the solves, so a large system gives up soon after its caller's deadline.
pub(crate) fn solve_spd(
    a: &[f32],
    b: &[f32],
    n: usize,
    m: usize,
    stop: &StopSignal,
) -> Result<Vec<f32>, SolveError> {
    let l = cholesky(a, n, stop)?;
    // One column of `b` per task: each solve is two triangular sweeps over `l`.
    let mut columns = vec![0.0f64; m * n];
    let stopped = AtomicBool::new(false);
    columns
        .par_chunks_mut(n.max(1))
        .with_min_len(rows_per_task(n * n))
        .enumerate()
        .for_each(|(j, col)| {
            if stopped.load(Ordering::Relaxed) || stop.reason().is_some() {
                stopped.store(true, Ordering::Relaxed);
                return;
            }
            for (i, c) in col.iter_mut().enumerate() {
                *c = b[i * m + j] as f64;
            }
            forward(&l, col);
            backward(&l, col);
        });
    if let Some(reason) = stop.reason().filter(|_| stopped.into_inner()) {
        return Err(SolveError::Stopped(reason));
    }
    let mut x = vec![0.0f32; n * m];
    for (j, col) in columns.chunks_exact(n.max(1)).enumerate().take(m) {
        for (i, &v) in col.iter().enumerate() {
            x[i * m + j] = v as f32;
        }
    }
    Ok(x)
}

/// The lower-triangular `l` with `l · lᵀ = a`, row-major `[n, n]` (upper triangle zero). Column by
/// column (Crout): each entry below the diagonal is one dot product of two finished row prefixes, so
/// the rows of a column are independent and run in parallel.
fn cholesky(a: &[f32], n: usize, stop: &StopSignal) -> Result<Vec<f64>, SolveError> {
    let mut l = vec![0.0f64; n * n];
    for j in 0..n {
        if let Some(reason) = stop.reason() {
            return Err(SolveError::Stopped(reason));
        }
        let (done, below) = l.split_at_mut((j + 1) * n);
        let row_j = &mut done[j * n..];
        let d = a[j * n + j] as f64 - dot(&row_j[..j], &row_j[..j]);
        // `is_finite` also catches NaN.
        if !d.is_finite() || d <= 0.0 {
            return Err(NotPositiveDefinite { pivot: j, value: d }.into());
        }
        let diag = d.sqrt();
        row_j[j] = diag;
        let row_j = &row_j[..j];
        below
            .par_chunks_mut(n)
            .with_min_len(rows_per_task(j))
            .enumerate()
            .for_each(|(k, row_i)| {
                let i = j + 1 + k;
                row_i[j] = (a[i * n + j] as f64 - dot(&row_i[..j], row_j)) / diag;
            });
    }
    Ok(l)
}

/// Solves `l · y = v` in place.
fn forward(l: &[f64], v: &mut [f64]) {
    let n = v.len();
    for i in 0..n {
        let row = &l[i * n..i * n + i];
        v[i] = (v[i] - dot(row, &v[..i])) / l[i * n + i];
    }
}

/// Solves `lᵀ · x = v` in place, subtracting each solved unknown from the rows above it so that `l` is
/// read along its rows.
fn backward(l: &[f64], v: &mut [f64]) {
    let n = v.len();
    for i in (0..n).rev() {
        let xi = v[i] / l[i * n + i];
        v[i] = xi;
        axpy(&mut v[..i], -xi, &l[i * n..i * n + i]);
    }
}

/// Partial sums for the dot product: independent accumulators let it vectorise.
const LANES: usize = 8;

#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (xs, ys) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail: f64 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (cx, cy) in xs.zip(ys) {
        for i in 0..LANES {
            acc[i] += cx[i] * cy[i];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `y += alpha · x`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
fn axpy(y: &mut [f64], alpha: f64, x: &[f64]) {
    for (a, &b) in y.iter_mut().zip(x) {
        *a += alpha * b;
    }
}

/// The first `(i, j)`, `i > j`, where `a` `[n, n]` differs from its transpose by more than `rel_tol`
/// of `sqrt(|a_ii · a_jj|)`, the scale that bounds an off-diagonal entry of a PSD matrix. Rounding
/// (a Gram matrix summed in a different order per tile) stays far below it.
pub(crate) fn asymmetry(a: &[f32], n: usize, rel_tol: f64) -> Option<(usize, usize)> {
    (1..n).find_map(|i| {
        (0..i)
            .find(|&j| {
                let (x, y) = (a[i * n + j] as f64, a[j * n + i] as f64);
                let scale = (a[i * n + i] as f64 * a[j * n + j] as f64).abs().sqrt();
                (x - y).abs() > rel_tol * scale
            })
            .map(|j| (i, j))
    })
}
