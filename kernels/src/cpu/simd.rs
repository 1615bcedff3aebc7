//! Hot loops compiled for the widest SIMD the CPU offers. The default x86-64 target assumes only SSE2;
//! `#[simd_kernel]` (multiversion) compiles a function again for AVX-512 and for AVX2+FMA and picks the
//! best at run time, so one binary runs everywhere and vectorises fully where it can.

use std::mem::MaybeUninit;

use multiversion::multiversion;

use super::math;

/// `out[i] = f(x[i])`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn map_into<F: Fn(f32) -> f32>(out: &mut [MaybeUninit<f32>], x: &[f32], f: F) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(f(v));
    }
}

/// `out[i] = f(a[i], b[i])`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn zip_into<F: Fn(f32, f32) -> f32>(out: &mut [f32], a: &[f32], b: &[f32], f: F) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// `out[i] = f(a[i], b)`: one side a broadcast scalar.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn map_with_scalar<F: Fn(f32) -> f32>(out: &mut [f32], a: &[f32], f: F) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = f(x);
    }
}

/// Softmax (or log-softmax) of one row in place. Subtracting the row max keeps `exp` finite; a row of
/// all `-inf` comes out as NaN, as in PyTorch.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn softmax_row(row: &mut [f32], log: bool) {
    let max = math::max(row);
    if log {
        let log_sum = math::sum_by(row, |v| math::exp(v - max)).ln() + max;
        row.iter_mut().for_each(|v| *v -= log_sum);
    } else {
        row.iter_mut().for_each(|v| *v = math::exp(*v - max));
        let inv = 1.0 / math::sum_by(row, |v| v);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` for one row (biased variance, as PyTorch).
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn layer_norm_row(out: &mut [f32], row: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
    let d = row.len() as f32;
    let mean = math::sum_by(row, |v| v) / d;
    let var = math::sum_by(row, |v| (v - mean) * (v - mean)) / d;
    let inv_std = 1.0 / (var + eps).sqrt();
    for (((o, &v), &w), &b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
        *o = (v - mean) * inv_std * w + b;
    }
}
