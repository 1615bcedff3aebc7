//! A plugin that misbehaves on purpose, one way per `behaviour`, so the tests can check that the host
//! contains it: the run fails with a clear error, its events are kept, and the host carries on.

use std::hint::black_box;

use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Params {
    behaviour: String,
}

struct Misbehave;

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
                "ok | spin | memory-bomb | recursion | panic | over-quota | escape | flood | bad-op | snoop",
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
            other => Err(Error::invalid(
                "misbehave",
                format!("unknown behaviour `{other}`"),
            )),
        }
    }
}

export_plugin!(Misbehave);
