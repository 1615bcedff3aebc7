//! Permute, slice, concat and index-select, on 32-bit words (f32 and i32 alike).

use super::per_element;
use crate::cuda::abi::{Layout, MAX_DIMS, len};
use crate::cuda::buffer::DeviceBuffer;
use crate::{DType, Error, Result, Shape};

pub(crate) fn permute(x: &DeviceBuffer, shape: &Shape, perm: &[usize]) -> Result<DeviceBuffer> {
    const OP: &str = "permute";
    if perm.len() > MAX_DIMS {
        return Err(Error::invalid(
            OP,
            format!(
                "{} axes: the CUDA kernels take at most {MAX_DIMS}",
                perm.len()
            ),
        ));
    }
    let strides = shape.strides();
    let mut layout = Layout {
        rank: perm.len() as i32,
        ..Layout::default()
    };
    for (i, &p) in perm.iter().enumerate() {
        layout.out_shape[i] = shape.dims()[p] as i64;
        layout.in_stride[i] = strides[p] as i64;
    }
    let n = x.len();
    let out = DeviceBuffer::alloc(OP, &x.backend, x.dtype(), n)?;
    let (grid, block) = per_element(n);
    x.backend.launch(
        "permute_b32",
        grid,
        block,
        &[
            out.ptr(),
            x.ptr(),
            len(n),
            crate::cuda::abi::Arg::Layout(layout),
        ],
    )?;
    Ok(out)
}

pub(crate) fn slice(
    x: &DeviceBuffer,
    outer: usize,
    length: usize,
    inner: usize,
    start: usize,
    end: usize,
) -> Result<DeviceBuffer> {
    let count = end - start;
    let n = outer * count * inner;
    let out = DeviceBuffer::alloc("slice", &x.backend, x.dtype(), n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        x.ptr(),
        len(outer),
        len(length),
        len(inner),
        len(start),
        len(count),
    ];
    x.backend.launch("slice_b32", grid, block, &args)?;
    Ok(out)
}

/// Joins `parts` (each with its length along the axis) into `[outer, Σ lengths, inner]`.
pub(crate) fn concat(
    parts: &[(&DeviceBuffer, usize)],
    outer: usize,
    inner: usize,
) -> Result<DeviceBuffer> {
    let (first, _) = parts[0];
    let total: usize = parts.iter().map(|(_, l)| l).sum();
    let out = DeviceBuffer::alloc(
        "concat",
        &first.backend,
        first.dtype(),
        outer * total * inner,
    )?;
    let mut offset = 0;
    for &(part, part_len) in parts {
        let (grid, block) = per_element(outer * part_len * inner);
        let args = [
            out.ptr(),
            part.ptr(),
            len(outer),
            len(part_len),
            len(total),
            len(offset),
            len(inner),
        ];
        first.backend.launch("place_b32", grid, block, &args)?;
        offset += part_len;
    }
    Ok(out)
}

pub(crate) fn index_select(
    x: &DeviceBuffer,
    outer: usize,
    length: usize,
    inner: usize,
    indices: &DeviceBuffer,
) -> Result<DeviceBuffer> {
    const OP: &str = "index_select";
    let count = indices.len();
    let n = outer * count * inner;
    let out = DeviceBuffer::alloc(OP, &x.backend, x.dtype(), n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        x.ptr(),
        indices.typed(OP, DType::I32)?,
        len(outer),
        len(length),
        len(inner),
        len(count),
    ];
    x.backend.launch("index_select_b32", grid, block, &args)?;
    Ok(out)
}
