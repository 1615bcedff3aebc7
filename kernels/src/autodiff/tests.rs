use super::Tape;
use crate::{Device, Error, Tensor, UnaryOp};

fn t(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec_f32(values.to_vec(), shape, Device::Cpu).unwrap()
}

/// Deterministic values in about [-1.5, 1.5], away from 0 by at least 0.1.
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = ((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 1000;
            let v = h as f32 / 1000.0 * 2.8 - 1.4;
            if v.abs() < 0.1 { v + 0.3 } else { v }
        })
        .collect()
}

fn sum_all(x: &Tensor) -> Tensor {
    let mut x = x.clone();
    while x.rank() > 0 && !(x.rank() == 1 && x.dims()[0] == 1) {
        x = x.sum(0, false).unwrap();
        if x.rank() == 0 {
            break;
        }
    }
    x.reshape([1usize]).unwrap()
}

/// Checks the tape's gradient of `f` (a scalar `[1]` of its inputs) against central differences.
fn check(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor, tol: f32) {
    let tape = Tape::new();
    let watched: Vec<Tensor> = inputs.iter().map(|x| tape.watch(x).unwrap()).collect();
    let loss = f(&watched);
    assert!(loss.is_tracked(), "the loss must be tracked");
    let one = t(&[1.0], &[1]);
    let wrt: Vec<&Tensor> = watched.iter().collect();
    let grads = tape.backward(&[(&loss, &one)], &wrt).unwrap();
    let eps = 1e-2f32;
    for (k, x) in inputs.iter().enumerate() {
        let base = x.to_vec_f32().unwrap();
        let got = grads[k].to_vec_f32().unwrap();
        assert_eq!(grads[k].dims(), x.dims(), "input {k}'s gradient shape");
        for i in 0..base.len() {
            let at = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                let mut args = inputs.to_vec();
                args[k] = t(&v, x.dims());
                f(&args).to_vec_f32().unwrap()[0]
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let diff = (numeric - got[i]).abs();
            assert!(
                diff <= tol * (1.0 + numeric.abs()),
                "input {k}[{i}]: tape {} vs finite differences {numeric}",
                got[i]
            );
        }
    }
}

#[test]
fn a_small_network_matches_finite_differences() {
    let x = t(&values(12, 1), &[3, 4]);
    let w = t(&values(20, 2), &[4, 5]);
    let b = t(&values(5, 3), &[5]);
    check(
        &[x, w, b],
        |a| {
            let h = a[0].matmul(&a[1]).unwrap().add(&a[2]).unwrap();
            let h = h
                .unary(UnaryOp::GeluTanh)
                .unwrap()
                .unary(UnaryOp::Tanh)
                .unwrap();
            sum_all(&h.mul(&h).unwrap().mean(1, false).unwrap())
        },
        2e-2,
    );
}

#[test]
fn every_unary_op_matches_finite_differences() {
    let positive: Vec<f32> = values(6, 4).iter().map(|v| v.abs() + 0.5).collect();
    let x = t(&values(6, 4), &[2, 3]);
    let p = t(&positive, &[2, 3]);
    for op in [
        UnaryOp::Relu,
        UnaryOp::GeluTanh,
        UnaryOp::Exp,
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::GeluErf,
        UnaryOp::Erf,
    ] {
        check(
            std::slice::from_ref(&x),
            |a| sum_all(&a[0].unary(op).unwrap()),
            2e-2,
        );
    }
    for op in [UnaryOp::Log, UnaryOp::Sqrt] {
        check(
            std::slice::from_ref(&p),
            |a| sum_all(&a[0].unary(op).unwrap()),
            2e-2,
        );
    }
}

#[test]
fn binary_ops_and_broadcasting_match_finite_differences() {
    let a = t(&values(6, 5), &[2, 3]);
    let b = t(&values(3, 6), &[3]);
    let c = t(&values(2, 7), &[2, 1]);
    let weight = t(&values(6, 8), &[2, 3]);
    check(
        &[a.clone(), b.clone(), c.clone()],
        |x| {
            let s = x[0].sub(&x[1]).unwrap().mul(&x[2]).unwrap();
            let q = s
                .div(&x[1].mul(&x[1]).unwrap().affine(1.0, 1.0).unwrap())
                .unwrap();
            sum_all(
                &q.maximum(&x[2])
                    .unwrap()
                    .minimum(&x[0])
                    .unwrap()
                    .mul(&weight)
                    .unwrap(),
            )
        },
        2e-2,
    );
}

