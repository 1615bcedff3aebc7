//! The cases: every op of the engine, on shapes chosen to catch the kernels' edge cases — sizes that
//! are not multiples of a tile, single elements, a GPT-2 vocabulary row, broadcasting across uneven
//! batch axes, ties for argmax and top-k, empty tensors. Tolerances: f32 results within 1e-5 of the
//! CPU's (relative to the larger of the element and the result's RMS); integer and data-movement
//! results exact; the 16-bit tensor-core products within 1e-4 of their CPU twin and 2e-2 of f32.

use super::{Case, CaseOp};
use crate::{
    AdamConfig, BinaryOp, DType, Device, MatmulPrecision, ReduceOp, Tape, Tensor, UnaryOp,
};

const RTOL: f32 = 1e-5;

/// Every case, with its inputs on the CPU.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for group in [
        unary,
        binary,
        pointwise,
        reductions,
        normalisation,
        matmul_f32,
        matmul_batched,
        matmul_16bit,
        layout,
        embedding_and_top_k,
        attention,
        adam,
        sparse,
        gradients,
        empty,
    ] {
        group(&mut all);
    }
    all
}

/// Fixed-shape CPU inputs cannot fail to build; a failure here is a bug in the engine itself.
fn built<T>(t: crate::Result<T>) -> T {
    t.expect("building a self-test input on the CPU")
}

fn randn(dims: &[usize], seed: u64) -> Tensor {
    built(Tensor::randn(dims, 0.0, 1.0, seed, Device::Cpu))
}

fn uniform(dims: &[usize], low: f32, high: f32, seed: u64) -> Tensor {
    built(Tensor::rand_uniform(dims, low, high, seed, Device::Cpu))
}

fn ids(values: Vec<i32>, dims: &[usize]) -> Tensor {
    built(Tensor::from_vec_i32(values, dims, Device::Cpu))
}

fn floats(values: Vec<f32>, dims: &[usize]) -> Tensor {
    built(Tensor::from_vec_f32(values, dims, Device::Cpu))
}

fn op(f: impl Fn(&[Tensor]) -> crate::Result<Tensor> + 'static) -> CaseOp {
    Box::new(f)
}

const SHAPES: &[&[usize]] = &[&[1], &[1000], &[257, 33], &[3, 5, 7, 11]];

fn unary(all: &mut Vec<Case>) {
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
        UnaryOp::Erf,
    ];
    for (s, dims) in SHAPES.iter().enumerate() {
        let signed = uniform(dims, -6.0, 6.0, s as u64);
        let positive = uniform(dims, 1e-3, 50.0, 100 + s as u64);
        for u in ops {
            let x = if matches!(u, UnaryOp::Log | UnaryOp::Sqrt) {
                &positive
            } else {
                &signed
            };
            all.push(Case::agree(
                "unary",
                format!("{u:?} {dims:?}"),
                &[x],
                RTOL,
                op(move |t| t[0].unary(u)),
            ));
        }
    }
}

fn binary(all: &mut Vec<Case>) {
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
        (&[2, 3, 1, 5, 1, 4, 3], &[3, 1, 1, 4, 1]),
    ];
    // Rounded to quarters, so equal values occur and Equal is exercised; y stays away from 0.
    let quarters = |t: Tensor| {
        let v: Vec<f32> = built(t.affine(4.0, 0.0).and_then(|t| t.to_vec_f32()))
            .iter()
            .map(|v| v.round() / 4.0)
            .collect();
        floats(v, t.dims())
    };
    for (i, (a, b)) in pairs.iter().enumerate() {
        let x = quarters(randn(a, i as u64));
        let y = quarters(uniform(b, 1.0, 12.0, 50 + i as u64));
        for o in ops {
            let name = format!("{o:?} {a:?} {b:?}");
            all.push(Case::agree(
                "binary (broadcasting)",
                name,
                &[&x, &y],
                RTOL,
                op(move |t| t[0].binary(o, &t[1])),
            ));
        }
    }
}

