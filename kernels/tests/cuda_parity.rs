//! CPU-vs-CUDA parity: every engine op runs on both backends with the same inputs — shapes that are not
//! multiples of the kernels' tiles, tiny and large — and the results must agree (f32: 1e-5 relative to
//! the larger of the element and the result's RMS, so cancellation in long sums is judged fairly; exact
//! for integer results). Without a usable GPU each test says it was skipped — unless
//! `LOUPE_REQUIRE_GPU=1`, which makes a missing GPU a failure (`scripts/gpu-tests.sh` sets it).

use loupe_kernels::{
    AdamConfig, BinaryOp, DType, Device, Error, MatmulPrecision, ReduceOp, Tensor, UnaryOp, cuda,
};

const RTOL: f32 = 1e-5;

/// CUDA device 0, or `None` after saying why the test is skipped.
fn gpu() -> Option<Device> {
    match cuda::unavailable_reason(0) {
        None => Some(Device::Cuda(0)),
        Some(why) if std::env::var_os("LOUPE_REQUIRE_GPU").is_some_and(|v| v == "1") => {
            panic!("LOUPE_REQUIRE_GPU=1 but no usable CUDA device: {why}")
        }
        Some(why) => {
            eprintln!("skipped: no usable CUDA device ({why})");
            None
        }
    }
}

/// A portable pseudo-random f32 tensor on the CPU.
fn randn(dims: &[usize], seed: u64) -> Tensor {
    Tensor::randn(dims, 0.0, 1.0, seed, Device::Cpu).unwrap()
}

fn uniform(dims: &[usize], low: f32, high: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(dims, low, high, seed, Device::Cpu).unwrap()
}

fn ids(values: Vec<i32>, dims: &[usize]) -> Tensor {
    Tensor::from_vec_i32(values, dims, Device::Cpu).unwrap()
}

fn on(device: Device, t: &Tensor) -> Tensor {
    t.to_device(device).unwrap()
}

/// Compares a CUDA result with the CPU's: same shape, dtype and device, values within `rtol`.
#[track_caller]
fn assert_parity(what: &str, cpu: &Tensor, gpu: &Tensor, rtol: f32) {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes");
    assert_eq!(cpu.dtype(), gpu.dtype(), "{what}: dtypes");
    assert!(
        matches!(gpu.device(), Device::Cuda(_)),
        "{what}: the result should stay on the GPU, got {}",
        gpu.device()
    );
    if cpu.dtype() == DType::I32 {
        assert_eq!(
            cpu.to_vec_i32().unwrap(),
            gpu.to_vec_i32().unwrap(),
            "{what}"
        );
        return;
    }
    let (c, g) = (cpu.to_vec_f32().unwrap(), gpu.to_vec_f32().unwrap());
    let finite: Vec<f32> = c.iter().copied().filter(|v| v.is_finite()).collect();
    let rms = (finite.iter().map(|v| v * v).sum::<f32>() / finite.len().max(1) as f32).sqrt();
    for (i, (&cv, &gv)) in c.iter().zip(&g).enumerate() {
        if cv.is_nan() || !cv.is_finite() {
            assert!(
                cv.is_nan() && gv.is_nan() || cv == gv,
                "{what}: element {i} is {gv} on the GPU, {cv} on the CPU"
            );
            continue;
        }
        let scale = cv.abs().max(rms).max(f32::MIN_POSITIVE);
        assert!(
            (cv - gv).abs() <= rtol * scale,
            "{what}: element {i} is {gv} on the GPU, {cv} on the CPU (|diff| {} > {rtol} × {scale})",
            (cv - gv).abs()
        );
    }
}

/// Runs `f` on the CPU inputs and on their GPU copies and compares.
#[track_caller]
fn parity(what: &str, inputs: &[&Tensor], rtol: f32, f: impl Fn(&[Tensor]) -> Tensor) {
    let Some(device) = gpu_quiet() else { return };
    let cpu_inputs: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
    let gpu_inputs: Vec<Tensor> = inputs.iter().map(|t| on(device, t)).collect();
    assert_parity(what, &f(&cpu_inputs), &f(&gpu_inputs), rtol);
}

