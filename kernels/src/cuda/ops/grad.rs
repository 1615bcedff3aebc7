//! The fused backward kernels (softmax, layer norm, GELU) and the cross-entropy with its VJP.

use super::{new_f32, per_element, per_row};
use crate::cuda::abi::{Arg, len};
use crate::cuda::buffer::DeviceBuffer;
use crate::{DType, Result};

pub(crate) fn softmax_backward(
    y: &DeviceBuffer,
    g: &DeviceBuffer,
    n: usize,
    log: bool,
) -> Result<DeviceBuffer> {
    const OP: &str = "softmax_backward";
    let rows = y.len().checked_div(n).unwrap_or(0);
    let dx = new_f32(OP, y, y.len())?;
    let (grid, block) = per_row(rows);
    let args = [
        dx.ptr(),
        y.typed(OP, DType::F32)?,
        g.typed(OP, DType::F32)?,
        len(rows),
        len(n),
        Arg::I32(i32::from(log)),
    ];
    y.backend
        .launch("softmax_backward_rows_f32", grid, block, &args)?;
    Ok(dx)
}

/// `(dx, g ⊙ x̂)`.
pub(crate) fn layer_norm_backward(
    x: &DeviceBuffer,
    weight: &DeviceBuffer,
    g: &DeviceBuffer,
    d: usize,
    eps: f32,
) -> Result<(DeviceBuffer, DeviceBuffer)> {
    const OP: &str = "layer_norm_backward";
    let rows = x.len().checked_div(d).unwrap_or(0);
    let (dx, g_xhat) = (new_f32(OP, x, x.len())?, new_f32(OP, x, x.len())?);
    let (grid, block) = per_row(rows);
    let args = [
        dx.ptr(),
        g_xhat.ptr(),
        x.typed(OP, DType::F32)?,
        weight.typed(OP, DType::F32)?,
        g.typed(OP, DType::F32)?,
        len(rows),
        len(d),
        Arg::F32(eps),
    ];
    x.backend
        .launch("layer_norm_backward_rows_f32", grid, block, &args)?;
    Ok((dx, g_xhat))
}

pub(crate) fn gelu_backward(
    x: &DeviceBuffer,
    g: &DeviceBuffer,
    tanh: bool,
) -> Result<DeviceBuffer> {
    const OP: &str = "gelu_backward";
    let n = x.len();
    let dx = new_f32(OP, x, n)?;
    let (grid, block) = per_element(n);
    let args = [
        dx.ptr(),
        x.typed(OP, DType::F32)?,
        g.typed(OP, DType::F32)?,
        len(n),
        Arg::I32(i32::from(tanh)),
    ];
    x.backend.launch("gelu_backward_f32", grid, block, &args)?;
    Ok(dx)
}

/// `(loss per row, log-sum-exp per row)`.
pub(crate) fn cross_entropy(
    x: &DeviceBuffer,
    labels: &DeviceBuffer,
    n: usize,
    ignore: i32,
) -> Result<(DeviceBuffer, DeviceBuffer)> {
    const OP: &str = "cross_entropy";
    let rows = labels.len();
    let (loss, lse) = (new_f32(OP, x, rows)?, new_f32(OP, x, rows)?);
    let (grid, block) = per_row(rows);
    let args = [
        loss.ptr(),
        lse.ptr(),
        x.typed(OP, DType::F32)?,
        labels.typed(OP, DType::I32)?,
        len(rows),
        len(n),
        Arg::I32(ignore),
    ];
    x.backend
        .launch("cross_entropy_rows_f32", grid, block, &args)?;
    Ok((loss, lse))
}

pub(crate) fn cross_entropy_backward(
    x: &DeviceBuffer,
    lse: &DeviceBuffer,
    labels: &DeviceBuffer,
    g: &DeviceBuffer,
    n: usize,
    ignore: i32,
) -> Result<DeviceBuffer> {
    const OP: &str = "cross_entropy_backward";
    let rows = labels.len();
    let dx = new_f32(OP, x, x.len())?;
    let (grid, block) = per_row(rows);
    let args = [
        dx.ptr(),
        x.typed(OP, DType::F32)?,
        lse.typed(OP, DType::F32)?,
        labels.typed(OP, DType::I32)?,
        g.typed(OP, DType::F32)?,
        len(rows),
        len(n),
        Arg::I32(ignore),
    ];
    x.backend
        .launch("cross_entropy_backward_rows_f32", grid, block, &args)?;
    Ok(dx)
}
