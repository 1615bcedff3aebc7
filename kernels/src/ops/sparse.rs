//! Products with sparse codes: f32 `values` and i32 `indices` `[n, k]` (what `top_k` gives), each row
//! naming `k` rows of a dense `[m, d]` matrix. TopK sparse autoencoders decode, and take the gradients
//! of that decoding, in O(n·k·d) instead of through a dense `[n, m]` matrix.

use super::same_device;
use crate::cpu::sparse as cpu;
use crate::cuda::ops::sparse as gpu;
use crate::{DType, Error, Result, Tensor, guard};

/// The `[rows, cols]` of a 2-D `t`, or a shape error naming it against `other`.
fn matrix(op: &'static str, t: &Tensor, other: &Tensor, why: &str) -> Result<(usize, usize)> {
    match *t.dims() {
        [rows, cols] => Ok((rows, cols)),
        _ => Err(Error::shapes(op, &t.shape, &other.shape, why)),
    }
}

/// The `(n, k)` of sparse codes: 2-D `values` and `indices` of one shape.
fn codes(op: &'static str, values: &Tensor, indices: &Tensor) -> Result<(usize, usize)> {
    same_device(op, values, indices)?;
    let (n, k) = matrix(op, values, indices, "values must be 2-D [n, k]")?;
    if indices.shape != values.shape {
        return Err(Error::shapes(
            op,
            &values.shape,
            &indices.shape,
            "values and indices must have one shape [n, k]",
        ));
    }
    Ok((n, k))
}

/// Fails on the first index (row-major) outside `0..bound`, naming its value and position in the
/// `[n, k]` indices.
fn check_indices(
    op: &'static str,
    indices: &[i32],
    k: usize,
    bound: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    // A negative index becomes a huge usize: one comparison covers both ends.
    match indices.iter().position(|&r| r as usize >= bound) {
        None => Ok(()),
        Some(p) => Err(Error::invalid(
            op,
            format!(
                "index {} at indices[{}, {}] is out of range: {} (need 0 <= index < {bound})",
                indices[p],
                p / k,
                p % k,
                what()
            ),
        )),
    }
}

impl Tensor {
    /// `out[i] = Σ_j values[i, j] · table[indices[i, j]]` for f32 `values` and i32 `indices` `[n, k]`
    /// and f32 `table` `[m, d]`: `[n, d]`. Decoding TopK codes without the dense `[n, m]` matrix.
    pub fn sparse_matmul(values: &Tensor, indices: &Tensor, table: &Tensor) -> Result<Tensor> {
        crate::autodiff::refuse(
            "sparse_matmul",
            &[values, indices, table],
            crate::autodiff::NO_VJP_YET,
        )?;
        const OP: &str = "sparse_matmul";
        let (n, k) = codes(OP, values, indices)?;
        same_device(OP, values, table)?;
        let (m, d) = matrix(OP, table, indices, "table must be 2-D [m, d]")?;
        let out = Tensor::reserve(OP, [n, d], DType::F32)?;
        // Empty, or sums over no codes: zeros, with no kernel launched.
        if out.numel() == 0 || k == 0 {
            return Tensor::zeros_reserved(out, values.device());
        }
        if let Some(v) = values.gpu() {
            // The codes are [n, k] with small k: read back for the range check.
            let idx = indices.i32_host(OP)?;
            check_indices(OP, &idx, k, m, || format!("table is {}", table.shape))?;
            let (i, t) = (indices.gpu_operand(OP)?, table.gpu_operand(OP)?);
            return Tensor::from_gpu(gpu::sparse_matmul(v, i, t, n, k, d)?, out);
        }
        let (v, idx, tab) = (
            values.f32_slice(OP)?,
            indices.i32_slice(OP)?,
            table.f32_slice(OP)?,
        );
        check_indices(OP, idx, k, m, || format!("table is {}", table.shape))?;
        let decoded = cpu::sparse_matmul(v, idx, tab, n, k, d, &guard::stop_signal())
            .map_err(|reason| Error::Interrupted { op: OP, reason })?;
        Tensor::cpu_f32(decoded, out)
    }

