//! Products with sparse codes (TopK SAEs): sparse-matmul, gather-dot and scatter-outer.

use super::{MAX_BLOCKS, THREADS, new_f32, per_row};
use crate::cuda::abi::len;
use crate::cuda::buffer::DeviceBuffer;
use crate::{DType, Result};

pub(crate) fn sparse_matmul(
    values: &DeviceBuffer,
    indices: &DeviceBuffer,
    table: &DeviceBuffer,
    n: usize,
    k: usize,
    d: usize,
) -> Result<DeviceBuffer> {
    const OP: &str = "sparse_matmul";
    let out = new_f32(OP, values, n * d)?;
    let (grid, block) = per_row(n);
    let args = [
        out.ptr(),
        values.typed(OP, DType::F32)?,
        indices.typed(OP, DType::I32)?,
        table.typed(OP, DType::F32)?,
        len(n),
        len(k),
        len(d),
    ];
    values
        .backend
        .launch("sparse_matmul_f32", grid, block, &args)?;
    Ok(out)
}

pub(crate) fn gather_dot(
    lhs: &DeviceBuffer,
    indices: &DeviceBuffer,
    table: &DeviceBuffer,
    n: usize,
    k: usize,
    d: usize,
) -> Result<DeviceBuffer> {
    const OP: &str = "gather_dot";
    let out = new_f32(OP, lhs, n * k)?;
    // One warp per (row, code) pair.
    let pairs_per_block = (THREADS / 32) as usize;
    let grid = (
        (n * k).div_ceil(pairs_per_block).min(MAX_BLOCKS) as u32,
        1,
        1,
    );
    let args = [
        out.ptr(),
        lhs.typed(OP, DType::F32)?,
        indices.typed(OP, DType::I32)?,
        table.typed(OP, DType::F32)?,
        len(n),
        len(k),
        len(d),
    ];
    lhs.backend
        .launch("gather_dot_f32", grid, (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// `host_indices` are the (validated) indices already read back for their range check: the pairs are
/// grouped by output row here, in the CPU engine's order, so the kernel sums each row deterministically.
pub(crate) fn scatter_outer(
    values: &DeviceBuffer,
    host_indices: &[i32],
    rhs: &DeviceBuffer,
    k: usize,
    d: usize,
    rows: usize,
) -> Result<DeviceBuffer> {
    const OP: &str = "scatter_outer";
    let mut row_start = vec![0i32; rows + 1];
    for &r in host_indices {
        row_start[r as usize + 1] += 1;
    }
    for r in 0..rows {
        row_start[r + 1] += row_start[r];
    }
    let mut next: Vec<i32> = row_start[..rows].to_vec();
    let mut pairs = vec![0i32; host_indices.len()];
    for (p, &r) in host_indices.iter().enumerate() {
        let slot = &mut next[r as usize];
        pairs[*slot as usize] = p as i32;
        *slot += 1;
    }
    let row_start = DeviceBuffer::from_i32(&values.backend, &row_start)?;
    let pairs = DeviceBuffer::from_i32(&values.backend, &pairs)?;
    let out = new_f32(OP, values, rows * d)?;
    let (grid, block) = per_row(rows);
    let args = [
        out.ptr(),
        values.typed(OP, DType::F32)?,
        rhs.typed(OP, DType::F32)?,
        row_start.ptr(),
        pairs.ptr(),
        len(rows),
        len(k),
        len(d),
    ];
    values
        .backend
        .launch("scatter_outer_f32", grid, block, &args)?;
    Ok(out)
}
