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
/// Large products run in blocks (see [`Blocks`]) with `stop` checked between them; once it fires, the
/// product is zeroed (so the buffer is still fully written) and the reason is returned.
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
    let stopped = AtomicBool::new(false);
    let run = |b: usize, dst: &mut [MaybeUninit<f32>], parallelism: Parallelism| {
        let product = Product {
            m,
            n,
            k,
            lhs: &lhs.data[lhs.batch_offsets[b]..],
            lhs_strides: (lhs.row_stride, lhs.col_stride),
            rhs: &rhs.data[rhs.batch_offsets[b]..],
            rhs_strides: (rhs.row_stride, rhs.col_stride),
            scale,
            dst_holds_addend: false,
        };
        let cancelled = || {
            let hit = stopped.load(Ordering::Relaxed) || stop.reason().is_some();
            if hit {
                stopped.store(true, Ordering::Relaxed);
            }
            hit
        };
        // SAFETY: `dst` is exactly this batch's m×n output; the ops layer derived m, k, n, the
        // strides and the batch offsets from the operands' shapes, so both matrices lie inside
        // their slices.
        if unsafe { !product.run(dst.as_mut_ptr().cast::<f32>(), parallelism, cancelled) } {
            for v in dst.iter_mut() {
                v.write(0.0);
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
    // SAFETY: the chunks cover the buffer, and every product is written by its GEMM or zeroed.
    let out = unsafe { super::fully_written(batches * m * n, fill) };
    match stop.reason().filter(|_| stopped.into_inner()) {
        Some(reason) => Err(reason),
        None => Ok(out),
    }
}

/// Rows per block of a large product: about 2^32 multiply-adds, a quarter of a second on two cores,
/// so a stop signal is seen well within a second.
pub(crate) fn rows_per_block(n: usize, k: usize) -> usize {
    ((1usize << 32) / n.saturating_mul(k).max(1)).max(1)
}

/// How a large product is cut into blocks of about 2^32 multiply-adds (a stop signal is checked
/// between blocks). Each block packs its operands again, so the cut runs along the largest of the
/// three dimensions, which makes the repeated work the smallest: along m each block repacks all of
/// the right-hand side (k·n), along n all of the left (m·k), along k it re-reads the output (m·n).
/// An unembedding's gradient (`[1024, 50257] · [50257, 768]`) cut along its rows repacked 154 MB ten
/// times and ran at a third of the speed of the same product cut along k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocks {
    Rows(usize),
    Columns(usize),
    Depth(usize),
}

impl Blocks {
    fn plan(m: usize, n: usize, k: usize) -> Blocks {
        Blocks::plan_within(m, n, k, 1 << 32)
    }

    /// The cut for blocks of at most `budget` multiply-adds (at least one slice each).
    fn plan_within(m: usize, n: usize, k: usize, budget: usize) -> Blocks {
        let largest = m.max(n).max(k);
        let per_slice = m.saturating_mul(n).saturating_mul(k) / largest.max(1);
        let per_block = (budget / per_slice.max(1)).max(1);
        if largest == m {
            Blocks::Rows(per_block)
        } else if largest == n {
            Blocks::Columns(per_block)
        } else {
            Blocks::Depth(per_block)
        }
    }
}

/// One GEMM `dst = [dst +] scale · lhs · rhs`, with each operand's (row, column) strides.
struct Product<'a> {
    m: usize,
    n: usize,
    k: usize,
    lhs: &'a [f32],
    lhs_strides: (usize, usize),
    rhs: &'a [f32],
    rhs_strides: (usize, usize),
    scale: f32,
    /// The output already holds values to add to (a bias); otherwise it is written, not read.
    dst_holds_addend: bool,
}