    /// `out[i, j] = lhs[i] · table[indices[i, j]]` for f32 `lhs` `[n, d]`, i32 `indices` `[n, k]` and f32
    /// `table` `[m, d]`: `[n, k]`. The gradient of [`Tensor::sparse_matmul`] with respect to its values.
    pub fn gather_dot(lhs: &Tensor, indices: &Tensor, table: &Tensor) -> Result<Tensor> {
        crate::autodiff::refuse(
            "gather_dot",
            &[lhs, indices, table],
            crate::autodiff::NO_VJP_YET,
        )?;
        const OP: &str = "gather_dot";
        same_device(OP, lhs, indices)?;
        same_device(OP, lhs, table)?;
        let (n, d) = matrix(OP, lhs, indices, "lhs must be 2-D [n, d]")?;
        let (rows, k) = matrix(OP, indices, lhs, "indices must be 2-D [n, k]")?;
        if rows != n {
            return Err(Error::shapes(
                OP,
                &lhs.shape,
                &indices.shape,
                "lhs [n, d] and indices [n, k] must have one row count n",
            ));
        }
        let (m, width) = matrix(OP, table, lhs, "table must be 2-D [m, d]")?;
        if width != d {
            return Err(Error::shapes(
                OP,
                &lhs.shape,
                &table.shape,
                "lhs [n, d] and table [m, d] must have one width d",
            ));
        }
        let out = Tensor::reserve(OP, [n, k], DType::F32)?;
        // Empty, or dot products of empty rows: zeros, with no kernel launched (the indices must
        // still be in range).
        if out.numel() == 0 || d == 0 {
            check_indices(OP, &indices.i32_host(OP)?, k, m, || {
                format!("table is {}", table.shape)
            })?;
            return Tensor::zeros_reserved(out, lhs.device());
        }
        if let Some(x) = lhs.gpu() {
            // The codes are [n, k] with small k: read back for the range check.
            let idx = indices.i32_host(OP)?;
            check_indices(OP, &idx, k, m, || format!("table is {}", table.shape))?;
            let (i, t) = (indices.gpu_operand(OP)?, table.gpu_operand(OP)?);
            return Tensor::from_gpu(gpu::gather_dot(x, i, t, n, k, d)?, out);
        }
        let (x, idx, tab) = (
            lhs.f32_slice(OP)?,
            indices.i32_slice(OP)?,
            table.f32_slice(OP)?,
        );
        check_indices(OP, idx, k, m, || format!("table is {}", table.shape))?;
        let dots = cpu::gather_dot(x, idx, tab, k, d, &guard::stop_signal())
            .map_err(|reason| Error::Interrupted { op: OP, reason })?;
        Tensor::cpu_f32(dots, out)
    }