/// `gpu()` without the message: each test prints "skipped" once, up front.
fn gpu_quiet() -> Option<Device> {
    cuda::unavailable_reason(0)
        .is_none()
        .then_some(Device::Cuda(0))
}

const SHAPES: &[&[usize]] = &[&[1], &[1000], &[257, 33], &[3, 5, 7, 11]];

#[test]
fn unary_ops() {
    if gpu().is_none() {
        return;
    }
    let ops = [
        UnaryOp::Relu,
        UnaryOp::GeluTanh,
        UnaryOp::GeluErf,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
    ];
    for (s, dims) in SHAPES.iter().enumerate() {
        let signed = uniform(dims, -6.0, 6.0, s as u64);
        let positive = uniform(dims, 1e-3, 50.0, 100 + s as u64);
        for op in ops {
            let x = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt) {
                &positive
            } else {
                &signed
            };
            parity(&format!("{op:?} {dims:?}"), &[x], RTOL, |t| {
                t[0].unary(op).unwrap()
            });
        }
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    if gpu().is_none() {
        return;
    }
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Greater,
        BinaryOp::Less,
        BinaryOp::Equal,
    ];
    let pairs: &[(&[usize], &[usize])] = &[
        (&[1], &[1]),
        (&[257, 33], &[257, 33]),
        (&[257, 33], &[33]),
        (&[5, 1, 7], &[1, 4, 7]),
        (&[1], &[300, 257]),
        (&[2, 3, 1, 5, 1, 4, 3], &[3, 2, 1, 4, 1]),
    ];
    for (i, (a, b)) in pairs.iter().enumerate() {
        // Rounded to quarters, so equal values occur and Equal is exercised; b stays away from 0.
        let x = randn(a, i as u64).affine(4.0, 0.0).unwrap();
        let rounded = |t: &Tensor| {
            let v: Vec<f32> = t
                .to_vec_f32()
                .unwrap()
                .iter()
                .map(|v| v.round() / 4.0)
                .collect();
            Tensor::from_vec_f32(v, t.dims(), Device::Cpu).unwrap()
        };
        let x = rounded(&x);
        let y = rounded(
            &uniform(b, 1.0, 12.0, 50 + i as u64)
                .affine(4.0, 0.0)
                .unwrap(),
        );
        for op in ops {
            parity(&format!("{op:?} {a:?} {b:?}"), &[&x, &y], RTOL, |t| {
                t[0].binary(op, &t[1]).unwrap()
            });
        }
    }
}

#[test]
fn affine_clamp_where_mask_and_casts() {
    if gpu().is_none() {
        return;
    }
    let x = randn(&[37, 129], 1);
    parity("affine", &[&x], RTOL, |t| t[0].affine(1.5, -0.25).unwrap());
    parity("clamp", &[&x], 0.0, |t| t[0].clamp(-0.5, 0.75).unwrap());
    let cond = x
        .binary(BinaryOp::Greater, &Tensor::zeros([1], Device::Cpu).unwrap())
        .unwrap();
    let other = randn(&[129], 2);
    parity("where", &[&cond, &x, &other], 0.0, |t| {
        t[0].where_(&t[1], &t[2]).unwrap()
    });
    let scores = randn(&[2, 3, 5, 9], 3);
    parity("causal_mask", &[&scores], 0.0, |t| {
        t[0].causal_mask(-1e9).unwrap()
    });
    let wide = randn(&[1000], 4).affine(1e3, 0.0).unwrap();
    parity("f32 -> i32", &[&wide], 0.0, |t| {
        t[0].to_dtype(DType::I32).unwrap()
    });
    let ints = ids((-500..500).collect(), &[1000]);
    parity("i32 -> f32", &[&ints], 0.0, |t| {
        t[0].to_dtype(DType::F32).unwrap()
    });
}

