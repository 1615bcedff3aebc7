//! Reductions, argmax, softmax and layer norm. Along the last axis one block takes each row; along a
//! middle axis of `[outer, len, inner]` one thread takes each column.

use super::{new_f32, per_element, per_row};
use crate::cuda::abi::{Arg, len};
use crate::cuda::buffer::DeviceBuffer;
use crate::{DType, ReduceOp, Result};

/// The op codes of the reduce kernels in rowwise.cu.
fn reduce_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
        ReduceOp::Min => 3,
        ReduceOp::L2Norm => 4,
    }
}

pub(crate) fn reduce(
    op: ReduceOp,
    x: &DeviceBuffer,
    outer: usize,
    length: usize,
    inner: usize,
) -> Result<DeviceBuffer> {
    const OP: &str = "reduce";
    let out = new_f32(OP, x, outer * inner)?;
    let input = x.typed(OP, DType::F32)?;
    let code = Arg::I32(reduce_code(op));
    if inner == 1 {
        let (grid, block) = per_row(outer);
        let args = [out.ptr(), input, len(outer), len(length), code];
        x.backend.launch("reduce_rows_f32", grid, block, &args)?;
    } else {
        let (grid, block) = per_element(outer * inner);
        let args = [out.ptr(), input, len(outer), len(length), len(inner), code];
        x.backend.launch("reduce_strided_f32", grid, block, &args)?;
    }
    Ok(out)
}

pub(crate) fn argmax(
    x: &DeviceBuffer,
    outer: usize,
    length: usize,
    inner: usize,
) -> Result<DeviceBuffer> {
    const OP: &str = "argmax";
    let out = DeviceBuffer::alloc(OP, &x.backend, DType::I32, outer * inner)?;
    let input = x.typed(OP, DType::F32)?;
    if inner == 1 {
        let (grid, block) = per_row(outer);
        let args = [out.ptr(), input, len(outer), len(length)];
        x.backend.launch("argmax_rows_f32", grid, block, &args)?;
    } else {
        let (grid, block) = per_element(outer * inner);
        let args = [out.ptr(), input, len(outer), len(length), len(inner)];
        x.backend.launch("argmax_strided_f32", grid, block, &args)?;
    }
    Ok(out)
}

pub(crate) fn softmax(
    x: &DeviceBuffer,
    length: usize,
    inner: usize,
    log: bool,
) -> Result<DeviceBuffer> {
    const OP: &str = "softmax";
    let n = x.len();
    let out = new_f32(OP, x, n)?;
    let input = x.typed(OP, DType::F32)?;
    let outer = n.checked_div(length * inner).unwrap_or(0);
    let log = Arg::I32(i32::from(log));
    if inner == 1 {
        let (grid, block) = per_row(outer);
        let args = [out.ptr(), input, len(outer), len(length), log];
        x.backend.launch("softmax_rows_f32", grid, block, &args)?;
    } else {
        let (grid, block) = per_element(outer * inner);
        let args = [out.ptr(), input, len(outer), len(length), len(inner), log];
        x.backend
            .launch("softmax_strided_f32", grid, block, &args)?;
    }
    Ok(out)
}

pub(crate) fn layer_norm(
    x: &DeviceBuffer,
    weight: &DeviceBuffer,
    bias: &DeviceBuffer,
    d: usize,
    eps: f32,
) -> Result<DeviceBuffer> {
    const OP: &str = "layer_norm";
    let n = x.len();
    let rows = n.checked_div(d).unwrap_or(0);
    let out = new_f32(OP, x, n)?;
    let (grid, block) = per_row(rows);
    let args = [
        out.ptr(),
        x.typed(OP, DType::F32)?,
        weight.typed(OP, DType::F32)?,
        bias.typed(OP, DType::F32)?,
        len(rows),
        len(d),
        Arg::F32(eps),
    ];
    x.backend
        .launch("layer_norm_rows_f32", grid, block, &args)?;
    Ok(out)
}
