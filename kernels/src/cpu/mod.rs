//! The CPU backend: plain slices in, fresh `Vec`s out, parallel over rows with rayon.
//! Callers (the `ops` layer) have already validated shapes and dtypes.

pub(crate) mod attention;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod nn;
pub(crate) mod reduce;
pub(crate) mod simd;

/// Below this many elements the cost of splitting work across threads outweighs the gain.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// Rows per parallel task such that each task touches at least `PAR_MIN_ELEMS` elements.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (PAR_MIN_ELEMS / row_len.max(1)).max(1)
}
