use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// One matrix operand: its elements, the offset of each batch's matrix, and row/column strides.
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub batch_offsets: Vec<usize>,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `out[b] = scale · lhs[b] (m×k) · rhs[b] (k×n)` for every batch `b`, written row-major into a fresh
/// buffer.
pub(crate) fn batched_matmul(
    lhs: &Operand,
    rhs: &Operand,
    m: usize,
    k: usize,
    n: usize,
    scale: f32,
) -> Vec<f32> {
    let batches = lhs.batch_offsets.len();
    if m * n == 0 || k == 0 {
        return vec![0.0; batches * m * n];
    }
    let threads = rayon::current_num_threads();
    let run = |b: usize, dst: &mut [MaybeUninit<f32>], parallelism: Parallelism| {
        let (lo, ro) = (lhs.batch_offsets[b], rhs.batch_offsets[b]);
        // SAFETY: the ops layer checked that every batch's lhs (m×k) and rhs (k×n) matrices, read with
        // these strides from these offsets, lie inside their buffers, and `dst` holds exactly m×n.
        // With `read_dst` false and k > 0 the GEMM writes every element of `dst`.
        unsafe {
            gemm(
                m,
                n,
                k,
                dst.as_mut_ptr().cast::<f32>(),
                1,
                n as isize,
                false,
                lhs.data.as_ptr().add(lo),
                lhs.col_stride as isize,
                lhs.row_stride as isize,
                rhs.data.as_ptr().add(ro),
                rhs.col_stride as isize,
                rhs.row_stride as isize,
                0.0,
                scale,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    let fill = |out: &mut [MaybeUninit<f32>]| {
        if batches >= threads || (batches > 1 && m * n * k < 1 << 18) {
            // Many small products (attention heads): one product per task.
            out.par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(b, dst)| run(b, dst, Parallelism::None));
        } else {
            // Few large products: let the GEMM split each one across threads.
            let par = if m * n * k >= 1 << 15 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            };
            for (b, dst) in out.chunks_mut(m * n).enumerate() {
                run(b, dst, par);
            }
        }
    };
    // SAFETY: the chunks cover the buffer and every GEMM writes its whole chunk (see above).
    unsafe { super::fully_written(batches * m * n, fill) }
}

/// `x (rows×k) · w (k×n) + bias`, the bias written into the output first and accumulated into by the
/// GEMM, so the affine layer costs one pass.
pub(crate) fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut out = match bias {
        Some(b) => {
            let mut out = Vec::with_capacity(rows * n);
            out.spare_capacity_mut()
                .par_chunks_mut(n)
                .with_min_len(super::rows_per_task(n))
                .for_each(|row| {
                    for (dst, &v) in row.iter_mut().zip(b) {
                        dst.write(v);
                    }
                });
            // SAFETY: every one of the rows × n elements was just written.
            unsafe { out.set_len(rows * n) };
            out
        }
        None => vec![0.0; rows * n],
    };
    if rows * n == 0 || k == 0 {
        return out;
    }
    let parallelism = if rows * n * k >= 1 << 15 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: `x` holds rows×k, `w` holds k×n and `out` rows×n elements, all row-major (checked by
    // the ops layer).
    unsafe {
        gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    };
    out
}
