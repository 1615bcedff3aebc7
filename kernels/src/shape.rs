use std::fmt;

use crate::{Error, Result};

/// The dimensions of a tensor, outermost first. Tensors are always stored contiguous and row-major.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// The largest dimension: indices must fit an i32 (ids, `index_select`, `top_k`) and a dimension
    /// must read back through the plugin API's u32 shapes unchanged.
    pub const MAX_DIM: usize = i32::MAX as usize;
    /// The most elements a tensor may have (2^48): far beyond any device, and small enough that byte
    /// counts of f64 scratch space cannot overflow.
    pub const MAX_NUMEL: usize = 1 << 48;

    /// A shape taken as given. Use [`Shape::checked`] for dimensions that come from outside.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }

    /// A shape whose dimensions and element count are within [`Shape::MAX_DIM`] and
    /// [`Shape::MAX_NUMEL`]: its element count, strides and byte size can be computed without
    /// overflow. Every tensor the engine makes has such a shape. Zero-sized dimensions are fine.
    pub fn checked(op: &'static str, dims: &[usize]) -> crate::Result<Shape> {
        let mut numel: usize = 1;
        let mut too_large = false;
        for &d in dims {
            too_large |= d > Self::MAX_DIM;
            numel = numel.saturating_mul(d);
        }
        // A zero anywhere makes the product 0 however large the others; the dims must still fit.
        if too_large || numel > Self::MAX_NUMEL {
            return Err(Error::TooLarge {
                op,
                shape: Shape(dims.to_vec()),
            });
        }
        Ok(Shape(dims.to_vec()))
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The element count; saturates at `usize::MAX` for a shape that was not [checked](Shape::checked).
    pub fn numel(&self) -> usize {
        self.0.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1usize; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1].saturating_mul(self.0[i + 1]);
        }
        strides
    }

    /// Resolves a possibly negative axis (`-1` is the last) against this shape.
    pub fn axis(&self, op: &'static str, axis: isize) -> Result<usize> {
        let rank = self.rank() as isize;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if resolved < 0 || resolved >= rank {
            return Err(Error::AxisOutOfRange {
                op,
                axis,
                shape: self.clone(),
            });
        }
        Ok(resolved as usize)
    }

    /// Splits the shape around `axis` into (product of outer dims, axis length, product of inner dims).
    pub(crate) fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let product = |dims: &[usize]| dims.iter().fold(1usize, |n, &d| n.saturating_mul(d));
        let outer = product(&self.0[..axis]);
        let inner = product(&self.0[axis + 1..]);
        (outer, self.0[axis], inner)
    }

    /// NumPy broadcasting: align from the right; each pair of dims must be equal or one of them 1.
    pub fn broadcast(op: &'static str, lhs: &Shape, rhs: &Shape) -> Result<Shape> {
        let rank = lhs.rank().max(rhs.rank());
        let mut dims = vec![0; rank];
        for (i, dim) in dims.iter_mut().enumerate() {
            let l = lhs.dim_from_right(rank - 1 - i);
            let r = rhs.dim_from_right(rank - 1 - i);
            *dim = match (l, r) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => {
                    return Err(Error::shapes(
                        op,
                        lhs,
                        rhs,
                        format!("dims {l} and {r} do not broadcast"),
                    ));
                }
            };
        }
        Ok(Shape(dims))
    }

    /// The dim `k` places from the right, or 1 past the left edge.
    fn dim_from_right(&self, k: usize) -> usize {
        if k < self.rank() {
            self.0[self.rank() - 1 - k]
        } else {
            1
        }
    }

    /// Strides for reading this shape as if broadcast to `target` (0 along broadcast dims).
    pub(crate) fn broadcast_strides(&self, target: &Shape) -> Vec<usize> {
        let own = self.strides();
        let offset = target.rank() - self.rank();
        (0..target.rank())
            .map(|i| {
                if i < offset || self.0[i - offset] == 1 {
                    0
                } else {
                    own[i - offset]
                }
            })
            .collect()
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape(dims.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape(dims.to_vec())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(dims)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(Shape::from([2, 3, 4]).strides(), vec![12, 4, 1]);
        assert_eq!(Shape::from([5]).strides(), vec![1]);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        let b = Shape::broadcast("t", &[2, 1, 4].into(), &[3, 1].into()).unwrap();
        assert_eq!(b, Shape::from([2, 3, 4]));
        assert!(Shape::broadcast("t", &[2, 3].into(), &[4].into()).is_err());
        assert_eq!(
            Shape::from([3, 1]).broadcast_strides(&[2, 3, 4].into()),
            vec![0, 1, 0]
        );
    }

    #[test]
    fn checked_shapes_refuse_what_cannot_be_counted() {
        assert!(
            Shape::checked("t", &[0, 5, 7]).is_ok(),
            "zero-sized dims are fine"
        );
        assert!(Shape::checked("t", &[]).is_ok(), "a scalar");
        let huge = [u32::MAX as usize; 4];
        let e = Shape::checked("t", &huge).unwrap_err();
        assert!(matches!(e, Error::TooLarge { op: "t", .. }), "{e}");
        // An element count that overflows usize, hidden behind a zero, is still refused by its dims.
        assert!(Shape::checked("t", &[0, usize::MAX, usize::MAX]).is_err());
        assert!(Shape::checked("t", &[1 << 31]).is_err(), "a dim past i32");
        assert!(
            Shape::checked("t", &[1 << 25, 1 << 24]).is_err(),
            "2^49 elements"
        );
        assert_eq!(Shape::new(huge.to_vec()).numel(), usize::MAX, "saturates");
    }

    #[test]
    fn negative_axes_resolve_from_the_end() {
        let s = Shape::from([2, 3, 4]);
        assert_eq!(s.axis("t", -1).unwrap(), 2);
        assert_eq!(s.axis("t", 0).unwrap(), 0);
        assert!(s.axis("t", 3).is_err());
        assert!(s.axis("t", -4).is_err());
    }
}