#[test]
fn matmul_with_every_transpose_and_batch_broadcasting() {
    let a = t(&values(24, 9), &[2, 3, 4]);
    let b = t(&values(20, 10), &[4, 5]);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta {
            a.transpose(-1, -2).unwrap()
        } else {
            a.clone()
        };
        let b = if tb {
            b.transpose(0, 1).unwrap()
        } else {
            b.clone()
        };
        check(
            &[a, b],
            |x| {
                let y = x[0].matmul_t(&x[1], ta, tb).unwrap();
                sum_all(&y.mul(&y).unwrap().affine(0.1, 0.0).unwrap())
            },
            2e-2,
        );
    }
}

#[test]
fn layout_and_reductions_match_finite_differences() {
    let x = t(&values(24, 11), &[2, 3, 4]);
    let w = t(&values(24, 12), &[4, 2, 3]);
    check(
        &[x],
        |a| {
            let y = a[0].permute(&[2, 0, 1]).unwrap().mul(&w).unwrap();
            let y = y.reshape([8usize, 3]).unwrap().mean(0, true).unwrap();
            sum_all(&y.mul(&y).unwrap().sum(1, false).unwrap())
        },
        2e-2,
    );
}

#[test]
fn kinks_and_ties_follow_pytorch() {
    let tape = Tape::new();
    let x = tape.watch(&t(&[-1.0, 0.0, 2.0], &[3])).unwrap();
    let relu = sum_all(&x.relu().unwrap());
    let abs = sum_all(&x.abs().unwrap());
    let tie = sum_all(&x.maximum(&t(&[0.0, 0.0, 0.0], &[3])).unwrap());
    let one = t(&[1.0], &[1]);
    let total = relu.add(&abs).unwrap().add(&tie).unwrap();
    let g = tape.backward(&[(&total, &one)], &[&x]).unwrap();
    // relu′: 0, 0, 1; abs′: −1, 0, 1; maximum with 0: 0, ½ (a tie), 1.
    assert_eq!(g[0].to_vec_f32().unwrap(), vec![-1.0, 0.5, 3.0]);
}

#[test]
fn gradients_reach_intermediates_and_unreached_inputs_get_zeros() {
    let tape = Tape::new();
    let x = tape.watch(&t(&[1.0, 2.0], &[2])).unwrap();
    let unused = tape.watch(&t(&[5.0, 5.0, 5.0], &[3])).unwrap();
    let h = x.affine(3.0, 0.0).unwrap();
    let y = sum_all(&h.mul(&h).unwrap());
    let one = t(&[1.0], &[1]);
    let g = tape
        .backward(&[(&y, &one)], &[&h, &x, &unused, &x])
        .unwrap();
    assert_eq!(g[0].to_vec_f32().unwrap(), vec![6.0, 12.0], "dy/dh = 2h");
    assert_eq!(
        g[1].to_vec_f32().unwrap(),
        vec![18.0, 36.0],
        "dy/dx = 3 · 2h"
    );
    assert_eq!(g[2].to_vec_f32().unwrap(), vec![0.0; 3]);
    assert_eq!(g[3].to_vec_f32().unwrap(), g[1].to_vec_f32().unwrap());
    // Consumed: a second sweep is refused.
    assert!(tape.backward(&[(&y, &one)], &[&x]).is_err());
}

