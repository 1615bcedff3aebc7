//! The CUDA twins of the engine's ops. Each function takes operands the engine op has already
//! validated (shapes, dtypes, devices, index ranges), launches its kernels and returns the new buffer.

pub(crate) mod elementwise;
pub(crate) mod grad;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod nn;
pub(crate) mod rowwise;
pub(crate) mod sparse;

use super::buffer::DeviceBuffer;
use crate::{DType, Result};

/// Threads per block for the grid-stride and block-per-row kernels.
const THREADS: u32 = 256;
/// Grid-stride loops cover any length, so grids stay within every GPU's x-dimension limit.
const MAX_BLOCKS: usize = 65_535;

/// One thread per element (grid-stride beyond `MAX_BLOCKS` blocks).
fn per_element(n: usize) -> ((u32, u32, u32), (u32, u32, u32)) {
    let blocks = n.div_ceil(THREADS as usize).min(MAX_BLOCKS) as u32;
    ((blocks, 1, 1), (THREADS, 1, 1))
}

/// One block per row (grid-stride beyond `MAX_BLOCKS` rows).
fn per_row(rows: usize) -> ((u32, u32, u32), (u32, u32, u32)) {
    ((rows.min(MAX_BLOCKS) as u32, 1, 1), (THREADS, 1, 1))
}

/// A new f32 buffer on `like`'s device, for a kernel to fill.
fn new_f32(op: &'static str, like: &DeviceBuffer, len: usize) -> Result<DeviceBuffer> {
    DeviceBuffer::alloc(op, &like.backend, DType::F32, len)
}
