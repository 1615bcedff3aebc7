//! The op set, as methods on [`Tensor`](crate::Tensor). Each method validates its inputs, then hands the
//! work to the backend that holds the tensors.

mod attention;
mod elementwise;
mod grad;
mod layout;
mod linalg;
mod matmul;
mod nn;
mod optim;
mod reduce;
mod sparse;

#[cfg(test)]
mod empty;
#[cfg(test)]
pub(crate) mod test_util;

use crate::{Error, Result, Tensor};

pub use matmul::MatmulPrecision;
pub use optim::AdamConfig;

/// Element-by-element functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Relu,
    /// GELU with the tanh approximation (`gelu_new` in GPT-2).
    GeluTanh,
    /// Exact GELU through the error function (BERT, ViT).
    GeluErf,
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
    Tanh,
    Sigmoid,
    /// The error function (the exact GELU's derivative is built from it).
    Erf,
}

impl UnaryOp {
    #[inline]
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::GeluTanh => crate::cpu::math::gelu_tanh(x),
            UnaryOp::GeluErf => crate::cpu::math::gelu_erf(x),
            UnaryOp::Exp => crate::cpu::math::exp(x),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Neg => -x,
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => 1.0 / (1.0 + crate::cpu::math::exp(-x)),
            UnaryOp::Erf => crate::cpu::math::erf(x),
        }
    }
}

/// Element-by-element functions of two broadcast tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// 1.0 where `a > b`, else 0.0: masks for counting and selecting.
    Greater,
    /// 1.0 where `a < b`, else 0.0.
    Less,
    /// 1.0 where `a == b`, else 0.0.
    Equal,
}

impl BinaryOp {
    #[inline]
    pub(crate) fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::Greater => f32::from(u8::from(a > b)),
            BinaryOp::Less => f32::from(u8::from(a < b)),
            BinaryOp::Equal => f32::from(u8::from(a == b)),
        }
    }
}

/// Reductions along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    /// Euclidean norm: `sqrt(sum(x²))`.
    L2Norm,
}

/// Both tensors must live on the same device.
pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    Ok(())
}