fn pointwise(all: &mut Vec<Case>) {
    let g = "affine, clamp, where, mask, casts";
    let x = randn(&[37, 129], 1);
    all.push(Case::agree(
        g,
        "affine [37, 129]",
        &[&x],
        RTOL,
        op(|t| t[0].affine(1.5, -0.25)),
    ));
    all.push(Case::agree(
        g,
        "clamp [37, 129]",
        &[&x],
        0.0,
        op(|t| t[0].clamp(-0.5, 0.75)),
    ));
    let cond = built(x.binary(BinaryOp::Greater, &built(Tensor::zeros([1], Device::Cpu))));
    let other = randn(&[129], 2);
    all.push(Case::agree(
        g,
        "where [37, 129] / [129]",
        &[&cond, &x, &other],
        0.0,
        op(|t| t[0].where_(&t[1], &t[2])),
    ));
    let scores = randn(&[2, 3, 5, 9], 3);
    all.push(Case::agree(
        g,
        "causal_mask [2, 3, 5, 9]",
        &[&scores],
        0.0,
        op(|t| t[0].causal_mask(-1e9)),
    ));
    let wide = built(randn(&[1000], 4).affine(1e3, 0.0));
    all.push(Case::agree(
        g,
        "f32 -> i32",
        &[&wide],
        0.0,
        op(|t| t[0].to_dtype(DType::I32)),
    ));
    let ints = ids((-500..500).collect(), &[1000]);
    all.push(Case::agree(
        g,
        "i32 -> f32",
        &[&ints],
        0.0,
        op(|t| t[0].to_dtype(DType::F32)),
    ));
}

fn reductions(all: &mut Vec<Case>) {
    let g = "reductions, argmax";
    let x = randn(&[7, 33, 129], 5);
    // Ties for argmax: a whole row of one value, and a repeated maximum.
    let mut tied = built(randn(&[4, 50], 6).to_vec_f32());
    tied[..50].fill(1.0);
    tied[60] = 9.0;
    tied[70] = 9.0;
    let tied = floats(tied, &[4, 50]);
    for axis in [0isize, 1, 2, -1] {
        for r in [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::L2Norm,
        ] {
            for keepdim in [false, true] {
                let name = format!("{r:?} [7, 33, 129] axis {axis} keepdim={keepdim}");
                all.push(Case::agree(
                    g,
                    name,
                    &[&x],
                    RTOL,
                    op(move |t| t[0].reduce(r, axis, keepdim)),
                ));
            }
        }
        let name = format!("argmax [7, 33, 129] axis {axis}");
        all.push(Case::agree(
            g,
            name,
            &[&x],
            0.0,
            op(move |t| t[0].argmax(axis, false)),
        ));
    }
    for axis in [0isize, 1] {
        let name = format!("argmax with ties axis {axis}");
        all.push(Case::agree(
            g,
            name,
            &[&tied],
            0.0,
            op(move |t| t[0].argmax(axis, true)),
        ));
    }
    // A long row: the vocabulary axis of GPT-2's logits.
    let logits = randn(&[3, 50_257], 7);
    all.push(Case::agree(
        g,
        "argmax over a vocabulary",
        &[&logits],
        0.0,
        op(|t| t[0].argmax(-1, false)),
    ));
    all.push(Case::agree(
        g,
        "sum over a vocabulary",
        &[&logits],
        RTOL,
        op(|t| t[0].sum(-1, false)),
    ));
}

