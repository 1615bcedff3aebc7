//! Zero-sized dimensions are valid everywhere and give PyTorch's results; shapes too large to count
//! are refused before anything is allocated; a guard's budget is charged before an op allocates.

use super::test_util::{assert_close, ids, t};
use crate::guard::{StopSignal, guarded};
use crate::{Device, Error, Tensor};

fn empty(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, Device::Cpu).unwrap()
}

#[test]
fn an_empty_contraction_gives_zeros_that_later_ops_can_read() {
    // [4, 0] · [0, 3]: 12 zeros, with a buffer of 12 (it used to hold none).
    let x = empty(&[4, 0]);
    let y = x.linear(&empty(&[0, 3]), None).unwrap();
    assert_eq!(y.dims(), &[4, 3]);
    assert_close(&y, &[0.0; 12], 0.0);
    let bias = t(&[1.0, 2.0, 3.0], &[3]);
    let with_bias = x.linear(&empty(&[0, 3]), Some(&bias)).unwrap();
    assert_close(&with_bias, &[1.0, 2.0, 3.0].repeat(4), 0.0);
    let again = y.matmul(&t(&[1.0; 6], &[3, 2])).unwrap();
    assert_close(&again, &[0.0; 8], 0.0);
    let mm = empty(&[2, 5, 0]).matmul(&empty(&[0, 7])).unwrap();
    assert_eq!(mm.dims(), &[2, 5, 7]);
    assert_close(&mm, &[0.0; 70], 0.0);
}

#[test]
fn linear_layers_with_no_outputs_or_no_rows() {
    let x = t(&[1.0; 12], &[4, 3]);
    assert_eq!(x.linear(&empty(&[3, 0]), None).unwrap().dims(), &[4, 0]);
    let rows = empty(&[0, 3]).linear(&t(&[1.0; 6], &[3, 2]), None).unwrap();
    assert_eq!(rows.dims(), &[0, 2]);
}

#[test]
fn reductions_over_an_empty_axis_follow_pytorch() {
    let x = empty(&[3, 0]);
    assert_close(&x.sum(1, false).unwrap(), &[0.0; 3], 0.0);
    assert_close(&x.l2_norm(1, false).unwrap(), &[0.0; 3], 0.0);
    assert_close(&x.mean(1, false).unwrap(), &[f32::NAN; 3], 0.0);
    for e in [x.max(1, false), x.reduce(crate::ReduceOp::Min, 1, true)] {
        assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
    }
    assert!(x.argmax(1, false).is_err());
    // Over the other axis the result is itself empty, and fine.
    assert_eq!(x.max(0, false).unwrap().dims(), &[0]);
}

#[test]
fn row_ops_on_empty_rows_give_empty_results() {
    let x = empty(&[2, 0]);
    assert_eq!(x.softmax(-1).unwrap().dims(), &[2, 0]);
    assert_eq!(x.log_softmax(0).unwrap().dims(), &[2, 0]);
    assert_eq!(
        x.layer_norm(&empty(&[0]), &empty(&[0]), 1e-5)
            .unwrap()
            .dims(),
        &[2, 0]
    );
    assert_eq!(x.keep_top_k(0).unwrap().dims(), &[2, 0]);
    let (v, i) = t(&[1.0, 2.0], &[1, 2]).top_k(0).unwrap();
    assert_eq!((v.dims(), i.dims()), (&[1, 0][..], &[1, 0][..]));
    let table = empty(&[5, 0]);
    assert_eq!(
        table.embedding(&ids(&[1, 4], &[2])).unwrap().dims(),
        &[2, 0]
    );
    let q = empty(&[1, 3, 2, 0]);
    let pattern = q.attention_pattern(&q, 1.0, true).unwrap();
    // Scores over empty heads are all 0: each query spreads evenly over the keys it may see.
    let third = 1.0 / 3.0;
    let head = [1.0, 0.0, 0.0, 0.5, 0.5, 0.0, third, third, third];
    assert_close(&pattern, &head.repeat(2), 1e-6);
    let z = pattern.attention_values(&q).unwrap();
    assert_eq!(z.dims(), &[1, 3, 2, 0]);
}

