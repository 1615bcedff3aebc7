//! Element-wise families: unary, broadcasting binary and `where`, affine, clamp, the causal mask and
//! dtype casts.

use super::{new_f32, per_element};
use crate::cuda::abi::{Arg, MAX_DIMS, Strides, Strides3, len};
use crate::cuda::buffer::DeviceBuffer;
use crate::{BinaryOp, DType, Error, Result, Shape, UnaryOp};

/// The op codes of `unary_f32` in elementwise.cu.
fn unary_code(op: UnaryOp) -> i32 {
    match op {
        UnaryOp::Relu => 0,
        UnaryOp::GeluTanh => 1,
        UnaryOp::GeluErf => 2,
        UnaryOp::Exp => 3,
        UnaryOp::Log => 4,
        UnaryOp::Sqrt => 5,
        UnaryOp::Abs => 6,
        UnaryOp::Neg => 7,
        UnaryOp::Tanh => 8,
        UnaryOp::Sigmoid => 9,
        UnaryOp::Erf => 10,
    }
}

/// The op codes of `binary_f32` in elementwise.cu.
fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Max => 4,
        BinaryOp::Min => 5,
        BinaryOp::Greater => 6,
        BinaryOp::Less => 7,
        BinaryOp::Equal => 8,
    }
}

pub(crate) fn unary(op: UnaryOp, x: &DeviceBuffer) -> Result<DeviceBuffer> {
    let n = x.len();
    let out = new_f32("unary", x, n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        x.typed("unary", DType::F32)?,
        len(n),
        Arg::I32(unary_code(op)),
    ];
    x.backend.launch("unary_f32", grid, block, &args)?;
    Ok(out)
}

/// Merges neighbouring axes that every operand walks contiguously (broadcast axes included), so
/// most broadcasts run on one or two axes, and rank-7+ shapes usually fit the kernels' six.
fn coalesce(shape: &[usize], operands: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<Vec<usize>> = vec![Vec::new(); operands.len()];
    for axis in 0..shape.len() {
        let mergeable = !dims.is_empty()
            && operands
                .iter()
                .zip(&strides)
                .all(|(own, merged)| *merged.last().unwrap() == own[axis] * shape[axis]);
        if mergeable {
            *dims.last_mut().unwrap() *= shape[axis];
            for (own, merged) in operands.iter().zip(strides.iter_mut()) {
                *merged.last_mut().unwrap() = own[axis];
            }
        } else {
            dims.push(shape[axis]);
            for (own, merged) in operands.iter().zip(strides.iter_mut()) {
                merged.push(own[axis]);
            }
        }
    }
    (dims, strides)
}

/// `src` as a fixed array of the kernels' width.
fn padded(src: &[usize]) -> [i64; MAX_DIMS] {
    let mut out = [0i64; MAX_DIMS];
    for (o, &v) in out.iter_mut().zip(src) {
        *o = v as i64;
    }
    out
}

/// Broadcast strides of `operands` over `out`, coalesced to at most `MAX_DIMS` axes.
fn broadcast_layout(
    op: &'static str,
    operands: &[&Shape],
    out: &Shape,
) -> Result<(Vec<usize>, Vec<Vec<usize>>)> {
    let strides: Vec<Vec<usize>> = operands.iter().map(|s| s.broadcast_strides(out)).collect();
    let (dims, strides) = coalesce(out.dims(), &strides);
    if dims.len() > MAX_DIMS {
        return Err(Error::invalid(
            op,
            format!(
                "broadcasting to {out} needs {} axes; the CUDA kernels take at most {MAX_DIMS}",
                dims.len()
            ),
        ));
    }
    Ok((dims, strides))
}