#[test]
fn reductions_and_argmax_along_every_axis() {
    if gpu().is_none() {
        return;
    }
    let x = randn(&[7, 33, 129], 5);
    // Ties for argmax: whole rows of one value, and a repeated maximum.
    let mut tied = randn(&[4, 50], 6).to_vec_f32().unwrap();
    tied[..50].fill(1.0);
    tied[60] = 9.0;
    tied[70] = 9.0;
    let tied = Tensor::from_vec_f32(tied, [4, 50], Device::Cpu).unwrap();
    for axis in [0isize, 1, 2, -1] {
        for op in [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::L2Norm,
        ] {
            for keepdim in [false, true] {
                parity(&format!("{op:?} axis {axis}"), &[&x], RTOL, |t| {
                    t[0].reduce(op, axis, keepdim).unwrap()
                });
            }
        }
        parity(&format!("argmax axis {axis}"), &[&x], 0.0, |t| {
            t[0].argmax(axis, false).unwrap()
        });
    }
    for axis in [0isize, 1] {
        parity(&format!("argmax ties axis {axis}"), &[&tied], 0.0, |t| {
            t[0].argmax(axis, true).unwrap()
        });
    }
    // A long row: the vocabulary axis of logits.
    let logits = randn(&[3, 50_257], 7);
    parity("argmax over a vocabulary", &[&logits], 0.0, |t| {
        t[0].argmax(-1, false).unwrap()
    });
    parity("sum over a vocabulary", &[&logits], RTOL, |t| {
        t[0].sum(-1, false).unwrap()
    });
}

#[test]
fn softmax_log_softmax_and_layer_norm() {
    if gpu().is_none() {
        return;
    }
    let x = randn(&[3, 17, 50], 8).affine(3.0, 0.0).unwrap();
    for axis in [-1isize, 1, 0] {
        parity(&format!("softmax axis {axis}"), &[&x], RTOL, |t| {
            t[0].softmax(axis).unwrap()
        });
        parity(&format!("log_softmax axis {axis}"), &[&x], RTOL, |t| {
            t[0].log_softmax(axis).unwrap()
        });
    }
    let logits = randn(&[2, 50_257], 9).affine(5.0, 0.0).unwrap();
    parity("log_softmax over a vocabulary", &[&logits], RTOL, |t| {
        t[0].log_softmax(-1).unwrap()
    });
    for dims in [&[1usize, 1][..], &[3, 50, 768], &[5, 33]] {
        let d = *dims.last().unwrap();
        let (x, w, b) = (randn(dims, 10), randn(&[d], 11), randn(&[d], 12));
        parity(&format!("layer_norm {dims:?}"), &[&x, &w, &b], RTOL, |t| {
            t[0].layer_norm(&t[1], &t[2], 1e-5).unwrap()
        });
    }
}

#[test]
fn matmul_f32_every_transpose_and_odd_shapes() {
    if gpu().is_none() {
        return;
    }
    let sizes = [
        (1, 1, 1),
        (17, 19, 33),
        (64, 64, 64),
        (130, 40, 129),
        (257, 1000, 300),
    ];
    for (i, &(m, k, n)) in sizes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randn(&if ta { [k, m] } else { [m, k] }, 20 + i as u64);
            let b = randn(&if tb { [n, k] } else { [k, n] }, 40 + i as u64);
            parity(
                &format!("matmul {m}x{k}x{n} ta={ta} tb={tb}"),
                &[&a, &b],
                RTOL,
                |t| t[0].matmul_t(&t[1], ta, tb).unwrap(),
            );
        }
    }
}

