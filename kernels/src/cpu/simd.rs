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

// The functions with an `erf` inside are too large for LLVM to inline through a closure into the
// loops above (each element became a call, ~7× slower), so they get loops of their own.

/// `out[i] = erf(x[i])`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn erf_into(out: &mut [MaybeUninit<f32>], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(math::erf(v));
    }
}

/// `out[i] = gelu_erf(x[i])`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn gelu_erf_into(out: &mut [MaybeUninit<f32>], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(math::gelu_erf(v));
    }
}

/// `dx[i] = g[i] · gelu′(x[i])`, the tanh or the exact form.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn gelu_backward_into(dx: &mut [MaybeUninit<f32>], x: &[f32], g: &[f32], tanh: bool) {
    if tanh {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
            d.write(g * math::gelu_tanh_derivative(x));
        }
    } else {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
            d.write(g * math::gelu_erf_derivative(x));
        }
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

/// `acc[i] = f(acc[i], x[i])`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn zip_assign<F: Fn(f32, f32) -> f32>(acc: &mut [f32], x: &[f32], f: F) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = f(*a, v);
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

/// One row of the softmax VJP from the saved output `y` (see `grad::softmax_backward`).
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn softmax_backward_row(dx: &mut [f32], y: &[f32], g: &[f32], log: bool) {
    if log {
        let total = math::sum_by(g, |v| v);
        for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
            *d = g - math::exp(y) * total;
        }
    } else {
        let dot = math::dot(g, y);
        for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
            *d = y * (g - dot);
        }
    }
}

/// One row of the layer-norm VJP (see `grad::layer_norm_backward`); the statistics as in
/// `layer_norm_row`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
))]
pub(crate) fn layer_norm_backward_row(
    dx: &mut [f32],
    g_xhat: &mut [f32],
    row: &[f32],
    weight: &[f32],
    g: &[f32],
    eps: f32,
) {
    let d = row.len() as f32;
    let mean = math::sum_by(row, |v| v) / d;
    let var = math::sum_by(row, |v| (v - mean) * (v - mean)) / d;
    let inv_std = 1.0 / (var + eps).sqrt();
    // x̂ goes into `g_xhat` first, then is scaled by g in place once the row sums have used it.
    for (h, &v) in g_xhat.iter_mut().zip(row) {
        *h = (v - mean) * inv_std;
    }
    // ĝ = g ⊙ w goes into `dx` first, for its two row means.
    for ((o, &w), &g) in dx.iter_mut().zip(weight).zip(g) {
        *o = g * w;
    }
    let mean_gw = math::sum_by(dx, |v| v) / d;
    let mean_gw_xhat = math::dot(dx, g_xhat) / d;
    for ((o, h), &g) in dx.iter_mut().zip(g_xhat.iter_mut()).zip(g) {
        *o = inv_std * (*o - mean_gw - *h * mean_gw_xhat);
        *h *= g;
    }
}
