//! Embedding, top-k, attention and the Adam step.

use super::{MAX_BLOCKS, new_f32, per_element, per_row};
use crate::cuda::abi::{Arg, len};
use crate::cuda::buffer::DeviceBuffer;
use crate::{DType, Result};

pub(crate) fn embedding(
    table: &DeviceBuffer,
    ids: &DeviceBuffer,
    d: usize,
) -> Result<DeviceBuffer> {
    const OP: &str = "embedding";
    let count = ids.len();
    let out = new_f32(OP, table, count * d)?;
    let (grid, block) = per_row(count);
    let args = [
        out.ptr(),
        table.typed(OP, DType::F32)?,
        ids.typed(OP, DType::I32)?,
        len(count),
        len(d),
    ];
    table.backend.launch("embedding_f32", grid, block, &args)?;
    Ok(out)
}

/// `(values, indices)` of each row's `k` largest entries, largest first.
pub(crate) fn top_k(
    x: &DeviceBuffer,
    row_len: usize,
    k: usize,
) -> Result<(DeviceBuffer, DeviceBuffer)> {
    const OP: &str = "top_k";
    let rows = x.len().checked_div(row_len).unwrap_or(0);
    let values = new_f32(OP, x, rows * k)?;
    let indices = DeviceBuffer::alloc(OP, &x.backend, DType::I32, rows * k)?;
    if k > 0 {
        let (grid, block) = per_row(rows);
        let args = [
            values.ptr(),
            indices.ptr(),
            x.typed(OP, DType::F32)?,
            len(rows),
            len(row_len),
            len(k),
        ];
        x.backend.launch("top_k_f32", grid, block, &args)?;
    }
    Ok((values, indices))
}

/// Each row with all but its `k` largest entries zeroed: top-k, then those values scattered into zeros.
pub(crate) fn keep_top_k(x: &DeviceBuffer, row_len: usize, k: usize) -> Result<DeviceBuffer> {
    const OP: &str = "keep_top_k";
    let rows = x.len().checked_div(row_len).unwrap_or(0);
    let out = DeviceBuffer::zeros(OP, &x.backend, DType::F32, x.len())?;
    let (values, indices) = top_k(x, row_len, k)?;
    let (grid, block) = per_element(rows * k);
    let args = [
        out.ptr(),
        values.ptr(),
        indices.ptr(),
        len(rows),
        len(row_len),
        len(k),
    ];
    x.backend.launch("scatter_rows_f32", grid, block, &args)?;
    Ok(out)
}

/// Sizes of an attention call, as the CPU engine names them.
pub(crate) use crate::cpu::attention::Dims;

/// Threads per attention row: the key loop and the d_head loop are short, so a smaller block keeps more
/// rows in flight.
const ATTENTION_THREADS: u32 = 128;

pub(crate) fn attention_pattern(
    q: &DeviceBuffer,
    k: &DeviceBuffer,
    dims: Dims,
    scale: f32,
    causal: bool,
) -> Result<DeviceBuffer> {
    const OP: &str = "attention_pattern";
    let rows = dims.batch * dims.heads * dims.q_len;
    let out = new_f32(OP, q, rows * dims.k_len)?;
    let grid = (rows.min(MAX_BLOCKS) as u32, 1, 1);
    let args = [
        out.ptr(),
        q.typed(OP, DType::F32)?,
        k.typed(OP, DType::F32)?,
        len(dims.batch),
        len(dims.heads),
        len(dims.q_len),
        len(dims.k_len),
        len(dims.d_head),
        Arg::F32(scale),
        Arg::I32(i32::from(causal)),
    ];
    q.backend.launch(
        "attention_pattern_f32",
        grid,
        (ATTENTION_THREADS, 1, 1),
        &args,
    )?;
    Ok(out)
}

pub(crate) fn attention_values(
    pattern: &DeviceBuffer,
    v: &DeviceBuffer,
    dims: Dims,
) -> Result<DeviceBuffer> {
    const OP: &str = "attention_values";
    let rows = dims.batch * dims.heads * dims.q_len;
    let out = new_f32(OP, pattern, rows * dims.d_head)?;
    let grid = (rows.min(MAX_BLOCKS) as u32, 1, 1);
    let args = [
        out.ptr(),
        pattern.typed(OP, DType::F32)?,
        v.typed(OP, DType::F32)?,
        len(dims.batch),
        len(dims.heads),
        len(dims.q_len),
        len(dims.k_len),
        len(dims.d_head),
    ];
    pattern.backend.launch(
        "attention_values_f32",
        grid,
        (ATTENTION_THREADS, 1, 1),
        &args,
    )?;
    Ok(out)
}

/// The scalars of one Adam step, computed on the host as the CPU engine does.
pub(crate) use crate::cpu::optim::AdamStep;

pub(crate) fn adam(
    param: &DeviceBuffer,
    grad: &DeviceBuffer,
    m: &DeviceBuffer,
    v: &DeviceBuffer,
    s: &AdamStep,
) -> Result<(DeviceBuffer, DeviceBuffer, DeviceBuffer)> {
    const OP: &str = "adam_step";
    let n = param.len();
    let (p_out, m_out, v_out) = (
        new_f32(OP, param, n)?,
        new_f32(OP, param, n)?,
        new_f32(OP, param, n)?,
    );
    let (grid, block) = per_element(n);
    let args = [
        p_out.ptr(),
        m_out.ptr(),
        v_out.ptr(),
        param.typed(OP, DType::F32)?,
        grad.typed(OP, DType::F32)?,
        m.typed(OP, DType::F32)?,
        v.typed(OP, DType::F32)?,
        len(n),
        Arg::F32(s.beta1),
        Arg::F32(s.beta2),
        Arg::F32(s.eps),
        Arg::F32(s.step_size),
        Arg::F32(s.bias_correction2_sqrt),
    ];
    param.backend.launch("adam_step_f32", grid, block, &args)?;
    Ok((p_out, m_out, v_out))
}
