//! Linear solves: least-squares fits and ridge regressions (`(XᵀX + λI) w = Xᵀy`) in one op.

use super::same_device;
use crate::cpu::linalg::{self as cpu, SolveError};
use crate::{DType, Error, Result, Tensor, guard};

/// How far `a` may be from symmetric, relative to its diagonal, before it is refused.
const SYMMETRY_TOL: f64 = 1e-3;

impl Tensor {
    /// `x` with `a · x = b`, for `a` `[n, n]` symmetric positive definite and `b` `[n, m]`: a Cholesky
    /// factorisation accumulated in f64, then two triangular solves per column of `b`.
    pub fn solve_spd(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        crate::autodiff::refuse("solve_spd", &[a, b], crate::autodiff::NO_VJP_YET)?;
        const OP: &str = "solve_spd";
        same_device(OP, a, b)?;
        let [n, n2] = *a.dims() else {
            return Err(Error::shapes(
                OP,
                &a.shape,
                &b.shape,
                "a must be a 2-D [n, n] matrix",
            ));
        };
        if n != n2 {
            return Err(Error::shapes(OP, &a.shape, &b.shape, "a must be square"));
        }
        let [rows, m] = *b.dims() else {
            return Err(Error::shapes(
                OP,
                &a.shape,
                &b.shape,
                format!("b must be 2-D [{n}, m]; reshape a vector to [{n}, 1]"),
            ));
        };
        if rows != n {
            return Err(Error::shapes(
                OP,
                &a.shape,
                &b.shape,
                format!("b must have {n} rows, one per row of a"),
            ));
        }
        let out = Tensor::reserve(OP, [n, m], DType::F32)?;
        // The f64 factor [n, n] and solved columns [n, m] are scratch the caller's budget pays for too.
        guard::reserve_scratch(OP, &[n, n + m], 8)?;
        // On a GPU the system is read back and solved here in f64: it is small (n is a factorisation's
        // rank or a regression's width), and a sequential Cholesky gains nothing from the device.
        let (a_host, b_host) = (a.f32_host(OP)?, b.f32_host(OP)?);
        let (a_values, b_values) = (&a_host[..], &b_host[..]);
        if let Some((i, j)) = cpu::asymmetry(a_values, n, SYMMETRY_TOL) {
            return Err(Error::invalid(
                OP,
                format!(
                    "a is not symmetric: a[{i}, {j}] = {} but a[{j}, {i}] = {}",
                    a_values[i * n + j],
                    a_values[j * n + i]
                ),
            ));
        }
        let stop = guard::stop_signal();
        let x = cpu::solve_spd(a_values, b_values, n, m, &stop).map_err(|e| match e {
            SolveError::Stopped(reason) => Error::Interrupted { op: OP, reason },
            SolveError::NotPositiveDefinite(e) => Error::invalid(
                OP,
                format!(
                    "a [{n}, {n}] is not positive definite (pivot {} is {:.3e}); add a small ridge to \
                     its diagonal, e.g. a + 1e-4 · mean(diag(a)) · I",
                    e.pivot, e.value
                ),
            ),
        })?;
        Tensor::place(crate::storage::CpuBuffer::F32(x), out, a.device())
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::test_util::{assert_close, t};
    use crate::{Device, Error, Tensor};

    #[test]
    fn a_known_3x3_system() {
        // a = [[4, 2, 0], [2, 5, 1], [0, 1, 3]], x = [[1, -1], [2, 0], [-1, 3]].
        let a = t(&[4.0, 2.0, 0.0, 2.0, 5.0, 1.0, 0.0, 1.0, 3.0], &[3, 3]);
        let b = t(&[8.0, -4.0, 11.0, 1.0, -1.0, 9.0], &[3, 2]);
        let x = Tensor::solve_spd(&a, &b).unwrap();
        assert_eq!(x.dims(), &[3, 2]);
        assert_close(&x, &[1.0, -1.0, 2.0, 0.0, -1.0, 3.0], 1e-6);
    }

    #[test]
    fn a_random_spd_system_has_a_small_residual() {
        let (n, m) = (97, 5);
        let mm = Tensor::randn([2 * n, n], 0.0, 1.0, 3, Device::Cpu).unwrap();
        let eye: Vec<f32> = (0..n * n)
            .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
            .collect();
        let a = mm
            .matmul_t(&mm, true, false)
            .unwrap()
            .binary(crate::BinaryOp::Add, &t(&eye, &[n, n]))
            .unwrap();
        let b = Tensor::randn([n, m], 0.0, 1.0, 4, Device::Cpu).unwrap();
        let x = Tensor::solve_spd(&a, &b).unwrap();
        let residual = a.matmul(&x).unwrap().to_vec_f32().unwrap();
        let b = b.to_vec_f32().unwrap();
        let worst = residual
            .iter()
            .zip(&b)
            .map(|(r, b)| (r - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "max |a x - b| = {worst}");
    }

    #[test]
    fn not_positive_definite_is_refused_with_a_hint() {
        // Symmetric, eigenvalues 3 and -1.
        let a = t(&[1.0, 2.0, 2.0, 1.0], &[2, 2]);
        let b = t(&[1.0, 1.0], &[2, 1]);
        let err = Tensor::solve_spd(&a, &b).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("solve_spd: ") && msg.contains("not positive definite"),
            "{msg}"
        );
        assert!(msg.contains("ridge"), "{msg}");
        // Singular: positive semi-definite is not enough.
        let a = t(&[1.0, 1.0, 1.0, 1.0], &[2, 2]);
        assert!(Tensor::solve_spd(&a, &b).is_err());
        let a = t(&[f32::NAN, 0.0, 0.0, 1.0], &[2, 2]);
        assert!(Tensor::solve_spd(&a, &b).is_err());
    }

    #[test]
    fn an_asymmetric_matrix_is_refused() {
        let a = t(&[2.0, 1.0, 0.0, 2.0], &[2, 2]);
        let b = t(&[1.0, 1.0], &[2, 1]);
        let msg = Tensor::solve_spd(&a, &b).unwrap_err().to_string();
        assert!(
            msg.contains("not symmetric") && msg.contains("a[1, 0]"),
            "{msg}"
        );
    }

    #[test]
    fn shapes_are_checked() {
        let sq = t(&[2.0, 0.0, 0.0, 2.0], &[2, 2]);
        let col = t(&[1.0, 1.0], &[2, 1]);
        let shape_error = |a: &Tensor, b: &Tensor| {
            let err = Tensor::solve_spd(a, b).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        };
        shape_error(&t(&[1.0; 6], &[2, 3]), &col);
        shape_error(&t(&[1.0; 8], &[2, 2, 2]), &col);
        shape_error(&sq, &t(&[1.0, 1.0], &[2]));
        shape_error(&sq, &t(&[1.0; 3], &[3, 1]));
        let ids = crate::ops::test_util::ids(&[1, 0, 0, 1], &[2, 2]);
        assert!(matches!(
            Tensor::solve_spd(&ids, &col),
            Err(Error::DTypeMismatch { .. })
        ));
        // Empty right-hand sides are fine.
        let x = Tensor::solve_spd(&sq, &t(&[], &[2, 0])).unwrap();
        assert_eq!(x.dims(), &[2, 0]);
    }
}