fn normalisation(all: &mut Vec<Case>) {
    let g = "softmax, log_softmax, layer_norm";
    let x = built(randn(&[3, 17, 50], 8).affine(3.0, 0.0));
    for axis in [-1isize, 1, 0] {
        all.push(Case::agree(
            g,
            format!("softmax axis {axis}"),
            &[&x],
            RTOL,
            op(move |t| t[0].softmax(axis)),
        ));
        all.push(Case::agree(
            g,
            format!("log_softmax axis {axis}"),
            &[&x],
            RTOL,
            op(move |t| t[0].log_softmax(axis)),
        ));
    }
    let logits = built(randn(&[2, 50_257], 9).affine(5.0, 0.0));
    all.push(Case::agree(
        g,
        "log_softmax over a vocabulary",
        &[&logits],
        RTOL,
        op(|t| t[0].log_softmax(-1)),
    ));
    for dims in [&[1usize, 1][..], &[3, 50, 768], &[5, 33]] {
        let d = dims[dims.len() - 1];
        let (x, w, b) = (randn(dims, 10), randn(&[d], 11), randn(&[d], 12));
        let name = format!("layer_norm {dims:?}");
        all.push(Case::agree(
            g,
            name,
            &[&x, &w, &b],
            RTOL,
            op(|t| t[0].layer_norm(&t[1], &t[2], 1e-5)),
        ));
    }
}

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// Operands of an m×k · k×n product, stored transposed where asked.
fn operands(m: usize, k: usize, n: usize, ta: bool, tb: bool, seed: u64) -> (Tensor, Tensor) {
    let a = randn(&if ta { [k, m] } else { [m, k] }, seed);
    let b = randn(&if tb { [n, k] } else { [k, n] }, seed + 1000);
    (a, b)
}

fn matmul_f32(all: &mut Vec<Case>) {
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (17, 19, 33),
        (64, 64, 64),
        (130, 40, 129),
        (257, 1000, 300),
    ]
    .iter()
    .enumerate()
    {
        for (ta, tb) in TRANSPOSES {
            let (a, b) = operands(m, k, n, ta, tb, 20 + i as u64);
            let name = format!("{m}x{k}x{n} ta={ta} tb={tb}");
            all.push(Case::agree(
                "matmul f32",
                name,
                &[&a, &b],
                RTOL,
                op(move |t| t[0].matmul_t(&t[1], ta, tb)),
            ));
        }
    }
}

fn matmul_batched(all: &mut Vec<Case>) {
    let g = "matmul batched, linear";
    let a = randn(&[2, 3, 17, 19], 60);
    let shared = randn(&[19, 23], 61);
    all.push(Case::agree(
        g,
        "[2, 3, 17, 19] · [19, 23]",
        &[&a, &shared],
        RTOL,
        op(|t| t[0].matmul(&t[1])),
    ));
    let b = randn(&[2, 3, 19, 23], 62);
    all.push(Case::agree(
        g,
        "[2, 3, 17, 19] · [2, 3, 19, 23]",
        &[&a, &b],
        RTOL,
        op(|t| t[0].matmul(&t[1])),
    ));
    // Batch axes [2, 1] against [1, 3]: offsets that do not step evenly.
    let (left, right) = (randn(&[2, 1, 17, 19], 63), randn(&[1, 3, 19, 23], 64));
    all.push(Case::agree(
        g,
        "uneven broadcast [2, 1] · [1, 3]",
        &[&left, &right],
        RTOL,
        op(|t| t[0].matmul(&t[1])),
    ));
    let (x, w, bias) = (
        randn(&[2, 9, 768], 65),
        randn(&[768, 301], 66),
        randn(&[301], 67),
    );
    all.push(Case::agree(
        g,
        "linear [2, 9, 768] · [768, 301] + bias",
        &[&x, &w, &bias],
        RTOL,
        op(|t| t[0].linear(&t[1], Some(&t[2]))),
    ));
    all.push(Case::agree(
        g,
        "linear without bias",
        &[&x, &w],
        RTOL,
        op(|t| t[0].linear(&t[1], None)),
    ));
    let w_t = randn(&[301, 768], 68);
    all.push(Case::agree(
        g,
        "linear_t [2, 9, 768] · [301, 768]ᵀ + bias (nn.Linear layout)",
        &[&x, &w_t, &bias],
        RTOL,
        op(|t| t[0].linear_t(&t[1], Some(&t[2]))),
    ));
}

