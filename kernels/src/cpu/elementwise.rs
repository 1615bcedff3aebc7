use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, math, rows_per_task, simd};
use crate::ops::{BinaryOp, UnaryOp};
use crate::shape::Shape;

pub(crate) fn unary(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    // One monomorphised loop per op, so each vectorises on its own.
    match op {
        UnaryOp::Relu => map(x, |v| v.max(0.0)),
        UnaryOp::GeluTanh => map(x, math::gelu_tanh),
        UnaryOp::Exp => map(x, math::exp),
        UnaryOp::Sigmoid => map(x, |v| 1.0 / (1.0 + math::exp(-v))),
        UnaryOp::Abs => map(x, f32::abs),
        UnaryOp::Neg => map(x, |v| -v),
        UnaryOp::Sqrt => map(x, f32::sqrt),
        UnaryOp::GeluErf => map_by(x, simd::gelu_erf_into),
        UnaryOp::Erf => map_by(x, simd::erf_into),
        UnaryOp::Log | UnaryOp::Tanh => map(x, |v| op.apply(v)),
    }
}

/// `f` applied to every element, in parallel for large inputs.
pub(crate) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    map_by(x, |o, i| simd::map_into(o, i, &f))
}

/// `kernel` (which writes every slot of its output chunk from the same-sized input chunk) over `x`,
/// in parallel chunks for large inputs.
pub(crate) fn map_by(
    x: &[f32],
    kernel: impl Fn(&mut [std::mem::MaybeUninit<f32>], &[f32]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(PAR_MIN_ELEMS)
        .zip(x.par_chunks(PAR_MIN_ELEMS))
        .for_each(|(o, i)| kernel(o, i));
    // SAFETY: the chunks cover all x.len() slots and `kernel` writes each.
    unsafe { out.set_len(x.len()) };
    out
}

pub(crate) fn binary(
    op: BinaryOp,
    a: &[f32],
    a_shape: &Shape,
    b: &[f32],
    b_shape: &Shape,
    out: &Shape,
) -> Vec<f32> {
    let f = |x: f32, y: f32| op.apply(x, y);
    if a_shape == out && b_shape == out {
        let mut o = vec![0.0; out.numel()];
        let chunk = PAR_MIN_ELEMS;
        o.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(|(o, (a, b))| simd::zip_into(o, a, b, f));
        return o;
    }
    broadcast_rows(out, &[(a, a_shape), (b, b_shape)], |row, inputs| {
        let (a, sa) = inputs[0];
        let (b, sb) = inputs[1];
        match (sa, sb) {
            // The common cases, contiguous or one side a broadcast scalar, as straight loops.
            (1, 1) => simd::zip_into(row, a, b, f),
            (1, 0) => simd::map_with_scalar(row, a, |x| f(x, b[0])),
            (0, 1) => simd::map_with_scalar(row, b, |y| f(a[0], y)),
            _ => {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = f(a[j * sa], b[j * sb]);
                }
            }
        }
    })
}

/// `cond != 0 ? a : b`, all three broadcast together.
pub(crate) fn select(
    cond: &[f32],
    c_shape: &Shape,
    a: &[f32],
    a_shape: &Shape,
    b: &[f32],
    b_shape: &Shape,
    out: &Shape,
) -> Vec<f32> {
    broadcast_rows(
        out,
        &[(cond, c_shape), (a, a_shape), (b, b_shape)],
        |row, inputs| {
            let (c, sc) = inputs[0];
            let (a, sa) = inputs[1];
            let (b, sb) = inputs[2];
            for (j, o) in row.iter_mut().enumerate() {
                *o = if c[j * sc] != 0.0 {
                    a[j * sa]
                } else {
                    b[j * sb]
                };
            }
        },
    )
}

/// Walks the output row by row (a row is its last axis). For each row, `fill` gets the row and, per
/// input, the slice starting at that row's first element and the input's stride along the last axis
/// (0 where it is broadcast).
fn broadcast_rows<'a>(
    out: &Shape,
    inputs: &[(&'a [f32], &Shape)],
    fill: impl Fn(&mut [f32], &[(&'a [f32], usize)]) + Sync,
) -> Vec<f32> {
    let rank = out.rank();
    let numel = out.numel();
    if rank == 0 {
        let firsts: Vec<(&[f32], usize)> = inputs.iter().map(|(d, _)| (*d, 0)).collect();
        let mut o = vec![0.0; 1];
        fill(&mut o, &firsts);
        return o;
    }
    let row_len = out.dims()[rank - 1];
    let mut o = vec![0.0; numel];
    if row_len == 0 || numel == 0 {
        return o;
    }
    let strides: Vec<Vec<usize>> = inputs
        .iter()
        .map(|(_, s)| s.broadcast_strides(out))
        .collect();
    let lead = &out.dims()[..rank - 1];
    o.par_chunks_mut(row_len)
        .with_min_len(rows_per_task(row_len))
        .enumerate()
        .for_each(|(row, chunk)| {
            let mut views = Vec::with_capacity(inputs.len());
            for ((data, _), st) in inputs.iter().zip(&strides) {
                let mut rem = row;
                let mut base = 0;
                for d in (0..lead.len()).rev() {
                    base += (rem % lead[d]) * st[d];
                    rem /= lead[d];
                }
                views.push((&data[base..], st[rank - 1]));
            }
            fill(chunk, &views);
        });
    o
}
