use std::mem::MaybeUninit;

use std::sync::atomic::{AtomicBool, Ordering};

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use crate::guard::{StopReason, StopSignal};

/// One matrix operand: its elements, the offset of each batch's matrix, and row/column strides.
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub batch_offsets: Vec<usize>,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `out[b] = scale · lhs[b] (m×k) · rhs[b] (k×n)` for every batch `b`, written row-major into a fresh
/// buffer.
///
/// Large products run in blocks of rows with `stop` checked between them; once it fires, the rows
/// not yet computed are zeroed (so the buffer is still fully written) and the reason is returned.
pub(crate) fn batched_matmul(
    lhs: &Operand,
    rhs: &Operand,
    m: usize,
    k: usize,
    n: usize,
    scale: f32,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
    let batches = lhs.batch_offsets.len();
    if m * n == 0 || k == 0 {
        return Ok(vec![0.0; batches * m * n]);
    }
    let threads = rayon::current_num_threads();
    let block = rows_per_block(n, k);
    let stopped = AtomicBool::new(false);
    let run = |b: usize, dst: &mut [MaybeUninit<f32>], parallelism: Parallelism| {
        let (lo, ro) = (lhs.batch_offsets[b], rhs.batch_offsets[b]);
        for r0 in (0..m).step_by(block) {
            if stopped.load(Ordering::Relaxed) || stop.reason().is_some() {
                stopped.store(true, Ordering::Relaxed);
                for v in &mut dst[r0 * n..] {
                    v.write(0.0);
                }
                return;
            }
            let rows = block.min(m - r0);
            // SAFETY: every tensor's buffer holds exactly its shape's elements (checked where tensors
            // are made), and the ops layer derived m, k, n, the strides and the batch offsets from
            // those shapes, so rows r0..r0+rows of this batch's lhs (m×k) and its rhs (k×n) lie
            // inside their buffers; `dst` holds exactly m×n. With `read_dst` false and k > 0 the GEMM
            // writes every element of the block's rows.
            unsafe {
                gemm(
                    rows,
                    n,
                    k,
                    dst.as_mut_ptr().add(r0 * n).cast::<f32>(),
                    1,
                    n as isize,
                    false,
                    lhs.data.as_ptr().add(lo + r0 * lhs.row_stride),
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
    // SAFETY: the chunks cover the buffer, and every block of rows is written by its GEMM or zeroed.
    let out = unsafe { super::fully_written(batches * m * n, fill) };
    match stop.reason().filter(|_| stopped.into_inner()) {
        Some(reason) => Err(reason),
        None => Ok(out),
    }
}

/// Rows per block of a large product: about 2^32 multiply-adds, a quarter of a second on two cores,
/// so a stop signal is seen well within a second. Each block packs the right-hand side again: on a
/// 4096² product (`loupe bench gemm`, 2-core VM) these blocks cost about 4%, blocks of 2^31 about 6%.
pub(crate) fn rows_per_block(n: usize, k: usize) -> usize {
    ((1usize << 32) / n.saturating_mul(k).max(1)).max(1)
}

/// `x (rows×k) · w (k×n) + bias` — or `· wᵀ` for `w` stored `n×k` (`transposed_w`, PyTorch's
/// `nn.Linear` layout) — the bias written into the output first and accumulated into by the GEMM, so
/// the affine layer costs one pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
    transposed_w: bool,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
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
        return Ok(out);
    }
    // Strides of `w` read as the k×n right-hand side.
    let (w_col_stride, w_row_stride) = if transposed_w {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    let parallelism = if rows * n * k >= 1 << 15 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    for r0 in (0..rows).step_by(rows_per_block(n, k)) {
        if let Some(reason) = stop.reason() {
            return Err(reason);
        }
        let block = rows_per_block(n, k).min(rows - r0);
        // SAFETY: `x` holds rows×k, `w` holds k×n and `out` rows×n elements, all row-major (buffers
        // match their shapes by construction; the ops layer derived rows, k and n from them), so
        // rows r0..r0+block of `x` and `out` lie inside them.
        unsafe {
            gemm(
                block,
                n,
                k,
                out.as_mut_ptr().add(r0 * n),
                1,
                n as isize,
                bias.is_some(),
                x.as_ptr().add(r0 * k),
                1,
                k as isize,
                w.as_ptr(),
                w_col_stride,
                w_row_stride,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        };
    }
    Ok(out)
}