/// The tensor-core path against its CPU twin (operands rounded the same way; 16-bit products are
/// exact in f32, so only the summation order differs), and against f32 within bf16's precision.
fn matmul_16bit(all: &mut Vec<Case>) {
    let g = "matmul bf16/f16 (tensor cores)";
    for (i, &(m, k, n)) in [(1, 1, 1), (17, 19, 33), (130, 40, 129), (1024, 1024, 1024)]
        .iter()
        .enumerate()
    {
        for (ta, tb) in TRANSPOSES {
            let (a, b) = operands(m, k, n, ta, tb, 70 + i as u64);
            for p in [MatmulPrecision::Bf16, MatmulPrecision::F16] {
                let name = format!("{p:?} {m}x{k}x{n} ta={ta} tb={tb}");
                all.push(Case::agree(
                    g,
                    name,
                    &[&a, &b],
                    1e-4,
                    op(move |t| t[0].matmul_with_precision(&t[1], ta, tb, p)),
                ));
            }
            // bf16 keeps 8 significant bits: ~2⁻⁸ relative per operand.
            let name = format!("bf16 against f32 {m}x{k}x{n} ta={ta} tb={tb}");
            all.push(Case::agree(
                g,
                name,
                &[&a, &b],
                2e-2,
                op(move |t| match t[0].device() {
                    Device::Cpu => t[0].matmul_t(&t[1], ta, tb),
                    _ => t[0].matmul_with_precision(&t[1], ta, tb, MatmulPrecision::Bf16),
                }),
            ));
        }
    }
}

fn layout(all: &mut Vec<Case>) {
    let g = "permute, slice, concat, index_select";
    let x = randn(&[3, 5, 7, 11], 90);
    let n = ids((0..385).collect(), &[5, 7, 11]);
    all.push(Case::agree(
        g,
        "permute",
        &[&x],
        0.0,
        op(|t| t[0].permute(&[2, 0, 3, 1])),
    ));
    all.push(Case::agree(
        g,
        "permute i32",
        &[&n],
        0.0,
        op(|t| t[0].permute(&[1, 2, 0])),
    ));
    all.push(Case::agree(
        g,
        "transpose",
        &[&x],
        0.0,
        op(|t| t[0].transpose(1, -1)),
    ));
    all.push(Case::agree(
        g,
        "reshape then transpose",
        &[&x],
        0.0,
        op(|t| t[0].reshape([15, 77])?.transpose(0, 1)),
    ));
    for axis in [0isize, 1, 3] {
        all.push(Case::agree(
            g,
            format!("slice axis {axis}"),
            &[&x],
            0.0,
            op(move |t| t[0].slice(axis, 1, 3)),
        ));
    }
    all.push(Case::agree(
        g,
        "slice i32",
        &[&n],
        0.0,
        op(|t| t[0].slice(2, 4, 11)),
    ));
    let y = randn(&[3, 2, 7, 11], 91);
    all.push(Case::agree(
        g,
        "concat",
        &[&x, &y, &x],
        0.0,
        op(|t| Tensor::concat(&[&t[0], &t[1], &t[2]], 1)),
    ));
    all.push(Case::agree(
        g,
        "concat i32",
        &[&n, &n],
        0.0,
        op(|t| Tensor::concat(&[&t[0], &t[1]], -1)),
    ));
    let picks = ids(vec![4, 0, 4, 2], &[4]);
    all.push(Case::agree(
        g,
        "index_select",
        &[&x, &picks],
        0.0,
        op(|t| t[0].index_select(1, &t[1])),
    ));
    all.push(Case::agree(
        g,
        "index_select i32",
        &[&n, &picks],
        0.0,
        op(|t| t[0].index_select(0, &t[1])),
    ));
}

fn embedding_and_top_k(all: &mut Vec<Case>) {
    let g = "embedding, top_k";
    let table = randn(&[1000, 65], 100);
    let tokens = ids(vec![0, 999, 5, 5, 123, 42], &[2, 3]);
    all.push(Case::agree(
        g,
        "embedding",
        &[&table, &tokens],
        0.0,
        op(|t| t[0].embedding(&t[1])),
    ));
    let x = randn(&[37, 1000], 101);
    // Ties: a row of equal values keeps the lowest indices.
    let mut tied = built(randn(&[3, 40], 102).to_vec_f32());
    tied[40..80].fill(0.5);
    let tied = floats(tied, &[3, 40]);
    for k in [1, 7, 32] {
        for (name, input) in [("random", &x), ("tied", &tied)] {
            all.push(Case::agree(
                g,
                format!("top_k values {name} k={k}"),
                &[input],
                0.0,
                op(move |t| Ok(t[0].top_k(k)?.0)),
            ));
            all.push(Case::agree(
                g,
                format!("top_k indices {name} k={k}"),
                &[input],
                0.0,
                op(move |t| Ok(t[0].top_k(k)?.1)),
            ));
            all.push(Case::agree(
                g,
                format!("keep_top_k {name} k={k}"),
                &[input],
                0.0,
                op(move |t| t[0].keep_top_k(k)),
            ));
        }
    }
}

