//! `loupe bench plugin`: what running a method as a plugin costs over running it natively.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use loupe_kernels::{Device, Tensor};
use serde_json::json;

use crate::plugin::{Limits, LoadedPlugin, PluginEngine, RunContext};

#[derive(Args)]
pub struct PluginBenchArgs {
    /// The host-calls plugin (tests/plugins/host-calls, built by bench/plugin_overhead.sh).
    #[arg(long)]
    plugin: PathBuf,
    /// Host calls per timed run.
    #[arg(long, default_value_t = 1_000_000)]
    calls: usize,
    /// Steps of the op loop per timed run.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Rows, input and hidden width of the op loop's tensors.
    #[arg(long, num_args = 3, default_values_t = [256, 128, 512], value_names = ["ROWS", "D_IN", "D_HIDDEN"])]
    shape: Vec<usize>,
    /// Run only the op loop, once, on one side (`plugin` or `native`), and print nothing: for counting
    /// instructions with `valgrind --tool=callgrind`.
    #[arg(long, hide = true, value_parser = ["plugin", "native"])]
    only: Option<String>,
    /// Timed repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 9)]
    repeat: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Seconds for one run of the plugin with `params`.
fn time_run(
    engine: &PluginEngine,
    plugin: &LoadedPlugin,
    params: serde_json::Value,
) -> Result<f64> {
    let start = Instant::now();
    let (_, result) = plugin.run(
        engine,
        RunContext::inert(),
        &Limits::default(),
        &params.to_string(),
    );
    let seconds = start.elapsed().as_secs_f64();
    if let Err(e) = result {
        bail!("the host-calls plugin failed: {e}");
    }
    Ok(seconds)
}

/// The plugin's op loop, called natively on the engine.
fn native_op_loop(steps: usize, rows: usize, d_in: usize, d_hidden: usize) -> Result<f64> {
    let dev = Device::Cpu;
    let x = Tensor::randn([rows, d_in], 0.0, 1.0, 1, dev)?;
    let w = Tensor::randn([d_in, d_hidden], 0.0, 0.05, 2, dev)?;
    let b = Tensor::zeros([d_hidden], dev)?;
    let start = Instant::now();
    let mut loss = 0.0;
    for _ in 0..steps {
        let z = x.linear(&w, Some(&b))?.relu()?;
        let x_hat = z.matmul_t(&w, false, true)?;
        let err = x_hat.sub(&x)?;
        let sq = err.mul(&err)?;
        loss = sq.reshape([sq.numel()])?.mean(0, false)?.to_scalar_f32()?;
    }
    std::hint::black_box(loss);
    Ok(start.elapsed().as_secs_f64())
}

pub fn run(args: PluginBenchArgs) -> Result<()> {
    let [rows, d_in, d_hidden] = [args.shape[0], args.shape[1], args.shape[2]];
    let repeat = args.repeat.max(1);
    if let Some(side) = args.only.as_deref() {
        if side == "native" {
            native_op_loop(args.steps, rows, d_in, d_hidden)?;
        } else {
            let engine = PluginEngine::new()?;
            let plugin = engine.load(&args.plugin)?;
            let params = json!({ "mode": "op-loop", "n": args.steps, "rows": rows, "d_in": d_in, "d_hidden": d_hidden });
            time_run(&engine, &plugin, params)?;
        }
        return Ok(());
    }

    // Cold: no cache, so every load compiles. Cached: a fresh cache, filled by the first load.
    let cold_engine = PluginEngine::with_cache_dir(None)?;
    let cold: Vec<f64> = (0..repeat)
        .map(|_| {
            cold_engine
                .load(&args.plugin)
                .map(|p| p.load_time.as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    let cache = tempfile_dir()?;
    let engine = PluginEngine::with_cache_dir(Some(cache.clone()))?;
    let plugin = engine.load(&args.plugin)?;
    let cached: Vec<f64> = (0..repeat)
        .map(|_| engine.load(&args.plugin).map(|p| p.load_time.as_secs_f64()))
        .collect::<Result<_, _>>()?;
    let _ = std::fs::remove_dir_all(&cache);

    let params = |mode: &str, n: usize| json!({ "mode": mode, "n": n, "rows": rows, "d_in": d_in, "d_hidden": d_hidden });
    // A call's cost: runs with and without the calls, the difference spread over the calls.
    let mut per_call = Vec::new();
    for _ in 0..repeat {
        let empty = time_run(&engine, &plugin, params("calls", 0))?;
        let full = time_run(&engine, &plugin, params("calls", args.calls))?;
        per_call.push((full - empty) / args.calls as f64);
    }
    // The op loop, in the plugin (less its setup) and natively.
    time_run(&engine, &plugin, params("op-loop", args.steps))?;
    // Plugin and native run in turns, and the ratio is taken per round: the machine's drift between
    // rounds then cancels out.
    let mut in_plugin = Vec::new();
    let mut native = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..repeat {
        // Which goes first alternates, so that neither profits from the other's warm caches.
        let native_first = round % 2 == 1;
        let mut n = if native_first {
            native_op_loop(args.steps, rows, d_in, d_hidden)?
        } else {
            0.0
        };
        let setup = time_run(&engine, &plugin, params("op-loop", 0))?;
        let p = time_run(&engine, &plugin, params("op-loop", args.steps))? - setup;
        if !native_first {
            n = native_op_loop(args.steps, rows, d_in, d_hidden)?;
        }
        in_plugin.push(p);
        native.push(n);
        ratios.push(p / n);
    }
    let (in_plugin, native, ratio) = (median(in_plugin), median(native), median(ratios));
    let call_ns = median(per_call) * 1e9;
    // Host calls per step: linear, relu, matmul, sub, mul, then reshape, mean and item for the loss,
    // and a handle drop for each of the seven tensors.
    let calls = 15.0 * args.steps as f64;
    println!(
        "plugin: {} ({} bytes)",
        args.plugin.display(),
        std::fs::metadata(&args.plugin)?.len()
    );
    println!(
        "cold load (compile + link + manifest): {:.1} ms",
        median(cold) * 1e3
    );
    println!(
        "cached load:                           {:.2} ms",
        median(cached) * 1e3
    );
    println!("host call (tensor.numel):              {call_ns:.0} ns");
    println!(
        "op loop, {} steps of [{rows}, {d_in}] x [{d_in}, {d_hidden}] (linear, relu, matmul, sub, mul, mean, item):",
        args.steps
    );
    println!(
        "  native {:.1} ms, plugin {:.1} ms (medians); plugin/native per round, median: {:+.2} %",
        native * 1e3,
        in_plugin * 1e3,
        100.0 * (ratio - 1.0)
    );
    println!(
        "  boundary cost: {calls:.0} host calls x {call_ns:.0} ns = {:.3} ms, {:.2} % of the native loop",
        calls * call_ns * 1e-6,
        100.0 * calls * call_ns * 1e-9 / native
    );
    Ok(())
}

/// A fresh directory for the benchmark's cache.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("loupe-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