#[test]
fn sparse_products_over_no_codes_are_zeros() {
    let codes = empty(&[2, 0]);
    let idx = ids(&[], &[2, 0]);
    let table = t(&[1.0; 6], &[3, 2]);
    let out = Tensor::sparse_matmul(&codes, &idx, &table).unwrap();
    assert_close(&out, &[0.0; 4], 0.0);
    let grad = Tensor::scatter_outer(&codes, &idx, &t(&[1.0; 4], &[2, 2]), 3).unwrap();
    assert_close(&grad, &[0.0; 6], 0.0);
}

#[test]
fn shapes_that_cannot_be_counted_are_refused_before_allocating() {
    let huge = [u32::MAX as usize; 4];
    assert!(matches!(
        Tensor::zeros(huge, Device::Cpu),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        Tensor::randn([1 << 30, 1 << 30], 0.0, 1.0, 0, Device::Cpu),
        Err(Error::TooLarge { .. })
    ));
    // 2^31 references to a [2^31 - 1] tensor would overflow the joined length.
    let x = empty(&[0, 1]);
    let reshaped = x.reshape([0, i32::MAX as usize]).unwrap();
    let parts = vec![&reshaped; 4];
    let joined = Tensor::concat(&parts, 1);
    assert!(matches!(joined, Err(Error::TooLarge { .. })), "{joined:?}");
    assert!(
        x.reshape([0, 1usize << 40]).is_err(),
        "a dimension past the limit"
    );
}

#[test]
fn a_guard_refuses_outputs_over_its_budget_before_computing_them() {
    let a = t(&[1.0; 64], &[8, 8]);
    let (r, reserved) = guarded(Some(255), StopSignal::never(), || a.matmul(&a));
    assert!(
        matches!(
            r,
            Err(Error::OverBudget {
                bytes: 256,
                remaining: 255,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(reserved, 0);
    let (r, reserved) = guarded(Some(256), StopSignal::never(), || a.matmul(&a));
    assert!(r.is_ok());
    assert_eq!(reserved, 256);
    // A broadcast that would blow up is refused, not allocated.
    let (col, row) = (t(&[0.0; 4096], &[4096, 1]), t(&[0.0; 4096], &[1, 4096]));
    let (r, _) = guarded(Some(1 << 20), StopSignal::never(), || col.add(&row));
    assert!(matches!(r, Err(Error::OverBudget { .. })), "{r:?}");
}

#[test]
fn long_ops_stop_when_the_guard_says_so() {
    let stopped = StopSignal::new(Some(std::time::Instant::now()), None);
    let a = t(&[1.0; 64], &[8, 8]);
    // The stop is checked before the first column is factorised.
    let eye = Tensor::full([64, 64], 1.0, Device::Cpu).unwrap();
    for (name, r) in [
        (
            "solve_spd",
            guarded(None, stopped.clone(), || Tensor::solve_spd(&eye, &eye)).0,
        ),
        ("matmul", guarded(None, stopped.clone(), || a.matmul(&a)).0),
        (
            "linear",
            guarded(None, stopped.clone(), || a.linear(&a, None)).0,
        ),
    ] {
        assert!(matches!(r, Err(Error::Interrupted { .. })), "{name}: {r:?}");
    }
    let (codes, idx) = (t(&[1.0; 4], &[2, 2]), ids(&[0, 1, 1, 0], &[2, 2]));
    let sparse = [
        guarded(None, stopped.clone(), || {
            Tensor::sparse_matmul(&codes, &idx, &a)
        })
        .0,
        guarded(None, stopped.clone(), || {
            Tensor::gather_dot(&a.slice(0, 0, 2).unwrap(), &idx, &a)
        })
        .0,
        guarded(None, stopped.clone(), || {
            Tensor::scatter_outer(&codes, &idx, &a.slice(0, 0, 2).unwrap(), 8)
        })
        .0,
    ];
    for r in sparse {
        assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");
    }
    let q = Tensor::randn([1, 4, 2, 3], 0.0, 1.0, 0, Device::Cpu).unwrap();
    let r = guarded(None, stopped, || q.attention_pattern(&q, 1.0, true)).0;
    assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");
}