fn attention(all: &mut Vec<Case>) {
    let g = "attention pattern, values";
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
        let scale = 1.0 / (d as f32).sqrt();
        for causal in [false, true] {
            let shape = format!("{batch}x{q_len}x{k_len}x{heads}x{d} causal={causal}");
            all.push(Case::agree(
                g,
                format!("pattern {shape}"),
                &[&q, &k],
                RTOL,
                op(move |t| t[0].attention_pattern(&t[1], scale, causal)),
            ));
            all.push(Case::agree(
                g,
                format!("z {shape}"),
                &[&q, &k, &v],
                RTOL,
                op(move |t| {
                    t[0].attention_pattern(&t[1], scale, causal)?
                        .attention_values(&t[2])
                }),
            ));
        }
    }
}

fn adam(all: &mut Vec<Case>) {
    let (p, g) = (randn(&[513, 7], 140), randn(&[513, 7], 141));
    let (m, v) = (randn(&[513, 7], 142), built(randn(&[513, 7], 143).abs()));
    for step in [1, 2, 1000] {
        for (part, name) in [(0, "param"), (1, "m"), (2, "v")] {
            all.push(Case::agree(
                "adam",
                format!("{name} after step {step}"),
                &[&p, &g, &m, &v],
                RTOL,
                op(move |t| {
                    let (p, m, v) =
                        Tensor::adam_step(&t[0], &t[1], &t[2], &t[3], AdamConfig::default(), step)?;
                    Ok([p, m, v][part].clone())
                }),
            ));
        }
    }
}

/// The gradient at input `which` of the scalar `[1]` loss `f` makes of the watched inputs.
fn gradient_of(
    inputs: &[Tensor],
    which: usize,
    f: impl Fn(&[Tensor]) -> crate::Result<Tensor>,
) -> crate::Result<Tensor> {
    let tape = Tape::new();
    let watched = inputs
        .iter()
        .map(|t| tape.watch(t))
        .collect::<crate::Result<Vec<_>>>()?;
    let loss = f(&watched)?;
    let one = Tensor::ones([1usize], loss.device())?;
    Ok(tape
        .backward(&[(&loss, &one)], &[&watched[which]])?
        .remove(0))
}