impl Product<'_> {
    /// Runs the product block by block into the row-major m×n `dst`; `false` if `cancelled` said
    /// to stop before a block (the output is then partly written).
    ///
    /// # Safety
    /// `dst` must hold m×n elements, and the operands' slices must hold every element their
    /// strides reach for m×k and k×n.
    unsafe fn run(
        &self,
        dst: *mut f32,
        parallelism: Parallelism,
        cancelled: impl Fn() -> bool,
    ) -> bool {
        let (m, n, k) = (self.m, self.n, self.k);
        // SAFETY: the caller's guarantees are `run_in`'s.
        unsafe { self.run_in(Blocks::plan(m, n, k), dst, parallelism, cancelled) }
    }

    /// [`Product::run`] cut as `blocks` says.
    ///
    /// # Safety
    /// As [`Product::run`].
    unsafe fn run_in(
        &self,
        blocks: Blocks,
        dst: *mut f32,
        parallelism: Parallelism,
        cancelled: impl Fn() -> bool,
    ) -> bool {
        let (m, n, k) = (self.m, self.n, self.k);
        let ((lr, lc), (rr, rc)) = (self.lhs_strides, self.rhs_strides);
        let (len, step) = match blocks {
            Blocks::Rows(s) => (m, s),
            Blocks::Columns(s) => (n, s),
            Blocks::Depth(s) => (k, s),
        };
        for start in (0..len).step_by(step) {
            if cancelled() {
                return false;
            }
            let size = step.min(len - start);
            let (bm, bn, bk, dst_at, lhs_at, rhs_at) = match blocks {
                Blocks::Rows(_) => (size, n, k, start * n, start * lr, 0),
                Blocks::Columns(_) => (m, size, k, start, 0, start * rc),
                Blocks::Depth(_) => (m, n, size, 0, start * lc, start * rr),
            };
            // A depth block after the first adds to what the ones before it wrote.
            let read_dst =
                self.dst_holds_addend || (matches!(blocks, Blocks::Depth(_)) && start > 0);
            // SAFETY: the caller guarantees the full product's extents; a block is inside them.
            unsafe {
                gemm(
                    bm,
                    bn,
                    bk,
                    dst.add(dst_at),
                    1,
                    n as isize,
                    read_dst,
                    self.lhs.as_ptr().add(lhs_at),
                    lc as isize,
                    lr as isize,
                    self.rhs.as_ptr().add(rhs_at),
                    rc as isize,
                    rr as isize,
                    1.0,
                    self.scale,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        }
        true
    }
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
    // Strides of `w` read as the k×n right-hand side: (row, column).
    let w_strides = if transposed_w { (1, k) } else { (n, 1) };
    let parallelism = if rows * n * k >= 1 << 15 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    let product = Product {
        m: rows,
        n,
        k,
        lhs: x,
        lhs_strides: (k, 1),
        rhs: w,
        rhs_strides: w_strides,
        scale: 1.0,
        dst_holds_addend: bias.is_some(),
    };
    // SAFETY: `x` holds rows×k, `w` holds k×n and `out` rows×n elements, all row-major (buffers match
    // their shapes by construction; the ops layer derived rows, k and n from them).
    let seen = std::cell::Cell::new(None);
    let cancelled = || {
        seen.set(stop.reason());
        seen.get().is_some()
    };
    if let (false, Some(reason)) = (
        unsafe { product.run(out.as_mut_ptr(), parallelism, cancelled) },
        seen.get(),
    ) {
        return Err(reason);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cut (rows, columns, depth; ragged last blocks; transposed operands; an output that
    /// already holds a bias) gives the product a naive triple loop gives.
    #[test]
    fn every_block_cut_computes_the_same_product() {
        let (m, n, k) = (37, 29, 41);
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let rhs: Vec<f32> = (0..k * n)
            .map(|i| ((i * 13 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let bias: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32).collect();
        for (transpose_lhs, transpose_rhs) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            // The same values stored transposed, read through transposed strides.
            let stored =
                |x: &[f32], rows: usize, cols: usize, t: bool| -> (Vec<f32>, (usize, usize)) {
                    if !t {
                        return (x.to_vec(), (cols, 1));
                    }
                    let mut y = vec![0.0; x.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            y[c * rows + r] = x[r * cols + c];
                        }
                    }
                    (y, (1, rows))
                };
            let (a, a_strides) = stored(&lhs, m, k, transpose_lhs);
            let (b, b_strides) = stored(&rhs, k, n, transpose_rhs);
            for with_bias in [false, true] {
                let mut want = if with_bias {
                    bias.clone()
                } else {
                    vec![0.0; m * n]
                };
                for i in 0..m {
                    for j in 0..n {
                        want[i * n + j] +=
                            0.5 * (0..k).map(|p| lhs[i * k + p] * rhs[p * n + j]).sum::<f32>();
                    }
                }
                let product = Product {
                    m,
                    n,
                    k,
                    lhs: &a,
                    lhs_strides: a_strides,
                    rhs: &b,
                    rhs_strides: b_strides,
                    scale: 0.5,
                    dst_holds_addend: with_bias,
                };
                for blocks in [
                    Blocks::Rows(5),
                    Blocks::Columns(4),
                    Blocks::Depth(6),
                    Blocks::plan(m, n, k),
                ] {
                    let mut got = if with_bias {
                        bias.clone()
                    } else {
                        vec![f32::NAN; m * n]
                    };
                    // SAFETY: `got` holds m×n; `a` and `b` hold m×k and k×n under their strides.
                    let done = unsafe {
                        product.run_in(blocks, got.as_mut_ptr(), Parallelism::None, || false)
                    };
                    assert!(done);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{blocks:?} t=({transpose_lhs}, {transpose_rhs}) bias {with_bias}: [{i}] {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_cut_runs_along_the_largest_dimension() {
        assert_eq!(
            Blocks::plan_within(1024, 768, 50257, 1 << 24),
            Blocks::Depth(21)
        );
        assert_eq!(
            Blocks::plan_within(1024, 50257, 768, 1 << 24),
            Blocks::Columns(21)
        );
        assert_eq!(
            Blocks::plan_within(50257, 768, 1024, 1 << 24),
            Blocks::Rows(21)
        );
        // A slice bigger than the budget still makes progress, one slice per block.
        assert_eq!(
            Blocks::plan_within(4096, 4096, 4096, 1 << 20),
            Blocks::Rows(1)
        );
    }
}