    /// `out[r] = Σ over (i, j) with indices[i, j] = r of values[i, j] · rhs[i]` for f32 `values` and
    /// i32 `indices` `[n, k]` and f32 `rhs` `[n, d]`: `[rows, d]`, zero in rows no index points at. The
    /// gradient of [`Tensor::sparse_matmul`] with respect to its table. Each row is summed in a fixed
    /// order (ascending `i`, then `j`), so the result is the same bit for bit on every run.
    pub fn scatter_outer(
        values: &Tensor,
        indices: &Tensor,
        rhs: &Tensor,
        rows: usize,
    ) -> Result<Tensor> {
        crate::autodiff::refuse(
            "scatter_outer",
            &[values, indices, rhs],
            crate::autodiff::NO_VJP_YET,
        )?;
        const OP: &str = "scatter_outer";
        let (n, k) = codes(OP, values, indices)?;
        same_device(OP, values, rhs)?;
        let (rhs_rows, d) = matrix(OP, rhs, values, "rhs must be 2-D [n, d]")?;
        if rhs_rows != n {
            return Err(Error::shapes(
                OP,
                &values.shape,
                &rhs.shape,
                "values [n, k] and rhs [n, d] must have one row count n",
            ));
        }
        let out = Tensor::reserve(OP, [rows, d], DType::F32)?;
        if out.numel() == 0 || n == 0 || k == 0 {
            let idx = indices.i32_host(OP)?;
            check_indices(OP, &idx, k, rows, || {
                format!("the result has rows = {rows}")
            })?;
            return Tensor::zeros_reserved(out, values.device());
        }
        // Row buckets (rows + 1 offsets) and the sorted (coefficient, source) pairs, 8 bytes each.
        guard::reserve_scratch(OP, &[rows + 1 + 2 * n * k], 8)?;
        if let Some(v) = values.gpu() {
            // The codes are [n, k] with small k: read back for the range check.
            let idx = indices.i32_host(OP)?;
            check_indices(OP, &idx, k, rows, || {
                format!("the result has rows = {rows}")
            })?;
            let grad = gpu::scatter_outer(v, &idx, rhs.gpu_operand(OP)?, k, d, rows)?;
            return Tensor::from_gpu(grad, out);
        }
        let (v, idx, x) = (
            values.f32_slice(OP)?,
            indices.i32_slice(OP)?,
            rhs.f32_slice(OP)?,
        );
        check_indices(OP, idx, k, rows, || format!("the result has rows = {rows}"))?;
        let grad = cpu::scatter_outer(v, idx, x, k, d, rows, &guard::stop_signal())
            .map_err(|reason| Error::Interrupted { op: OP, reason })?;
        Tensor::cpu_f32(grad, out)
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::test_util::{assert_close, ids, t};
    use crate::{Device, Error, Tensor};

    /// Deterministic pseudo-random indices in `0..m` (xorshift), `[n, k]`.
    fn random_indices(n: usize, k: usize, m: usize, seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data = (0..n * k)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % m as u64) as i32
            })
            .collect();
        Tensor::from_vec_i32(data, [n, k], Device::Cpu).unwrap()
    }

    fn randn(dims: [usize; 2], seed: u64) -> Tensor {
        Tensor::randn(dims, 0.0, 1.0, seed, Device::Cpu).unwrap()
    }

    /// The dense `[n, m]` matrix of the codes: `values[i, j]` added at `[i, indices[i, j]]`.
    fn dense(values: &Tensor, indices: &Tensor, m: usize) -> Tensor {
        let (n, k) = (values.dims()[0], values.dims()[1]);
        let (v, idx) = (values.to_vec_f32().unwrap(), indices.to_vec_i32().unwrap());
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..k {
                out[i * m + idx[i * k + j] as usize] += v[i * k + j];
            }
        }
        t(&out, &[n, m])
    }

    /// Shapes that exercise the parallel path, the four-at-a-time loops and their tails (k and d not
    /// multiples of 4 or 16).
    const N: usize = 300;
    const K: usize = 7;
    const M: usize = 50;
    const D: usize = 37;

    #[test]
    fn sparse_matmul_equals_the_dense_product() {
        let (values, indices, table) = (
            randn([N, K], 1),
            random_indices(N, K, M, 2),
            randn([M, D], 3),
        );
        let out = Tensor::sparse_matmul(&values, &indices, &table).unwrap();
        assert_eq!(out.dims(), &[N, D]);
        let expected = dense(&values, &indices, M).matmul(&table).unwrap();
        assert_close(&out, &expected.to_vec_f32().unwrap(), 1e-5);
    }

    #[test]
    fn gather_dot_equals_the_dense_product_gathered() {
        let (lhs, indices, table) = (
            randn([N, D], 4),
            random_indices(N, K, M, 5),
            randn([M, D], 6),
        );
        let out = Tensor::gather_dot(&lhs, &indices, &table).unwrap();
        assert_eq!(out.dims(), &[N, K]);
        let full = lhs
            .matmul_t(&table, false, true)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let idx = indices.to_vec_i32().unwrap();
        let expected: Vec<f32> = (0..N * K)
            .map(|p| full[(p / K) * M + idx[p] as usize])
            .collect();
        assert_close(&out, &expected, 1e-5);
        // Width 768, as in GPT-2 SAEs: the vectorised body with no tail.
        let (lhs, table) = (randn([5, 768], 7), randn([9, 768], 8));
        let indices = random_indices(5, 6, 9, 9);
        let out = Tensor::gather_dot(&lhs, &indices, &table).unwrap();
        let full = lhs
            .matmul_t(&table, false, true)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let idx = indices.to_vec_i32().unwrap();
        let expected: Vec<f32> = (0..30)
            .map(|p| full[(p / 6) * 9 + idx[p] as usize])
            .collect();
        assert_close(&out, &expected, 1e-4);
    }

    #[test]
    fn scatter_outer_equals_the_transposed_dense_product() {
        let (values, indices, rhs) = (
            randn([N, K], 10),
            random_indices(N, K, M, 11),
            randn([N, D], 12),
        );
        // Twenty rows more than any index reaches: they stay zero.
        let rows = M + 20;
        let out = Tensor::scatter_outer(&values, &indices, &rhs, rows).unwrap();
        assert_eq!(out.dims(), &[rows, D]);
        let expected = dense(&values, &indices, rows)
            .matmul_t(&rhs, true, false)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        assert_close(&out, &expected, 1e-4);
        assert!(out.to_vec_f32().unwrap()[M * D..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn repeated_indices_within_a_row_add_up() {
        let values = t(&[1.0, 2.0, 3.0, 0.5, 0.5, -1.0], &[2, 3]);
        let indices = ids(&[1, 1, 0, 2, 2, 2], &[2, 3]);
        let table = t(&[1.0, 10.0, 2.0, 20.0, 3.0, 30.0], &[3, 2]);
        // Row 0: 3·table[1] + 3·table[0]; row 1: 0·table[2].
        let out = Tensor::sparse_matmul(&values, &indices, &table).unwrap();
        assert_close(&out, &[9.0, 90.0, 0.0, 0.0], 0.0);
        let lhs = t(&[1.0, 1.0, 2.0, -1.0], &[2, 2]);
        let out = Tensor::gather_dot(&lhs, &indices, &table).unwrap();
        assert_close(&out, &[22.0, 22.0, 11.0, -24.0, -24.0, -24.0], 0.0);
        let rhs = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let out = Tensor::scatter_outer(&values, &indices, &rhs, 4).unwrap();
        // r0: 3·rhs[0]; r1: 3·rhs[0]; r2: 0·rhs[1]; r3: nothing.
        assert_close(&out, &[3.0, 6.0, 3.0, 6.0, 0.0, 0.0, 0.0, 0.0], 0.0);
    }

    #[test]
    fn scatter_outer_with_nothing_to_scatter_is_zero() {
        let rhs = t(&[1.0, 2.0], &[1, 2]);
        let values = t(&[2.0], &[1, 1]);
        let out = Tensor::scatter_outer(&values, &ids(&[0], &[1, 1]), &rhs, 3).unwrap();
        assert_close(&out, &[2.0, 4.0, 0.0, 0.0, 0.0, 0.0], 0.0);
        // No codes at all (k = 0): every row is zero.
        let out = Tensor::scatter_outer(&t(&[], &[1, 0]), &ids(&[], &[1, 0]), &rhs, 3).unwrap();
        assert_eq!(out.dims(), &[3, 2]);
        assert_close(&out, &[0.0; 6], 0.0);
        // Empty shapes are fine elsewhere too.
        let table = t(&[1.0, 2.0], &[1, 2]);
        let out = Tensor::sparse_matmul(&t(&[], &[2, 0]), &ids(&[], &[2, 0]), &table).unwrap();
        assert_close(&out, &[0.0; 4], 0.0);
        let out = Tensor::gather_dot(&t(&[1.0; 4], &[2, 2]), &ids(&[], &[2, 0]), &table).unwrap();
        assert_eq!(out.dims(), &[2, 0]);
    }

    #[test]
    fn scatter_outer_is_reproducible_bit_for_bit() {
        // Rows summing ~20 terms each, in several parallel tasks (about 500 rows of 64 per task).
        let (n, k, m, d) = (2000, 16, 1500, 64);
        let (values, indices, rhs) = (
            randn([n, k], 13),
            random_indices(n, k, m, 14),
            randn([n, d], 15),
        );
        let first = Tensor::scatter_outer(&values, &indices, &rhs, m)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let again = pool.install(|| {
                Tensor::scatter_outer(&values, &indices, &rhs, m)
                    .unwrap()
                    .to_vec_f32()
                    .unwrap()
            });
            assert_eq!(bits(&first), bits(&again), "{threads} threads");
        }
    }

    #[test]
    fn out_of_range_indices_are_refused_naming_value_and_position() {
        let values = t(&[1.0; 6], &[2, 3]);
        let table = t(&[1.0; 8], &[4, 2]);
        let lhs = t(&[1.0; 4], &[2, 2]);
        let rhs = t(&[1.0; 4], &[2, 2]);
        for (bad, position) in [(4, "indices[1, 2]"), (-1, "indices[1, 2]")] {
            let indices = ids(&[0, 1, 2, 3, 0, bad], &[2, 3]);
            let errors = [
                Tensor::sparse_matmul(&values, &indices, &table).unwrap_err(),
                Tensor::gather_dot(&lhs, &indices, &table).unwrap_err(),
            ];
            for err in errors {
                assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("index {bad} at {position}"))
                        && msg.contains("[4, 2]")
                        && msg.contains("< 4"),
                    "{msg}"
                );
            }
        }
        // For scatter_outer the bound is `rows`, not the table.
        let indices = ids(&[0, 1, 2, 3, 0, 1], &[2, 3]);
        let msg = Tensor::scatter_outer(&values, &indices, &rhs, 3)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("scatter_outer: index 3 at indices[1, 0]") && msg.contains("rows = 3"),
            "{msg}"
        );
        let msg = Tensor::scatter_outer(&values, &ids(&[0, -7, 0, 0, 0, 0], &[2, 3]), &rhs, 3)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("index -7 at indices[0, 1]"), "{msg}");
    }

    #[test]
    fn shapes_are_checked() {
        let shape_error = |result: crate::Result<Tensor>, op: &str, needle: &str| {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("{op}: ")) && msg.contains(needle),
                "{msg}"
            );
        };
        let values = t(&[1.0; 6], &[2, 3]);
        let indices = ids(&[0; 6], &[2, 3]);
        let table = t(&[1.0; 8], &[4, 2]);
        let lhs = t(&[1.0; 4], &[2, 2]);

        // sparse_matmul: ranks, values/indices shapes.
        let flat = t(&[1.0; 6], &[6]);
        shape_error(
            Tensor::sparse_matmul(&flat, &indices, &table),
            "sparse_matmul",
            "values must be 2-D",
        );
        shape_error(
            Tensor::sparse_matmul(&values, &ids(&[0; 6], &[3, 2]), &table),
            "sparse_matmul",
            "[2, 3] and [3, 2]",
        );
        shape_error(
            Tensor::sparse_matmul(&values, &indices, &t(&[1.0; 8], &[8])),
            "sparse_matmul",
            "table must be 2-D",
        );

        // gather_dot: ranks, row counts, widths.
        shape_error(
            Tensor::gather_dot(&t(&[1.0; 4], &[4]), &indices, &table),
            "gather_dot",
            "lhs must be 2-D",
        );
        shape_error(
            Tensor::gather_dot(&lhs, &ids(&[0; 6], &[6]), &table),
            "gather_dot",
            "indices must be 2-D",
        );
        shape_error(
            Tensor::gather_dot(&lhs, &ids(&[0; 6], &[3, 2]), &table),
            "gather_dot",
            "one row count n",
        );
        shape_error(
            Tensor::gather_dot(&lhs, &indices, &t(&[1.0; 8], &[1, 2, 4])),
            "gather_dot",
            "table must be 2-D",
        );
        shape_error(
            Tensor::gather_dot(&lhs, &indices, &t(&[1.0; 12], &[4, 3])),
            "gather_dot",
            "[2, 2] and [4, 3]",
        );

        // scatter_outer: ranks, values/indices shapes, row counts.
        shape_error(
            Tensor::scatter_outer(&flat, &indices, &lhs, 4),
            "scatter_outer",
            "values must be 2-D",
        );
        shape_error(
            Tensor::scatter_outer(&values, &ids(&[0; 3], &[1, 3]), &lhs, 4),
            "scatter_outer",
            "one shape [n, k]",
        );
        shape_error(
            Tensor::scatter_outer(&values, &indices, &t(&[1.0; 4], &[4]), 4),
            "scatter_outer",
            "rhs must be 2-D",
        );
        shape_error(
            Tensor::scatter_outer(&values, &indices, &t(&[1.0; 6], &[3, 2]), 4),
            "scatter_outer",
            "one row count n",
        );
        let err = Tensor::scatter_outer(&values, &indices, &lhs, usize::MAX).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn dtypes_are_checked() {
        let dtype_error = |result: crate::Result<Tensor>, op: &str| {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::DTypeMismatch { .. }), "{err}");
            assert!(err.to_string().starts_with(&format!("{op}: ")), "{err}");
        };
        let values = t(&[1.0; 4], &[2, 2]);
        let indices = ids(&[0; 4], &[2, 2]);
        let float_indices = t(&[0.0; 4], &[2, 2]);
        let table = t(&[1.0; 4], &[2, 2]);
        let int_table = ids(&[1; 4], &[2, 2]);
        let op = "sparse_matmul";
        dtype_error(Tensor::sparse_matmul(&indices, &indices, &table), op);
        dtype_error(Tensor::sparse_matmul(&values, &float_indices, &table), op);
        dtype_error(Tensor::sparse_matmul(&values, &indices, &int_table), op);
        let op = "gather_dot";
        dtype_error(Tensor::gather_dot(&indices, &indices, &table), op);
        dtype_error(Tensor::gather_dot(&values, &float_indices, &table), op);
        dtype_error(Tensor::gather_dot(&values, &indices, &int_table), op);
        let op = "scatter_outer";
        dtype_error(Tensor::scatter_outer(&indices, &indices, &table, 2), op);
        dtype_error(
            Tensor::scatter_outer(&values, &float_indices, &table, 2),
            op,
        );
        dtype_error(Tensor::scatter_outer(&values, &indices, &int_table, 2), op);
    }
}
