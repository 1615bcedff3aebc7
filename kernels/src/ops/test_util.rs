use crate::{Device, Tensor};

pub(crate) fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec_f32(data.to_vec(), shape, Device::Cpu).unwrap()
}

pub(crate) fn ids(data: &[i32], shape: &[usize]) -> Tensor {
    Tensor::from_vec_i32(data.to_vec(), shape, Device::Cpu).unwrap()
}

#[track_caller]
pub(crate) fn assert_close(actual: &Tensor, expected: &[f32], tol: f32) {
    let got = actual.to_vec_f32().unwrap();
    assert_eq!(got.len(), expected.len(), "length of {actual:?}");
    for (i, (a, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()) || (a.is_nan() && e.is_nan()),
            "element {i}: got {a}, expected {e}"
        );
    }
}