#[test]
fn matmul_batched_broadcast_and_linear() {
    if gpu().is_none() {
        return;
    }
    let a = randn(&[2, 3, 17, 19], 60);
    let shared = randn(&[19, 23], 61);
    parity("batched · shared", &[&a, &shared], RTOL, |t| {
        t[0].matmul(&t[1]).unwrap()
    });
    let b = randn(&[2, 3, 19, 23], 62);
    parity("batched · batched", &[&a, &b], RTOL, |t| {
        t[0].matmul(&t[1]).unwrap()
    });
    // Batch axes [2, 1] against [1, 3]: offsets that do not step evenly.
    let left = randn(&[2, 1, 17, 19], 63);
    let right = randn(&[1, 3, 19, 23], 64);
    parity("uneven broadcast", &[&left, &right], RTOL, |t| {
        t[0].matmul(&t[1]).unwrap()
    });
    let (x, w, bias) = (
        randn(&[2, 9, 768], 65),
        randn(&[768, 301], 66),
        randn(&[301], 67),
    );
    parity("linear", &[&x, &w, &bias], RTOL, |t| {
        t[0].linear(&t[1], Some(&t[2])).unwrap()
    });
    parity("linear without bias", &[&x, &w], RTOL, |t| {
        t[0].linear(&t[1], None).unwrap()
    });
}

/// The tensor-core path against its CPU twin (operands rounded the same way; 16-bit products are exact
/// in f32, so only the summation order differs), and against f32 within bf16's precision.
#[test]
fn matmul_bf16_and_f16_on_tensor_cores() {
    if gpu().is_none() {
        return;
    }
    for (i, &(m, k, n)) in [(1, 1, 1), (17, 19, 33), (130, 40, 129), (1024, 1024, 1024)]
        .iter()
        .enumerate()
    {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randn(&if ta { [k, m] } else { [m, k] }, 70 + i as u64);
            let b = randn(&if tb { [n, k] } else { [k, n] }, 80 + i as u64);
            for precision in [MatmulPrecision::Bf16, MatmulPrecision::F16] {
                parity(
                    &format!("{precision:?} matmul {m}x{k}x{n} ta={ta} tb={tb}"),
                    &[&a, &b],
                    1e-4,
                    |t| {
                        t[0].matmul_with_precision(&t[1], ta, tb, precision)
                            .unwrap()
                    },
                );
            }
            // bf16 keeps 8 significant bits: ~2⁻⁸ relative per operand.
            parity(
                &format!("bf16 vs f32 {m}x{k}x{n}"),
                &[&a, &b],
                2e-2,
                |t| match t[0].device() {
                    Device::Cpu => t[0].matmul_t(&t[1], ta, tb).unwrap(),
                    _ => t[0]
                        .matmul_with_precision(&t[1], ta, tb, MatmulPrecision::Bf16)
                        .unwrap(),
                },
            );
        }
    }
}

#[test]
fn layout_ops_on_f32_and_i32() {
    if gpu().is_none() {
        return;
    }
    let x = randn(&[3, 5, 7, 11], 90);
    let n = ids((0..385).collect(), &[5, 7, 11]);
    parity("permute", &[&x], 0.0, |t| {
        t[0].permute(&[2, 0, 3, 1]).unwrap()
    });
    parity("permute i32", &[&n], 0.0, |t| {
        t[0].permute(&[1, 2, 0]).unwrap()
    });
    parity("transpose", &[&x], 0.0, |t| t[0].transpose(1, -1).unwrap());
    parity("reshape then permute", &[&x], 0.0, |t| {
        t[0].reshape([15, 77]).unwrap().transpose(0, 1).unwrap()
    });
    for axis in [0isize, 1, 3] {
        parity(&format!("slice axis {axis}"), &[&x], 0.0, |t| {
            t[0].slice(axis, 1, 3).unwrap()
        });
    }
    parity("slice i32", &[&n], 0.0, |t| t[0].slice(2, 4, 11).unwrap());
    let y = randn(&[3, 2, 7, 11], 91);
    parity("concat", &[&x, &y, &x], 0.0, |t| {
        Tensor::concat(&[&t[0], &t[1], &t[2]], 1).unwrap()
    });
    parity("concat i32", &[&n, &n], 0.0, |t| {
        Tensor::concat(&[&t[0], &t[1]], -1).unwrap()
    });
    let picks = ids(vec![4, 0, 4, 2], &[4]);
    parity("index_select", &[&x, &picks], 0.0, |t| {
        t[0].index_select(1, &t[1]).unwrap()
    });
    parity("index_select i32", &[&n, &picks], 0.0, |t| {
        t[0].index_select(0, &t[1]).unwrap()
    });
}