#[test]
fn untracked_results_from_tracked_inputs_are_refused_by_name() {
    let tape = Tape::new();
    let x = tape.watch(&t(&[1.0, 2.0, 3.0], &[1, 3])).unwrap();
    let mask = t(&[1.0, 0.0, 1.0], &[1, 3]);
    for (op, result) in [
        ("argmax", x.argmax(-1, false).map(|_| ())),
        (
            "binary",
            x.binary(crate::BinaryOp::Greater, &x.detach()).map(|_| ()),
        ),
        (
            "scatter_outer",
            Tensor::scatter_outer(
                &x,
                &Tensor::from_vec_i32(vec![0, 1, 0], [1, 3], Device::Cpu).unwrap(),
                &t(&[1.0, 2.0], &[1, 2]),
                2,
            )
            .map(|_| ()),
        ),
        ("where", x.where_(&mask, &mask).map(|_| ())),
        ("to_dtype", x.to_dtype(crate::DType::I32).map(|_| ())),
    ] {
        match result {
            Err(Error::NotDifferentiable { op: named, .. }) => assert_eq!(named, op),
            other => panic!("{op}: expected NotDifferentiable, got {other:?}"),
        }
    }
    // The same ops on detached values work as ever.
    assert!(x.detach().argmax(-1, false).is_ok());
    // Operands from two tapes do not mix.
    let other = Tape::new().watch(&t(&[1.0, 1.0, 1.0], &[1, 3])).unwrap();
    assert!(x.add(&other).is_err());
}

#[test]
fn softmax_and_layer_norm_match_finite_differences() {
    let x = t(&values(15, 13), &[3, 5]);
    let w = t(&values(5, 14), &[5]);
    let b = t(&values(5, 15), &[5]);
    let mix = t(&values(15, 16), &[3, 5]);
    for axis in [0, -1] {
        check(
            std::slice::from_ref(&x),
            |a| sum_all(&a[0].softmax(axis).unwrap().mul(&mix).unwrap()),
            2e-2,
        );
        check(
            std::slice::from_ref(&x),
            |a| sum_all(&a[0].log_softmax(axis).unwrap().mul(&mix).unwrap()),
            2e-2,
        );
    }
    check(
        &[x, w, b],
        |a| {
            let y = a[0].layer_norm(&a[1], &a[2], 1e-5).unwrap();
            sum_all(&y.mul(&mix).unwrap())
        },
        2e-2,
    );
}

/// Rows longer than the SIMD lanes (with a ragged tail), so the fused backward kernels' vector loops
/// are what is checked; cross-entropy with a row left out.
#[test]
fn fused_row_vjps_match_finite_differences_on_long_rows() {
    let x = t(&values(2 * 37, 41), &[2, 37]);
    let w = t(&values(37, 42), &[37]);
    let b = t(&values(37, 43), &[37]);
    let mix = t(&values(2 * 37, 44), &[2, 37]);
    for log in [false, true] {
        check(
            std::slice::from_ref(&x),
            |a| {
                let y = if log {
                    a[0].log_softmax(-1)
                } else {
                    a[0].softmax(-1)
                }
                .unwrap();
                sum_all(&y.mul(&mix).unwrap())
            },
            2e-2,
        );
    }
    check(
        &[x.clone(), w, b],
        |a| {
            sum_all(
                &a[0]
                    .layer_norm(&a[1], &a[2], 1e-5)
                    .unwrap()
                    .mul(&mix)
                    .unwrap(),
            )
        },
        2e-2,
    );
    let labels = Tensor::from_vec_i32(vec![30, 5, -100], [3], Device::Cpu).unwrap();
    let logits = t(&values(3 * 37, 45), &[3, 37]);
    let weights = t(&[0.5, 2.0, 3.0], &[3]);
    check(
        std::slice::from_ref(&logits),
        |a| {
            sum_all(
                &a[0]
                    .cross_entropy(&labels, -100)
                    .unwrap()
                    .mul(&weights)
                    .unwrap(),
            )
        },
        2e-2,
    );
    // The ignored row gets no gradient at all.
    let tape = Tape::new();
    let watched = tape.watch(&logits).unwrap();
    let loss = sum_all(&watched.cross_entropy(&labels, -100).unwrap());
    let g = tape
        .backward(&[(&loss, &t(&[1.0], &[1]))], &[&watched])
        .unwrap();
    assert!(
        g[0].to_vec_f32().unwrap()[2 * 37..]
            .iter()
            .all(|&v| v == 0.0)
    );
}

