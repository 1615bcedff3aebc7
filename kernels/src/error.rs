use crate::{DType, Device, Shape};

/// Everything an op can reject. Messages name the op and the shapes so a caller can pass them straight on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{op}: shapes {lhs} and {rhs} are incompatible ({why})")]
    ShapeMismatch {
        op: &'static str,
        lhs: Shape,
        rhs: Shape,
        why: String,
    },
    #[error("{op}: expected a {expected} tensor, got {got}")]
    DTypeMismatch {
        op: &'static str,
        expected: DType,
        got: DType,
    },
    #[error("{op}: axis {axis} is out of range for a tensor of shape {shape}")]
    AxisOutOfRange {
        op: &'static str,
        axis: isize,
        shape: Shape,
    },
    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },
    #[error("{op}: index {index} is out of range for an axis of size {size}")]
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        size: usize,
    },
    #[error("{op}: tensors are on different devices ({lhs} and {rhs})")]
    DeviceMismatch {
        op: &'static str,
        lhs: Device,
        rhs: Device,
    },
    #[error(
        "{op}: out of device memory on {device} allocating {bytes} bytes (loupe holds {in_use} bytes there); \
         use smaller batches or --device cpu"
    )]
    OutOfDeviceMemory {
        op: &'static str,
        device: Device,
        bytes: usize,
        in_use: usize,
    },
    #[error(
        "{op}: a tensor of shape {shape} is too large (at most {} elements, each dimension at most {})",
        Shape::MAX_NUMEL,
        Shape::MAX_DIM
    )]
    TooLarge { op: &'static str, shape: Shape },
    #[error(
        "{op}: a {shape} result needs {bytes} bytes, more than the {remaining} bytes left in the caller's budget"
    )]
    OverBudget {
        op: &'static str,
        shape: Shape,
        bytes: u64,
        remaining: u64,
    },
    #[error("{op}: stopped because {reason}")]
    Interrupted {
        op: &'static str,
        reason: crate::guard::StopReason,
    },
    /// A tracked tensor reached an op with no gradient: the tape would lose it.
    #[error("{op}: cannot take part in a gradient: {why}")]
    NotDifferentiable { op: &'static str, why: String },
    #[error("device {device} is not available: {why}")]
    DeviceUnavailable { device: Device, why: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }

    pub(crate) fn shapes(
        op: &'static str,
        lhs: &Shape,
        rhs: &Shape,
        why: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: lhs.clone(),
            rhs: rhs.clone(),
            why: why.into(),
        }
    }
}