#[test]
fn embedding_and_top_k() {
    if gpu().is_none() {
        return;
    }
    let table = randn(&[1000, 65], 100);
    let tokens = ids(vec![0, 999, 5, 5, 123, 42], &[2, 3]);
    parity("embedding", &[&table, &tokens], 0.0, |t| {
        t[0].embedding(&t[1]).unwrap()
    });
    let x = randn(&[37, 1000], 101);
    // Ties: a row of equal values keeps the lowest indices.
    let mut tied = randn(&[3, 40], 102).to_vec_f32().unwrap();
    tied[40..80].fill(0.5);
    let tied = Tensor::from_vec_f32(tied, [3, 40], Device::Cpu).unwrap();
    for k in [1, 7, 32] {
        for (name, input) in [("random", &x), ("tied", &tied)] {
            parity(&format!("top_k values {name} k={k}"), &[input], 0.0, |t| {
                t[0].top_k(k).unwrap().0
            });
            parity(&format!("top_k indices {name} k={k}"), &[input], 0.0, |t| {
                t[0].top_k(k).unwrap().1
            });
            parity(&format!("keep_top_k {name} k={k}"), &[input], 0.0, |t| {
                t[0].keep_top_k(k).unwrap()
            });
        }
    }
}

#[test]
fn attention_pattern_and_values() {
    if gpu().is_none() {
        return;
    }
    for (i, &(batch, q_len, k_len, heads, d)) in [
        (1, 1, 1, 1, 1),
        (2, 9, 9, 3, 16),
        (2, 5, 13, 12, 64),
        (1, 200, 200, 4, 64),
    ]
    .iter()
    .enumerate()
    {
        let q = randn(&[batch, q_len, heads, d], 110 + i as u64);
        let k = randn(&[batch, k_len, heads, d], 120 + i as u64);
        let v = randn(&[batch, k_len, heads, d], 130 + i as u64);
        for causal in [false, true] {
            let scale = 1.0 / (d as f32).sqrt();
            parity(
                &format!("pattern {batch}x{q_len}x{k_len}x{heads}x{d} causal={causal}"),
                &[&q, &k],
                RTOL,
                |t| t[0].attention_pattern(&t[1], scale, causal).unwrap(),
            );
            parity(
                &format!("z {batch}x{q_len}x{k_len}x{heads}x{d} causal={causal}"),
                &[&q, &k, &v],
                RTOL,
                |t| {
                    t[0].attention_pattern(&t[1], scale, causal)
                        .unwrap()
                        .attention_values(&t[2])
                        .unwrap()
                },
            );
        }
    }
}

#[test]
fn adam_steps() {
    if gpu().is_none() {
        return;
    }
    let (p, g) = (randn(&[513, 7], 140), randn(&[513, 7], 141));
    let (m, v) = (randn(&[513, 7], 142), randn(&[513, 7], 143).abs().unwrap());
    for step in [1, 2, 1000] {
        for (part, name) in [(0, "param"), (1, "m"), (2, "v")] {
            parity(
                &format!("adam {name} step {step}"),
                &[&p, &g, &m, &v],
                RTOL,
                |t| {
                    let out =
                        Tensor::adam_step(&t[0], &t[1], &t[2], &t[3], AdamConfig::default(), step)
                            .unwrap();
                    [out.0, out.1, out.2][part].clone()
                },
            );
        }
    }
}

