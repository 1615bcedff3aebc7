//! Calls the `tensor` interface directly — no SDK checks in between — with the inputs that once
//! crashed, aborted or fooled the host: empty contractions, reductions over empty axes, shapes whose
//! size overflows, joins of many references to one tensor, dimensions past 2³². Each attack records
//! what came back (values or the host's error value); the run's summary lists them, so the test can
//! check both that the host survived and that every answer is the right one.

use loupe_plugin_api::bindings::loupe::plugin::tensor::{ReduceOp, Tensor as Raw};
use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A named attack and what it reports.
type Attack = (&'static str, fn() -> Value);

#[derive(Deserialize)]
struct Params {
    attack: String,
    n: u32,
}

struct ShapeAttacks;

type Raw2 = std::result::Result<Raw, loupe_plugin_api::bindings::loupe::plugin::types::Error>;

/// What a call gave: its shape and (small) values, or the host's error message.
fn outcome(r: Raw2) -> Value {
    match r {
        Ok(t) => {
            let shape = t.shape();
            let values = if t.numel() <= 64 {
                t.to_f32().ok()
            } else {
                None
            };
            json!({ "shape": shape, "values": values })
        }
        Err(e) => json!({ "error": e.message, "op": e.op }),
    }
}

fn full(shape: &[u32], v: f32) -> Raw {
    Raw::full(shape, v).expect("a small tensor")
}

fn empty_contraction() -> Value {
    // [4, 0] · [0, 3] is 12 zeros; multiplying the result again reads all of them.
    let x = full(&[4, 0], 1.0);
    let w = full(&[0, 3], 1.0);
    let y = match x.linear(&w, None) {
        Ok(y) => y,
        Err(e) => return json!({ "error": e.message }),
    };
    let ones = full(&[3, 2], 1.0);
    json!({
        "linear": outcome(x.linear(&w, None)),
        "then_matmul": outcome(y.matmul(&ones, false, false)),
        "matmul_k0": outcome(full(&[2, 5, 0], 1.0).matmul(&full(&[0, 7], 1.0), false, false)),
    })
}

fn empty_reductions() -> Value {
    let x = full(&[3, 0], 1.0);
    json!({
        "sum": outcome(x.reduce(ReduceOp::Sum, 1, false)),
        "mean": outcome(x.reduce(ReduceOp::Mean, 1, false)),
        "max": outcome(x.reduce(ReduceOp::Max, 1, false)),
        "softmax": outcome(x.softmax(-1)),
        "zero_outputs": outcome(full(&[4, 3], 1.0).linear(&full(&[3, 0], 1.0), None)),
    })
}

fn overflowing_shapes() -> Value {
    let empty = full(&[0], 0.0);
    json!({
        "full": outcome(Raw::full(&[u32::MAX; 4], 0.0)),
        "randn": outcome(Raw::randn(&[1 << 30, 1 << 30, 4], 0.0, 1.0, 0)),
        "reshape": outcome(empty.reshape(&[0, u32::MAX, u32::MAX])),
        "scatter_rows": outcome(Raw::scatter_outer(
            &full(&[1, 1], 1.0),
            &Raw::from_s32(&[0], &[1, 1]).expect("ids"),
            &full(&[1, 1 << 20], 1.0),
            u32::MAX,
        )),
    })
}

fn many_references() -> Value {
    // 1024 references to one 64 MiB tensor: a 64 GiB result, far over any quota.
    let x = full(&[1 << 12, 1 << 12], 1.0);
    let parts: Vec<&Raw> = (0..1024).map(|_| &x).collect();
    json!({ "concat": outcome(Raw::concat(&parts, 0)) })
}

fn past_u32_dims() -> Value {
    let wide = full(&[0, 1], 0.0).reshape(&[0, i32::MAX as u32]);
    let joined = match &wide {
        Ok(w) => outcome(Raw::concat(&[w, w, w], 1)),
        Err(e) => json!({ "error": e.message }),
    };
    json!({
        "dim_2_31": outcome(Raw::full(&[0, 1 << 31], 0.0)),
        "joined": joined,
    })
}

/// `n × I + 1` (symmetric positive definite), built on the host from an `n`-long index.
fn spd(n: u32) -> Raw {
    let index: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let rows = Raw::from_f32(&index, &[n, 1]).expect("an index");
    let cols = Raw::from_f32(&index, &[1, n]).expect("an index");
    let eye = rows
        .binary(
            loupe_plugin_api::bindings::loupe::plugin::tensor::BinaryOp::Equal,
            &cols,
        )
        .expect("eye");
    eye.affine(n as f32, 1.0).expect("spd")
}

/// One host call that runs for minutes unless the host stops it: an `n × n` Cholesky solve.
fn long_solve(n: u32) -> Value {
    let a = spd(n);
    json!({ "solve": outcome(Raw::solve_spd(&a, &a)) })
}

/// One host call of `2n³` multiply-adds: an `n × n` product.
fn long_matmul(n: u32) -> Value {
    let x = Raw::randn(&[n, n], 0.0, 1.0, 0).expect("x");
    json!({ "matmul": outcome(x.matmul(&x, false, true)) })
}

impl Plugin for ShapeAttacks {
    type Params = Params;

    fn manifest() -> Manifest {
        Manifest::new(
            "shape-attacks",
            env!("CARGO_PKG_VERSION"),
            "test",
            "Calls the tensor interface with shapes that once crashed the host",
        )
        .param(Param::string(
            "attack",
            "all",
            "all | empty-contraction | empty-reductions | overflowing-shapes | many-references | past-u32-dims \
             | long-solve | long-matmul (the last two are not in all)",
        ))
        .param(Param::int("n", 8192, "long-solve, long-matmul: the matrix side"))
    }

    fn run(p: Params) -> Result<Value> {
        match p.attack.as_str() {
            "long-solve" => return Ok(long_solve(p.n)),
            "long-matmul" => return Ok(long_matmul(p.n)),
            _ => {}
        }
        let attacks: [Attack; 5] = [
            ("empty-contraction", empty_contraction),
            ("empty-reductions", empty_reductions),
            ("overflowing-shapes", overflowing_shapes),
            ("many-references", many_references),
            ("past-u32-dims", past_u32_dims),
        ];
        let mut out = Map::new();
        for (name, attack) in attacks {
            if p.attack == "all" || p.attack == name {
                info(&format!("attack: {name}"));
                out.insert(name.to_string(), attack());
            }
        }
        Ok(Value::Object(out))
    }
}

export_plugin!(ShapeAttacks);
