//! The matrix product: `matmul_f32` (f32 FMA, tiled) or, for bf16/f16 precision, the tensor-core
//! kernels of matmul_tc.cu, which round f32 operands to 16 bits as they stage them and accumulate in f32.

use std::sync::OnceLock;

use super::new_f32;
use crate::cuda::SOURCES;
use crate::cuda::abi::{Arg, len};
use crate::cuda::buffer::DeviceBuffer;
use crate::{DType, Error, MatmulPrecision, Result};

/// One batched product `C[b] = scale · op(A[b]) · op(B[b])`, `[m, k] · [k, n]` after the transposes;
/// `lhs_offsets[b]` / `rhs_offsets[b]` are the element offsets of batch b's matrices.
pub(crate) struct Gemm<'a> {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub transpose_lhs: bool,
    pub transpose_rhs: bool,
    pub lhs_offsets: &'a [usize],
    pub rhs_offsets: &'a [usize],
    pub scale: f32,
    pub precision: MatmulPrecision,
}

/// gridDim.z's limit: larger batches are launched in chunks.
const MAX_BATCH_PER_LAUNCH: usize = 65_535;

/// Tile and block geometry of a matmul kernel.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    tile_m: usize,
    tile_n: usize,
    block: (u32, u32, u32),
}

/// `#define NAME value` from a kernel source, so the launch geometry is read from the kernel itself.
fn define(module: &str, name: &str) -> Option<usize> {
    let source = SOURCES.iter().find(|s| s.name == module)?;
    source.code.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#define"), Some(n), Some(v)) if n == name => v.parse().ok(),
            _ => None,
        }
    })
}

/// The f32 and the tensor-core kernels' geometry, read once from their sources (compiled in, so
/// their `#define`s never change).
fn tiles() -> Option<&'static (Geometry, Geometry)> {
    static TILES: OnceLock<Option<(Geometry, Geometry)>> = OnceLock::new();
    TILES
        .get_or_init(|| {
            let tile = define("matmul", "TILE")?;
            let side = (tile / define("matmul", "PER_THREAD")?) as u32;
            let f32_path = Geometry {
                tile_m: tile,
                tile_n: tile,
                block: (side, side, 1),
            };
            let tensor_cores = Geometry {
                tile_m: define("matmul_tc", "TC_BLOCK_M")?,
                tile_n: define("matmul_tc", "TC_BLOCK_N")?,
                block: (define("matmul_tc", "TC_THREADS")? as u32, 1, 1),
            };
            Some((f32_path, tensor_cores))
        })
        .as_ref()
}

fn geometry(precision: MatmulPrecision) -> Result<(&'static str, Geometry)> {
    let (f32_path, tensor_cores) = tiles().ok_or_else(|| {
        Error::invalid("matmul", "internal error: a kernel's tile size is missing")
    })?;
    Ok(match precision {
        MatmulPrecision::F32 => ("matmul_f32", *f32_path),
        MatmulPrecision::Bf16 => ("matmul_tc_bf16_f32in", *tensor_cores),
        MatmulPrecision::F16 => ("matmul_tc_f16_f32in", *tensor_cores),
    })
}

/// The common stride when `offsets` step evenly (`offsets[b] = b · stride`), as broadcasting one
/// matrix (stride 0) or batching all of them does.
fn even_stride(offsets: &[usize]) -> Option<usize> {
    let stride = offsets.get(1).map_or(0, |o| o - offsets[0]);
    let even = offsets
        .iter()
        .enumerate()
        .all(|(b, &o)| o == offsets[0] + b * stride);
    even.then_some(stride)
}

pub(crate) fn matmul(a: &DeviceBuffer, b: &DeviceBuffer, g: &Gemm) -> Result<DeviceBuffer> {
    const OP: &str = "matmul";
    let batch = g.lhs_offsets.len();
    let out = new_f32(OP, a, batch * g.m * g.n)?;
    let (kernel, geo) = geometry(g.precision)?;
    // Dtype checks; the launches below pass each batch's own (offset) address.
    a.typed(OP, DType::F32)?;
    b.typed(OP, DType::F32)?;
    let grid_xy = (
        g.n.div_ceil(geo.tile_n) as u32,
        g.m.div_ceil(geo.tile_m) as u32,
    );
    let launch = |first: usize, count: usize, stride_a: usize, stride_b: usize| {
        let args = [
            out.ptr_at(first * g.m * g.n),
            a.ptr_at(g.lhs_offsets[first]),
            b.ptr_at(g.rhs_offsets[first]),
            len(g.m),
            len(g.n),
            len(g.k),
            Arg::I32(i32::from(g.transpose_lhs)),
            Arg::I32(i32::from(g.transpose_rhs)),
            len(stride_a),
            len(stride_b),
            len(g.m * g.n),
            Arg::F32(g.scale),
        ];
        a.backend.launch(
            kernel,
            (grid_xy.0, grid_xy.1, count as u32),
            geo.block,
            &args,
        )
    };
    match (even_stride(g.lhs_offsets), even_stride(g.rhs_offsets)) {
        (Some(sa), Some(sb)) => {
            for first in (0..batch).step_by(MAX_BATCH_PER_LAUNCH) {
                launch(first, MAX_BATCH_PER_LAUNCH.min(batch - first), sa, sb)?;
            }
        }
        // Broadcast patterns that do not step evenly (e.g. [2, 1] against [1, 3]): one launch per batch.
        _ => {
            for first in 0..batch {
                launch(first, 1, 0, 0)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_geometry_is_read_from_the_kernels() {
        let (kernel, f32_geo) = geometry(MatmulPrecision::F32).unwrap();
        assert_eq!(kernel, "matmul_f32");
        assert_eq!((f32_geo.tile_m, f32_geo.tile_n), (64, 64));
        assert_eq!(f32_geo.block, (16, 16, 1));
        let (kernel, tc) = geometry(MatmulPrecision::Bf16).unwrap();
        assert_eq!(kernel, "matmul_tc_bf16_f32in");
        assert!(tc.tile_m >= 16 && tc.tile_n >= 8 && tc.block.0 % 32 == 0);
    }

    #[test]
    fn even_strides_are_recognised() {
        assert_eq!(even_stride(&[0]), Some(0));
        assert_eq!(even_stride(&[0, 0, 0]), Some(0));
        assert_eq!(even_stride(&[0, 12, 24]), Some(12));
        assert_eq!(even_stride(&[0, 12, 12, 24]), None);
    }
}