#[test]
fn sparse_code_products_and_solve() {
    if gpu().is_none() {
        return;
    }
    let (n, k, m, d) = (300, 7, 50, 37);
    let values = randn(&[n, k], 150);
    let indices = ids(
        (0..n * k).map(|i| ((i * 7919 + 13) % m) as i32).collect(),
        &[n, k],
    );
    let table = randn(&[m, d], 151);
    let lhs = randn(&[n, d], 152);
    parity("sparse_matmul", &[&values, &indices, &table], RTOL, |t| {
        Tensor::sparse_matmul(&t[0], &t[1], &t[2]).unwrap()
    });
    parity("gather_dot", &[&lhs, &indices, &table], RTOL, |t| {
        Tensor::gather_dot(&t[0], &t[1], &t[2]).unwrap()
    });
    parity("scatter_outer", &[&values, &indices, &lhs], RTOL, |t| {
        Tensor::scatter_outer(&t[0], &t[1], &t[2], m + 3).unwrap()
    });
    let x = randn(&[40, 12], 153);
    let eye: Vec<f32> = (0..144)
        .map(|i| f32::from(u8::from(i / 12 == i % 12)))
        .collect();
    let eye = Tensor::from_vec_f32(eye, [12, 12], Device::Cpu).unwrap();
    let a = x.matmul_t(&x, true, false).unwrap().add(&eye).unwrap();
    let b = randn(&[12, 3], 154);
    parity("solve_spd", &[&a, &b], 1e-4, |t| {
        Tensor::solve_spd(&t[0], &t[1]).unwrap()
    });
    // Out-of-range codes are refused on the GPU exactly as on the CPU.
    let Some(device) = gpu_quiet() else { return };
    let bad = on(device, &ids(vec![0, m as i32], &[1, 2]));
    let err = Tensor::sparse_matmul(&on(device, &randn(&[1, 2], 155)), &bad, &on(device, &table))
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

/// Device memory is counted while tensors live and released when they drop; a request the GPU cannot
/// hold is an error value naming the op and the size, not a crash.
#[test]
fn memory_is_counted_and_exhaustion_is_an_error() {
    let Some(device) = gpu() else { return };
    let before = cuda::memory_use(0).map_or(0, |m| m.in_use);
    let t = Tensor::zeros([1 << 20], device).unwrap();
    let during = cuda::memory_use(0).unwrap();
    assert!(
        during.in_use >= before + (4 << 20),
        "in use {} after allocating 4 MiB (before {before})",
        during.in_use
    );
    assert!(during.total > 0 && during.peak >= during.in_use);
    drop(t);
    assert!(cuda::memory_use(0).unwrap().in_use <= during.in_use - (4 << 20));

    // 4 TiB: more than any GPU has.
    match Tensor::zeros([1usize << 40], device) {
        Err(Error::OutOfDeviceMemory { op, bytes, .. }) => {
            assert_eq!(op, "full");
            assert_eq!(bytes, 4usize << 40);
        }
        Err(other) => panic!("expected out-of-memory, got {other}"),
        Ok(_) => panic!("a 4 TiB tensor should not fit"),
    }
    // The device still works afterwards.
    let x = Tensor::ones([3], device).unwrap();
    assert_eq!(x.to_vec_f32().unwrap(), vec![1.0; 3]);
}

#[test]
fn tensors_move_between_devices() {
    let Some(device) = gpu() else { return };
    let x = randn(&[5, 7], 160);
    let back = x.to_device(device).unwrap().to_device(Device::Cpu).unwrap();
    assert_eq!(back.to_vec_f32().unwrap(), x.to_vec_f32().unwrap());
    let n = ids(vec![1, -2, 3], &[3]);
    let back = n.to_device(device).unwrap();
    assert_eq!(back.device(), device);
    assert_eq!(back.to_vec_i32().unwrap(), vec![1, -2, 3]);
    let mixed = x.to_device(device).unwrap().add(&x);
    assert!(matches!(mixed, Err(Error::DeviceMismatch { .. })));
}

/// Zero-element tensors: the driver refuses zero-byte allocations, the engine does not.
#[test]
fn empty_tensors() {
    if gpu().is_none() {
        return;
    }
    let empty = Tensor::from_vec_f32(vec![], [0, 3], Device::Cpu).unwrap();
    let w = randn(&[3, 2], 170);
    parity("empty relu", &[&empty], 0.0, |t| t[0].relu().unwrap());
    parity("empty matmul", &[&empty, &w], 0.0, |t| {
        t[0].matmul(&t[1]).unwrap()
    });
    parity("empty sum", &[&empty], 0.0, |t| t[0].sum(0, false).unwrap());
    parity("empty slice", &[&w], 0.0, |t| t[0].slice(0, 1, 1).unwrap());
}