#[test]
fn embedding_slice_concat_where_and_clamp_match_finite_differences() {
    let table = t(&values(12, 17), &[4, 3]);
    let ids = Tensor::from_vec_i32(vec![2, 0, 2, 3, 2, 1], [2, 3], Device::Cpu).unwrap();
    let mix = t(&values(18, 18), &[2, 3, 3]);
    check(
        std::slice::from_ref(&table),
        |a| sum_all(&a[0].embedding(&ids).unwrap().mul(&mix).unwrap()),
        2e-2,
    );
    let a = t(&values(8, 19), &[2, 4]);
    let b = t(&values(6, 20), &[2, 3]);
    let mask = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0], &[2, 4]);
    let w = t(&values(14, 21), &[2, 7]);
    check(
        &[a, b],
        |x| {
            let c = Tensor::concat(&[&x[0], &x[1]], 1).unwrap().mul(&w).unwrap();
            let s = c.slice(1, 1, 5).unwrap().unary(UnaryOp::Tanh).unwrap();
            let picked = mask.where_(&s, &x[0].clamp(-0.5, 0.7).unwrap()).unwrap();
            sum_all(&picked.mul(&picked).unwrap())
        },
        2e-2,
    );
}

#[test]
fn linear_and_linear_t_match_finite_differences() {
    let x = t(&values(24, 22), &[2, 3, 4]);
    let b = t(&values(5, 24), &[5]);
    // `linear` takes the weight [in, out]; `linear_t` [out, in], as nn.Linear keeps it.
    type Layer = fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor;
    let layers: [(&[usize], Layer); 2] = [
        (&[4, 5], |x, w, b| x.linear(w, b).unwrap()),
        (&[5, 4], |x, w, b| x.linear_t(w, b).unwrap()),
    ];
    for (shape, layer) in layers {
        let w = t(&values(20, 23), shape);
        check(
            &[x.clone(), w.clone(), b.clone()],
            |a| {
                let y = layer(&a[0], &a[1], Some(&a[2]));
                sum_all(&y.mul(&y).unwrap().affine(0.1, 0.0).unwrap())
            },
            2e-2,
        );
        check(
            &[x.clone(), w],
            |a| sum_all(&layer(&a[0], &a[1], None).unary(UnaryOp::Tanh).unwrap()),
            2e-2,
        );
    }
}

#[test]
fn attention_pattern_and_values_match_finite_differences() {
    // [batch, pos, head, d_head], with more keys than queries for the offset causal mask.
    let q = t(&values(2 * 3 * 2 * 5, 31), &[2, 3, 2, 5]);
    let k = t(&values(2 * 4 * 2 * 5, 32), &[2, 4, 2, 5]);
    let v = t(&values(2 * 4 * 2 * 5, 33), &[2, 4, 2, 5]);
    let mix = t(&values(2 * 3 * 2 * 5, 34), &[2, 3, 2, 5]);
    for causal in [false, true] {
        let f = |a: &[Tensor]| {
            let p = a[0].attention_pattern(&a[1], 0.7, causal).unwrap();
            sum_all(&p.attention_values(&a[2]).unwrap().mul(&mix).unwrap())
        };
        check(&[q.clone(), k.clone(), v.clone()], f, 2e-2);
        // Each input's gradient alone: the VJP keeps only what that one needs.
        for alone in 0..3 {
            let tape = Tape::new();
            let args: Vec<Tensor> = [&q, &k, &v]
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    if i == alone {
                        tape.watch(x).unwrap()
                    } else {
                        (*x).clone()
                    }
                })
                .collect();
            let loss = f(&args);
            let one = t(&[1.0], &[1]);
            let g = tape.backward(&[(&loss, &one)], &[&args[alone]]).unwrap();
            let all = {
                let tape = Tape::new();
                let w: Vec<Tensor> = [&q, &k, &v]
                    .iter()
                    .map(|x| tape.watch(x).unwrap())
                    .collect();
                let loss = f(&w);
                tape.backward(&[(&loss, &one)], &[&w[alone]]).unwrap()
            };
            assert_eq!(
                g[0].to_vec_f32().unwrap(),
                all[0].to_vec_f32().unwrap(),
                "input {alone} alone (causal {causal})"
            );
        }
    }
}