/// Gradients through the tape: the VJPs are engine ops, so each backend computes them with its own
/// kernels. One case per input's gradient of a small network, and per unary derivative.
fn gradients(all: &mut Vec<Case>) {
    let g = "gradients";
    let (x, w, b) = (
        randn(&[37, 65], 160),
        randn(&[65, 33], 161),
        randn(&[33], 162),
    );
    for (which, name) in [(0, "x"), (1, "w"), (2, "b")] {
        all.push(Case::agree(
            g,
            format!("d/d{name} of mean(tanh(gelu(x·w + b))²), x [37, 65], w [65, 33]"),
            &[&x, &w, &b],
            1e-4,
            op(move |t| {
                gradient_of(t, which, |v| {
                    let h = v[0].matmul(&v[1])?.add(&v[2])?;
                    let h = h.unary(UnaryOp::GeluTanh)?.unary(UnaryOp::Tanh)?;
                    h.mul(&h)?.mean(1, false)?.mean(0, true)
                })
            }),
        ));
    }
    // GPT-2's pieces: embedding, layer norm, softmax over a row of keys, each input's gradient.
    let table = randn(&[50, 24], 164);
    let tokens = ids((0..40).map(|i: i32| i * 17 % 50).collect(), &[2, 20]);
    let (lw, lb) = (randn(&[24], 165), randn(&[24], 166));
    for (which, name) in [(0, "the embedding table"), (1, "ln weight"), (2, "ln bias")] {
        let tokens = tokens.clone();
        all.push(Case::agree(
            g,
            format!("d/d({name}) of Σ softmax(ln(embedding))·c, [2, 20, 24]"),
            &[&table, &lw, &lb],
            1e-4,
            op(move |t| {
                gradient_of(t, which, |v| {
                    let ids = tokens.to_device(v[0].device())?;
                    let h = v[0].embedding(&ids)?.layer_norm(&v[1], &v[2], 1e-5)?;
                    let p = h.softmax(-1)?.log_softmax(1)?;
                    let mix = Tensor::rand_uniform(p.dims().to_vec(), -1.0, 1.0, 167, Device::Cpu)?
                        .to_device(p.device())?;
                    p.mul(&mix)?.sum(-1, false)?.sum(-1, false)?.sum(0, true)
                })
            }),
        ));
    }
    // The fused cross-entropy: per-row losses (one row left out), and their gradient.
    let logits = randn(&[9, 1031], 173);
    let labels = ids(vec![0, 1030, -100, 7, 512, 3, 3, 999, 1], &[9]);
    for gradient in [false, true] {
        let labels = labels.clone();
        all.push(Case::agree(
            g,
            if gradient {
                "d/dlogits of Σ cross_entropy(logits [9, 1031], labels, one ignored)".to_string()
            } else {
                "cross_entropy(logits [9, 1031], labels, one ignored)".to_string()
            },
            &[&logits],
            1e-4,
            op(move |t| {
                let labels = labels.to_device(t[0].device())?;
                if !gradient {
                    return t[0].cross_entropy(&labels, -100);
                }
                gradient_of(t, 0, |v| v[0].cross_entropy(&labels, -100)?.sum(0, true))
            }),
        ));
    }
    // Causal attention, pattern then values, each of q, k, v alone: 19 queries over 23 keys, 3 heads.
    let (q, k, v) = (
        randn(&[2, 19, 3, 7], 168),
        randn(&[2, 23, 3, 7], 169),
        randn(&[2, 23, 3, 7], 170),
    );
    for (which, name) in [(0, "q"), (1, "k"), (2, "v")] {
        all.push(Case::agree(
            g,
            format!(
                "d/d{name} of Σ attention(q, k, v)·c, causal, q [2, 19, 3, 7], k [2, 23, 3, 7]"
            ),
            &[&q, &k, &v],
            1e-4,
            op(move |t| {
                gradient_of(t, which, |v| {
                    let z = v[0]
                        .attention_pattern(&v[1], 0.37, true)?
                        .attention_values(&v[2])?;
                    let mix = Tensor::rand_uniform(z.dims().to_vec(), -1.0, 1.0, 171, Device::Cpu)?
                        .to_device(z.device())?;
                    z.mul(&mix)?
                        .sum(-1, false)?
                        .sum(-1, false)?
                        .sum(-1, false)?
                        .sum(0, true)
                })
            }),
        ));
    }
    // Picking ops: index_select with repeats, max, top_k values and keep_top_k, one gradient.
    let x = randn(&[6, 41], 172);
    let picks = ids(vec![5, 0, 5, 2, 3], &[5]);
    all.push(Case::agree(
        g,
        "d/dx of index_select, max, top_k(5) and keep_top_k(9), x [6, 41]".to_string(),
        &[&x],
        1e-4,
        op(move |t| {
            let picks = picks.to_device(t[0].device())?;
            gradient_of(t, 0, |v| {
                let x = &v[0];
                let rows = x.index_select(0, &picks)?;
                let (top, _) = x.top_k(5)?;
                let parts = [
                    rows.mul(&rows)?.sum(-1, false)?.sum(0, true)?,
                    x.max(-1, false)?.sum(0, true)?,
                    top.mul(&top)?.sum(-1, false)?.sum(0, true)?,
                    x.keep_top_k(9)?
                        .unary(UnaryOp::Tanh)?
                        .sum(-1, false)?
                        .sum(0, true)?,
                ];
                parts[1..]
                    .iter()
                    .try_fold(parts[0].clone(), |acc, p| acc.add(p))
            })
        }),
    ));
    let x = uniform(&[257, 3], 0.1, 2.0, 163);
    for unary in [
        UnaryOp::Relu,
        UnaryOp::GeluTanh,
        UnaryOp::GeluErf,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Erf,
    ] {
        all.push(Case::agree(
            g,
            format!("{unary:?}′ [257, 3]"),
            &[&x],
            1e-4,
            op(move |t| {
                let tape = Tape::new();
                let v = tape.watch(&t[0])?;
                // Negative inputs too, where the function is defined there.
                let y = match unary {
                    UnaryOp::Log | UnaryOp::Sqrt => v.unary(unary)?,
                    _ => v.affine(1.0, -1.0)?.unary(unary)?,
                };
                let seed = Tensor::ones(y.dims().to_vec(), y.device())?;
                Ok(tape.backward(&[(&y, &seed)], &[&v])?.remove(0))
            }),
        ));
    }
}