pub(crate) fn binary(
    op: BinaryOp,
    a: &DeviceBuffer,
    a_shape: &Shape,
    b: &DeviceBuffer,
    b_shape: &Shape,
    out_shape: &Shape,
) -> Result<DeviceBuffer> {
    const OP: &str = "binary";
    let (dims, strides) = broadcast_layout(OP, &[a_shape, b_shape], out_shape)?;
    let layout = Strides {
        rank: dims.len() as i32,
        shape: padded(&dims),
        lhs: padded(&strides[0]),
        rhs: padded(&strides[1]),
    };
    let n = out_shape.numel();
    let out = new_f32(OP, a, n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        a.typed(OP, DType::F32)?,
        b.typed(OP, DType::F32)?,
        len(n),
        Arg::I32(binary_code(op)),
        Arg::Strides(layout),
    ];
    a.backend.launch("binary_f32", grid, block, &args)?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn select(
    cond: &DeviceBuffer,
    c_shape: &Shape,
    on_true: &DeviceBuffer,
    t_shape: &Shape,
    on_false: &DeviceBuffer,
    f_shape: &Shape,
    out_shape: &Shape,
) -> Result<DeviceBuffer> {
    const OP: &str = "where";
    let (dims, strides) = broadcast_layout(OP, &[c_shape, t_shape, f_shape], out_shape)?;
    let layout = Strides3 {
        rank: dims.len() as i32,
        shape: padded(&dims),
        cond: padded(&strides[0]),
        on_true: padded(&strides[1]),
        on_false: padded(&strides[2]),
    };
    let n = out_shape.numel();
    let out = new_f32(OP, cond, n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        cond.typed(OP, DType::F32)?,
        on_true.typed(OP, DType::F32)?,
        on_false.typed(OP, DType::F32)?,
        len(n),
        Arg::Strides3(layout),
    ];
    cond.backend.launch("where_f32", grid, block, &args)?;
    Ok(out)
}

/// `x · mul + add`, or with `clamp` set, `x` limited to `[mul, add]`: the two scalar-pair maps.
fn scalar_pair(
    op: &'static str,
    kernel: &'static str,
    x: &DeviceBuffer,
    p: f32,
    q: f32,
) -> Result<DeviceBuffer> {
    let n = x.len();
    let out = new_f32(op, x, n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        x.typed(op, DType::F32)?,
        len(n),
        Arg::F32(p),
        Arg::F32(q),
    ];
    x.backend.launch(kernel, grid, block, &args)?;
    Ok(out)
}

pub(crate) fn affine(x: &DeviceBuffer, mul: f32, add: f32) -> Result<DeviceBuffer> {
    scalar_pair("affine", "affine_f32", x, mul, add)
}

pub(crate) fn clamp(x: &DeviceBuffer, min: f32, max: f32) -> Result<DeviceBuffer> {
    scalar_pair("clamp", "clamp_f32", x, min, max)
}

pub(crate) fn causal_mask(x: &DeviceBuffer, q: usize, k: usize, fill: f32) -> Result<DeviceBuffer> {
    const OP: &str = "causal_mask";
    let n = x.len();
    let out = new_f32(OP, x, n)?;
    let (grid, block) = per_element(n);
    let args = [
        out.ptr(),
        x.typed(OP, DType::F32)?,
        len(n),
        len(q),
        len(k),
        Arg::F32(fill),
    ];
    x.backend.launch("causal_mask_f32", grid, block, &args)?;
    Ok(out)
}

/// f32 ↔ i32 with Rust's `as` semantics.
pub(crate) fn cast(x: &DeviceBuffer, to: DType) -> Result<DeviceBuffer> {
    const OP: &str = "to_dtype";
    let n = x.len();
    let kernel = match (x.dtype(), to) {
        (DType::F32, DType::I32) => "f32_to_i32",
        (DType::I32, DType::F32) => "i32_to_f32",
        (from, to) => {
            return Err(Error::invalid(
                OP,
                format!("internal error: no cast from {from} to {to}"),
            ));
        }
    };
    let out = DeviceBuffer::alloc(OP, &x.backend, to, n)?;
    let (grid, block) = per_element(n);
    x.backend
        .launch(kernel, grid, block, &[out.ptr(), x.ptr(), len(n)])?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_merges_axes_walked_contiguously() {
        // [2, 3, 4] + [4]: the rhs repeats along the two leading axes, which merge into one.
        let out = Shape::new(vec![2, 3, 4]);
        let (dims, strides) = broadcast_layout("t", &[&out, &Shape::new(vec![4])], &out).unwrap();
        assert_eq!(dims, vec![6, 4]);
        assert_eq!(strides, vec![vec![4, 1], vec![0, 1]]);
        // Same shapes: one flat axis.
        let (dims, strides) = broadcast_layout("t", &[&out, &out], &out).unwrap();
        assert_eq!(dims, vec![24]);
        assert_eq!(strides, vec![vec![1], vec![1]]);
        // A column against a row cannot merge.
        let out = Shape::new(vec![5, 7]);
        let (dims, strides) =
            broadcast_layout("t", &[&Shape::new(vec![5, 1]), &Shape::new(vec![7])], &out).unwrap();
        assert_eq!(dims, vec![5, 7]);
        assert_eq!(strides, vec![vec![1, 0], vec![0, 1]]);
    }

    #[test]
    fn eight_axes_that_do_not_merge_are_refused() {
        let out = Shape::new(vec![2; 8]);
        let alternating = Shape::new(vec![2, 1, 2, 1, 2, 1, 2, 1]);
        let err = broadcast_layout("binary", &[&out, &alternating], &out).unwrap_err();
        assert!(err.to_string().contains("at most 6"), "{err}");
    }
}
