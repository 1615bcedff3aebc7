//! Host calls in a loop, timed from the outside by `loupe bench plugin`:
//! - `calls`: `n` of the cheapest host call (a tensor's element count), for the cost of one call;
//! - `op-loop`: `n` steps of a sparse-autoencoder-like update on small tensors, the kind of loop a
//!   method plugin runs, for the share of time the plugin boundary adds (`loupe bench plugin` runs the
//!   same ops natively). The shapes must match `OP_LOOP_SHAPES` in the host's bench command.

use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Params {
    mode: String,
    n: usize,
    rows: usize,
    d_in: usize,
    d_hidden: usize,
}

struct HostCalls;

impl Plugin for HostCalls {
    type Params = Params;

    fn manifest() -> Manifest {
        Manifest::new(
            "host-calls",
            env!("CARGO_PKG_VERSION"),
            "bench",
            "Host calls in a loop, for benchmarks",
        )
        .param(Param::string("mode", "calls", "calls | op-loop"))
        .param(Param::int("n", 1000, "Calls or loop steps"))
        .param(Param::int("rows", 256, "op-loop: rows of the input"))
        .param(Param::int("d_in", 128, "op-loop: input width"))
        .param(Param::int("d_hidden", 512, "op-loop: hidden width"))
    }

    fn run(p: Params) -> Result<Value> {
        match p.mode.as_str() {
            "calls" => {
                let t = Tensor::zeros(&[4])?;
                let mut total = 0usize;
                for _ in 0..p.n {
                    total += t.numel();
                }
                Ok(json!({ "total": total }))
            }
            "op-loop" => {
                let x = Tensor::randn(&[p.rows, p.d_in], 0.0, 1.0, 1)?;
                let w = Tensor::randn(&[p.d_in, p.d_hidden], 0.0, 0.05, 2)?;
                let b = Tensor::zeros(&[p.d_hidden])?;
                let mut loss = 0.0;
                for _ in 0..p.n {
                    let z = x.linear(&w, Some(&b))?.relu()?;
                    let x_hat = z.matmul_t(&w, false, true)?;
                    let err = x_hat.sub(&x)?;
                    loss = err.mul(&err)?.mean_all()?;
                }
                Ok(json!({ "loss": loss }))
            }
            other => Err(Error::invalid(
                "host-calls",
                format!("unknown mode `{other}`"),
            )),
        }
    }
}

export_plugin!(HostCalls);