fn sparse(all: &mut Vec<Case>) {
    let g = "sparse codes, solve_spd";
    let (n, k, m, d) = (300, 7, 50, 37);
    let values = randn(&[n, k], 150);
    let indices = ids(
        (0..n * k).map(|i| ((i * 7919 + 13) % m) as i32).collect(),
        &[n, k],
    );
    let table = randn(&[m, d], 151);
    let lhs = randn(&[n, d], 152);
    all.push(Case::agree(
        g,
        "sparse_matmul",
        &[&values, &indices, &table],
        RTOL,
        op(|t| Tensor::sparse_matmul(&t[0], &t[1], &t[2])),
    ));
    all.push(Case::agree(
        g,
        "gather_dot",
        &[&lhs, &indices, &table],
        RTOL,
        op(|t| Tensor::gather_dot(&t[0], &t[1], &t[2])),
    ));
    all.push(Case::agree(
        g,
        "scatter_outer",
        &[&values, &indices, &lhs],
        RTOL,
        op(move |t| Tensor::scatter_outer(&t[0], &t[1], &t[2], m + 3)),
    ));
    let x = randn(&[40, 12], 153);
    let eye: Vec<f32> = (0..144)
        .map(|i| f32::from(u8::from(i / 12 == i % 12)))
        .collect();
    let spd = built(
        x.matmul_t(&x, true, false)
            .and_then(|g| g.add(&floats(eye, &[12, 12]))),
    );
    let rhs = randn(&[12, 3], 154);
    all.push(Case::agree(
        g,
        "solve_spd 12x12",
        &[&spd, &rhs],
        1e-4,
        op(|t| Tensor::solve_spd(&t[0], &t[1])),
    ));
    // Out-of-range codes are refused on the device exactly as on the CPU.
    let bad = ids(vec![0, m as i32], &[1, 2]);
    let code_values = randn(&[1, 2], 155);
    all.push(Case::refuse(
        g,
        "out-of-range code refused",
        &[&code_values, &bad, &table],
        "out of range",
        op(|t| Tensor::sparse_matmul(&t[0], &t[1], &t[2])),
    ));
}

/// Zero-element tensors: a driver refuses zero-byte allocations, the engine does not.
fn empty(all: &mut Vec<Case>) {
    let g = "empty tensors";
    let empty = floats(vec![], &[0, 3]);
    let w = randn(&[3, 2], 170);
    all.push(Case::agree(
        g,
        "relu [0, 3]",
        &[&empty],
        0.0,
        op(|t| t[0].relu()),
    ));
    all.push(Case::agree(
        g,
        "matmul [0, 3] · [3, 2]",
        &[&empty, &w],
        0.0,
        op(|t| t[0].matmul(&t[1])),
    ));
    all.push(Case::agree(
        g,
        "sum [0, 3] axis 0",
        &[&empty],
        0.0,
        op(|t| t[0].sum(0, false)),
    ));
    all.push(Case::agree(
        g,
        "slice to nothing",
        &[&w],
        0.0,
        op(|t| t[0].slice(0, 1, 1)),
    ));
}
