//! Operators on [`Tensor`], so that method code reads like its equations.
//!
//! They panic with the host's one-line error on a bad call (shapes that do not broadcast): the run ends
//! with that message, like a failed assertion. Use the named methods to handle the error instead.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::Tensor;

fn must(result: crate::Result<Tensor>) -> Tensor {
    result.unwrap_or_else(|e| panic!("{e}"))
}

macro_rules! tensor_operator {
    ($trait:ident, $method:ident, $call:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                must(Tensor::$call(self, rhs))
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                must(Tensor::$call(self, &rhs))
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                must(Tensor::$call(&self, rhs))
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                must(Tensor::$call(&self, &rhs))
            }
        }
    };
}

tensor_operator!(Add, add, add);
tensor_operator!(Sub, sub, sub);
tensor_operator!(Mul, mul, mul);
tensor_operator!(Div, div, div);

macro_rules! scalar_operator {
    ($trait:ident, $method:ident, |$x:ident, $s:ident| $body:expr) => {
        impl $trait<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, $s: f32) -> Tensor {
                let $x = self;
                must($body)
            }
        }
        impl $trait<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, $s: f32) -> Tensor {
                let $x = &self;
                must($body)
            }
        }
    };
}

scalar_operator!(Add, add, |x, s| x.affine(1.0, s));
scalar_operator!(Sub, sub, |x, s| x.affine(1.0, -s));
scalar_operator!(Mul, mul, |x, s| x.affine(s, 0.0));
scalar_operator!(Div, div, |x, s| x.affine(1.0 / s, 0.0));

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        must(Tensor::neg(self))
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        must(Tensor::neg(&self))
    }
}
