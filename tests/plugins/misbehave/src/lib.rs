//! A plugin that misbehaves on purpose, one way per `behaviour`, so the tests can check that the host
//! contains it: the run fails with a clear error, its events are kept, and the host carries on.

use std::hint::black_box;
use std::time::Duration;

use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Params {
    behaviour: String,
}

struct Misbehave;

/// The text `tokenize-flood` asks the host to tokenize in one call.
const TOKENIZE_FLOOD_BYTES: usize = 16 << 20;
/// The batch of `huge-forward`'s pass, at the model's full context.
const HUGE_BATCH: usize = 2048;

/// Recurses without end; `black_box` keeps the compiler from turning it into a loop.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 32];
    black_box(&mut frame);
    recurse(black_box(depth + 1)) + frame[3]
}

impl Plugin for Misbehave {
    type Params = Params;

    fn manifest() -> Manifest {
        Manifest::new("misbehave", env!("CARGO_PKG_VERSION"), "test", "Misbehaves on purpose").param(
            Param::string(
                "behaviour",
                "ok",
                "ok | spin | memory-bomb | recursion | panic | over-quota | escape | flood | bad-op | snoop \
                 | sleep | poll-clock | list-datasets | tokenize-flood | huge-forward | stall-on-stop",
            ),
        )
    }

    fn run(p: Params) -> Result<Value> {
        info(&format!("misbehaving: {}", p.behaviour));
        match p.behaviour.as_str() {
            "ok" => {
                report::save_json("fine.json", &json!({ "fine": true }))?;
                Ok(json!({ "fine": true }))
            }
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            // Watches for the stop request, so it is given the grace period, then ignores it: the
            // host must stop it when the grace runs out.
            "stall-on-stop" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                    if n.is_multiple_of(4096) && runtime::stop_requested() {
                        info("asked to stop; carrying on regardless");
                        loop {
                            n = black_box(n.wrapping_add(1));
                        }
                    }
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 16 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => Ok(json!({ "depth": recurse(0) })),
            "panic" => panic!("misbehave: a deliberate panic"),
            "over-quota" => {
                // Holds 1 MiB tensors until the host refuses the next one.
                let mut held = Vec::new();
                loop {
                    held.push(Tensor::zeros(&[256 * 1024])?);
                }
            }
            "escape" => {
                let mut first_error = None;
                for name in [
                    "../../escaped.json",
                    "/tmp/loupe-escaped.json",
                    "a/../../escaped.json",
                ] {
                    if let Err(e) = report::save_json(name, &json!({ "escaped": true })) {
                        report::warn(&e.to_string());
                        first_error.get_or_insert(e);
                    }
                }
                match first_error {
                    Some(e) => Err(e),
                    None => Ok(json!({ "escaped": true })),
                }
            }
            "flood" => {
                let mut step = 0u64;
                loop {
                    report::metric("flood", step, step as f64);
                    drop(Tensor::scalar(1.0)?);
                    step += 1;
                }
            }
            "bad-op" => {
                let a = Tensor::zeros(&[2, 3])?;
                let b = Tensor::zeros(&[4])?;
                // A bad call is an error value: the plugin sees it and can carry on.
                let err = a
                    .add(&b)
                    .expect_err("shapes [2, 3] and [4] must not broadcast");
                report::warn(&format!("as expected: {err}"));
                let c = (&a + 1.0).sum_all()?;
                Err(Error::invalid(
                    "misbehave",
                    format!("{err} (and the plugin went on: sum {c})"),
                ))
            }
            "snoop" => {
                // What a plugin can see of the machine: it should be nothing.
                let file = std::fs::read("/etc/hostname")
                    .map(|b| b.len())
                    .map_err(|e| e.to_string());
                let dir = std::fs::read_dir(".")
                    .map(|d| d.count())
                    .map_err(|e| e.to_string());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let net = std::net::TcpStream::connect("127.0.0.1:22")
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                Ok(json!({
                    "file": file.is_ok(),
                    "dir": dir.is_ok(),
                    "env": env,
                    "net": net.is_ok(),
                }))
            }
            "sleep" => {
                // Blocks in the host (a clock pollable), where no epoch check can reach it.
                std::thread::sleep(Duration::from_secs(3600));
                Ok(json!({ "slept": true }))
            }
            "poll-clock" => {
                let hour = wasip2::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000);
                let ready = wasip2::io::poll::poll(&[&hour]);
                Ok(json!({ "ready": ready }))
            }
            "list-datasets" => Ok(json!({ "datasets": loupe_plugin_api::data::datasets().len() })),
            "tokenize-flood" => {
                // One call after another with a text far too long to tokenize in time.
                let text =
                    "The residual stream carries everything. ".repeat(TOKENIZE_FLOOD_BYTES / 40);
                loop {
                    if let Err(e) = model::tokenize(&text) {
                        report::warn(&e.to_string());
                    }
                }
            }
            "huge-forward" => {
                // One forward pass over a batch that takes many seconds.
                let n_ctx = model::info()?.n_ctx as usize;
                let tokens = Tensor::zeros(&[HUGE_BATCH, n_ctx])?.to_dtype(DType::I32)?;
                let out = Forward::new(&tokens).run()?;
                Ok(json!({ "logits": out.logits.is_some() }))
            }
            other => Err(Error::invalid(
                "misbehave",
                format!("unknown behaviour `{other}`"),
            )),
        }
    }
}

export_plugin!(Misbehave);