#[test]
fn causal_masks_give_masked_entries_no_gradient_and_no_nan() {
    let scores = t(&values(2 * 3 * 3, 35), &[2, 3, 3]);
    let mix = t(&values(2 * 3 * 3, 36), &[2, 3, 3]);
    check(
        std::slice::from_ref(&scores),
        |a| {
            let p = a[0]
                .causal_mask(f32::NEG_INFINITY)
                .unwrap()
                .softmax(-1)
                .unwrap();
            sum_all(&p.mul(&mix).unwrap())
        },
        2e-2,
    );
    let tape = Tape::new();
    let x = tape.watch(&scores).unwrap();
    let p = x
        .causal_mask(f32::NEG_INFINITY)
        .unwrap()
        .softmax(-1)
        .unwrap();
    let loss = sum_all(&p.mul(&mix).unwrap());
    let g = tape.backward(&[(&loss, &t(&[1.0], &[1]))], &[&x]).unwrap();
    let g = g[0].to_vec_f32().unwrap();
    for (i, v) in g.iter().enumerate() {
        let (query, key) = ((i / 3) % 3, i % 3);
        assert!(v.is_finite(), "entry {i} is {v}");
        if key > query {
            assert_eq!(*v, 0.0, "masked entry {i}");
        }
    }
}

#[test]
fn picking_ops_match_finite_differences() {
    let x = t(&values(24, 37), &[2, 3, 4]);
    let mix = t(&values(24, 38), &[2, 3, 4]);
    let picks = Tensor::from_vec_i32(vec![2, 0, 2, 1, 2], [5], Device::Cpu).unwrap();
    check(
        std::slice::from_ref(&x),
        |a| {
            let y = a[0].index_select(1, &picks).unwrap();
            sum_all(&y.mul(&y).unwrap())
        },
        2e-2,
    );
    for axis in [0, 1, 2] {
        for keepdim in [false, true] {
            check(
                std::slice::from_ref(&x),
                |a| {
                    let m = a[0].max(axis, keepdim).unwrap();
                    let n = a[0].reduce(crate::ReduceOp::Min, axis, keepdim).unwrap();
                    let l = a[0].l2_norm(axis, keepdim).unwrap();
                    sum_all(
                        &m.mul(&m)
                            .unwrap()
                            .add(&n)
                            .unwrap()
                            .add(&l.mul(&l).unwrap())
                            .unwrap(),
                    )
                },
                2e-2,
            );
        }
    }
    check(
        std::slice::from_ref(&x),
        |a| {
            let (v, _) = a[0].top_k(3).unwrap();
            let kept = a[0].keep_top_k(2).unwrap();
            sum_all(&v.mul(&v).unwrap())
                .add(&sum_all(&kept.mul(&mix).unwrap()))
                .unwrap()
        },
        2e-2,
    );
}

#[test]
fn picked_gradients_go_to_the_index_the_forward_chose() {
    let tape = Tape::new();
    let x = tape
        .watch(&t(&[3.0, 1.0, 3.0, 0.0, 2.0, 2.0], &[2, 3]))
        .unwrap();
    let one = t(&[1.0], &[1]);
    // max: the first of the tied 3s; top_k(1): the same; keep_top_k(1) of [0, 2, 2]: the first 2.
    let m = sum_all(&x.max(-1, false).unwrap());
    let (top, _) = x.top_k(1).unwrap();
    let kept = sum_all(&x.keep_top_k(1).unwrap());
    let zero_norm = sum_all(&x.mul(&t(&[0.0], &[1])).unwrap().l2_norm(-1, false).unwrap());
    let loss = m
        .add(&sum_all(&top).affine(10.0, 0.0).unwrap())
        .unwrap()
        .add(&kept.affine(100.0, 0.0).unwrap())
        .unwrap()
        .add(&zero_norm)
        .unwrap();
    let g = tape.backward(&[(&loss, &one)], &[&x]).unwrap();
    assert_eq!(
        g[0].to_vec_f32().unwrap(),
        vec![111.0, 0.0, 0.0, 0.0, 111.0, 0.0]
    );
}

#[test]
fn a_table_used_twice_gets_both_shares() {
    // Tied embedding and unembedding, as GPT-2: logits = table[ids] · tableᵀ.
    let table = t(&values(12, 41), &[4, 3]);
    let ids = Tensor::from_vec_i32(vec![2, 0, 2, 3, 1, 1], [2, 3], Device::Cpu).unwrap();
    let mix = t(&values(24, 42), &[2, 3, 4]);
    check(
        std::slice::from_ref(&table),
        |a| {
            let h = a[0].embedding(&ids).unwrap().unary(UnaryOp::Tanh).unwrap();
            sum_all(&h.matmul_t(&a[0], false, true).unwrap().mul(&mix).unwrap())
        },
        2e-2,
    );
}
