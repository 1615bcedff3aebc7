//! Attention read and written in TransformerLens' `[batch, pos, head, d_head]` layout: the per-head
//! GEMMs walk that layout through strides, so no head-first copies are made.

use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use std::sync::atomic::{AtomicBool, Ordering};

use super::matmul::rows_per_block;
use super::nn::masked_softmax_in_place;
use crate::guard::{StopReason, StopSignal};

/// Sizes of one attention call.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub d_head: usize,
}

/// `softmax(scale · q kᵀ)` per batch and head, `q` `[B, Tq, H, d]`, `k` `[B, Tk, H, d]` → `[B, H, Tq, Tk]`.
///
/// Each head's product runs in blocks of query rows with `stop` checked between them; once it fires,
/// the rest is zeroed and the reason returned.
pub(crate) fn pattern(
    q: &[f32],
    k: &[f32],
    dims: Dims,
    scale: f32,
    causal: bool,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
    let Dims {
        batch,
        heads,
        q_len,
        k_len,
        d_head,
    } = dims;
    let row = (heads * d_head) as isize;
    let len = batch * heads * q_len * k_len;
    if len == 0 || d_head == 0 {
        let mut out = vec![0.0f32; len];
        masked_softmax_in_place(&mut out, q_len, k_len, causal);
        return Ok(out);
    }
    let block = rows_per_block(k_len, d_head);
    let stopped = AtomicBool::new(false);
    let scores = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(q_len * k_len)
            .enumerate()
            .for_each(|(bh, dst)| {
                let (b, h) = (bh / heads, bh % heads);
                let q_at = (b * q_len * heads + h) * d_head;
                let k_at = (b * k_len * heads + h) * d_head;
                for t0 in (0..q_len).step_by(block) {
                    if stopped.load(Ordering::Relaxed) || stop.reason().is_some() {
                        stopped.store(true, Ordering::Relaxed);
                        for v in &mut dst[t0 * k_len..] {
                            v.write(0.0);
                        }
                        return;
                    }
                    let rows = block.min(q_len - t0);
                    // SAFETY: row t of this head's Q is q[q_at + t·H·d ..][..d], inside q for t < Tq
                    // (buffers match their shapes by construction, and the ops layer checked q's
                    // shape); likewise K, read transposed. `dst` is exactly Tq × Tk.
                    unsafe {
                        gemm(
                            rows,
                            k_len,
                            d_head,
                            dst.as_mut_ptr().add(t0 * k_len).cast::<f32>(),
                            1,
                            k_len as isize,
                            false,
                            q.as_ptr().add(q_at + t0 * row as usize),
                            1,
                            row,
                            k.as_ptr().add(k_at),
                            row,
                            1,
                            0.0,
                            scale,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        )
                    }
                }
            });
    };
    // SAFETY: the chunks tile the buffer, and each block of rows is written by its GEMM (k = d_head > 0,
    // no accumulation) or zeroed.
    let mut out = unsafe { super::fully_written(len, scores) };
    if let Some(reason) = stop.reason().filter(|_| stopped.into_inner()) {
        return Err(reason);
    }
    masked_softmax_in_place(&mut out, q_len, k_len, causal);
    Ok(out)
}

/// `z = pattern · v` per batch and head, `pattern` `[B, H, Tq, Tk]`, `v` `[B, Tk, H, d]` → `[B, Tq, H, d]`.
///
/// Blocks of query rows with `stop` checked between them, as [`pattern`].
pub(crate) fn weighted_values(
    pattern: &[f32],
    v: &[f32],
    dims: Dims,
    stop: &StopSignal,
) -> Result<Vec<f32>, StopReason> {
    let Dims {
        batch,
        heads,
        q_len,
        k_len,
        d_head,
    } = dims;
    let row = (heads * d_head) as isize;
    let mut out = vec![0.0f32; batch * q_len * heads * d_head];
    if out.is_empty() || k_len == 0 {
        return Ok(out);
    }
    let dst = super::SharedMut(out.as_mut_ptr());
    let block = rows_per_block(d_head, k_len);
    (0..batch * heads).into_par_iter().for_each(|bh| {
        let (b, h) = (bh / heads, bh % heads);
        let z_at = (b * q_len * heads + h) * d_head;
        let v_at = (b * k_len * heads + h) * d_head;
        for t0 in (0..q_len).step_by(block) {
            if stop.reason().is_some() {
                return;
            }
            let rows = block.min(q_len - t0);
            // SAFETY: each (b, h) writes only rows z[b, t, h, ..d] — disjoint from every other task's —
            // and every read and write stays inside its buffer for the shapes the ops layer checked
            // (buffers match their shapes by construction).
            unsafe {
                gemm(
                    rows,
                    d_head,
                    k_len,
                    dst.at(z_at + t0 * row as usize),
                    1,
                    row,
                    false,
                    pattern.as_ptr().add(bh * q_len * k_len + t0 * k_len),
                    1,
                    k_len as isize,
                    v.as_ptr().add(v_at),
                    1,
                    row,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                )
            }
        }
    });
    // The output was zeroed first, so rows skipped after a stop are initialised all the same.
    match stop.reason() {
        Some(reason) => Err(reason),
        None => Ok(out),
    }
}
