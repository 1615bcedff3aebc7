//! How a backend's result is judged against the CPU's.

use crate::{DType, Device, Tensor};

/// How close two results came: the largest |cpu − other| over all elements, as a fraction of the
/// scale each element is judged at (see [`compare`]). 0 means bit-for-bit equal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    pub worst: f32,
}

/// Compares `other` (computed on `device`) with the CPU's `cpu`: the same shape, dtype and device,
/// integers exactly equal, and each f32 element within `rtol` of the CPU's, judged relative to the
/// larger of the element and the result's RMS — so cancellation in long sums is judged fairly and a
/// near-zero element is not held to an impossible relative bound. NaN must meet NaN, ±∞ the same ∞.
/// `rtol = 0` asks for exact equality. The error names the first element that disagrees.
pub fn compare(
    cpu: &Tensor,
    other: &Tensor,
    device: Device,
    rtol: f32,
) -> Result<Agreement, String> {
    if cpu.dims() != other.dims() {
        return Err(format!(
            "shape {:?} on {device}, {:?} on the CPU",
            other.dims(),
            cpu.dims()
        ));
    }
    if cpu.dtype() != other.dtype() {
        return Err(format!(
            "dtype {:?} on {device}, {:?} on the CPU",
            other.dtype(),
            cpu.dtype()
        ));
    }
    if other.device() != device {
        return Err(format!(
            "the result is on {}, not on {device}",
            other.device()
        ));
    }
    if cpu.dtype() == DType::I32 {
        let (c, g) = (read_i32(cpu)?, read_i32(other)?);
        return match c.iter().zip(&g).position(|(a, b)| a != b) {
            None => Ok(Agreement { worst: 0.0 }),
            Some(i) => Err(format!(
                "element {i} is {} on {device}, {} on the CPU",
                g[i], c[i]
            )),
        };
    }
    let (c, g) = (read_f32(cpu)?, read_f32(other)?);
    within(&c, &g, rtol).map_err(|(i, why)| {
        format!(
            "element {i} is {} on {device}, {} on the CPU{why}",
            g[i], c[i]
        )
    })
}

/// The element-wise rule of [`compare`] on plain slices of equal length: the worst scaled
/// difference, or the index of the first element outside `rtol` with what it missed by.
pub fn within(reference: &[f32], actual: &[f32], rtol: f32) -> Result<Agreement, (usize, String)> {
    let finite: Vec<f64> = reference
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    let rms =
        (finite.iter().map(|v| v * v).sum::<f64>() / finite.len().max(1) as f64).sqrt() as f32;
    let mut worst = 0.0f32;
    for (i, (&r, &a)) in reference.iter().zip(actual).enumerate() {
        if !r.is_finite() {
            if !(r.is_nan() && a.is_nan() || r == a) {
                return Err((i, String::new()));
            }
            continue;
        }
        let diff = (r - a).abs();
        let scale = r.abs().max(rms).max(f32::MIN_POSITIVE);
        // A NaN where a number belongs fails too: it is not `Less` or `Equal` to anything.
        if !matches!(
            diff.partial_cmp(&(rtol * scale)),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ) {
            return Err((i, format!(" (|diff| {diff:.3e} > {rtol:e} × {scale:.3e})")));
        }
        worst = worst.max(diff / scale);
    }
    Ok(Agreement { worst })
}

fn read_f32(t: &Tensor) -> Result<Vec<f32>, String> {
    t.to_vec_f32()
        .map_err(|e| format!("reading the result back: {e}"))
}

fn read_i32(t: &Tensor) -> Result<Vec<i32>, String> {
    t.to_vec_i32()
        .map_err(|e| format!("reading the result back: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_results_agree_exactly() {
        assert_eq!(
            within(&[1.0, -2.0, f32::NAN], &[1.0, -2.0, f32::NAN], 0.0),
            Ok(Agreement { worst: 0.0 })
        );
    }

    #[test]
    fn a_difference_past_the_tolerance_names_the_element() {
        let reference = [1.0, 2.0, 3.0, 4.0];
        let mut actual = reference;
        actual[2] += 1e-3;
        let (i, why) = within(&reference, &actual, 1e-5).unwrap_err();
        assert_eq!(i, 2);
        assert!(why.contains("|diff|"), "{why}");
        // Within a looser tolerance it passes, and the worst difference is reported.
        let worst = within(&reference, &actual, 1e-3).unwrap().worst;
        assert!(worst > 1e-4 && worst <= 1e-3, "{worst}");
    }

    #[test]
    fn nan_and_infinities_must_match() {
        assert!(
            within(&[1.0], &[f32::NAN], 1.0).is_err(),
            "NaN for a number"
        );
        assert!(
            within(&[f32::NAN], &[1.0], 1.0).is_err(),
            "a number for NaN"
        );
        assert!(within(&[f32::INFINITY], &[f32::NEG_INFINITY], 1.0).is_err());
        assert!(within(&[f32::INFINITY, 1.0], &[f32::INFINITY, 1.0], 0.0).is_ok());
    }

    #[test]
    fn small_elements_are_judged_at_the_results_scale() {
        // 1e-9 off an element near zero is nothing next to the result's RMS of ~1.
        assert!(within(&[1.0, -1.0, 1e-12], &[1.0, -1.0, 1e-9], 1e-6).is_ok());
    }

    #[test]
    fn tensors_differing_in_shape_dtype_or_values_are_told_apart() {
        let a = Tensor::from_vec_f32(vec![1.0, 2.0], [2], Device::Cpu).unwrap();
        let b = Tensor::from_vec_f32(vec![1.0, 2.0], [1, 2], Device::Cpu).unwrap();
        assert!(
            compare(&a, &b, Device::Cpu, 0.0)
                .unwrap_err()
                .contains("shape")
        );
        let n = Tensor::from_vec_i32(vec![1, 2], [2], Device::Cpu).unwrap();
        assert!(
            compare(&a, &n, Device::Cpu, 0.0)
                .unwrap_err()
                .contains("dtype")
        );
        let m = Tensor::from_vec_i32(vec![1, 3], [2], Device::Cpu).unwrap();
        assert!(
            compare(&n, &m, Device::Cpu, 0.0)
                .unwrap_err()
                .contains("element 1")
        );
        assert_eq!(
            compare(&a, &a, Device::Cpu, 0.0),
            Ok(Agreement { worst: 0.0 })
        );
    }
}
