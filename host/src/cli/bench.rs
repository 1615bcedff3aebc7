use std::path::PathBuf;
use std::time::Instant;

use crate::model::{Gpt2, GradSpec, Objective, RunSpec};
use crate::selftest::timing::{forward_seconds, sorted_seconds, spread_ids};
use anyhow::Result;
use clap::{Args, Subcommand};
use loupe_kernels::{StopSignal, Tensor};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Forward-pass throughput (tokens/s) and peak memory on random token ids.
    Forward(ForwardArgs),
    /// Matrix-multiply throughput (TFLOP/s) of the engine's kernels: f32, or bf16/f16 on tensor cores.
    Gemm(super::bench_gemm::GemmArgs),
    /// Plugin overheads: the cost of a host call, the share of an op loop spent crossing into the host,
    /// cold-compile and cached load times. Needs the host-calls plugin (bench/plugin_overhead.sh).
    Plugin(super::bench_plugin::PluginBenchArgs),
    /// Hot-loading latency: a plugin file renamed into a watched directory until it is in service,
    /// cold compile and cached.
    Reload(super::bench_reload::ReloadArgs),
    /// A vision model's forward pass, or its input gradient (`--grad`), in images/s and peak memory.
    Vision(super::bench_vision::VisionArgs),
}

#[derive(Args)]
pub struct ForwardArgs {
    /// Hugging Face model directory.
    #[arg(long)]
    model: PathBuf,
    /// Sequences per pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence (at most the model's context length).
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Hook name or glob to capture on every pass (`*` for all).
    #[arg(long, value_name = "GLOB")]
    capture: Vec<String>,
    /// Timed passes.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed passes first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Time forward + backward instead: the gradients of the summed next-token cross-entropy with
    /// respect to every parameter (what training or attribution over weights needs).
    #[arg(long, conflicts_with = "capture")]
    grad: bool,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Seconds of each timed forward + backward pass, sorted, after `warmup` untimed ones.
fn grad_seconds(model: &Gpt2, ids: &Tensor, warmup: usize, iters: usize) -> Result<Vec<f64>> {
    let grad = GradSpec {
        objective: Objective::CrossEntropy { labels: None },
        wrt: vec!["*.weight".into(), "*.bias".into()],
    };
    let spec = RunSpec {
        skip_logits: true,
        ..Default::default()
    };
    sorted_seconds(warmup, iters, || {
        let out = model.forward_with_grad(ids, &spec, &grad, &StopSignal::never())?;
        std::hint::black_box(out.grads.len());
        ids.device().synchronize()?;
        Ok(())
    })
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let args = match cmd {
        BenchCommand::Forward(args) => args,
        BenchCommand::Plugin(args) => return super::bench_plugin::run(args),
        BenchCommand::Reload(args) => return super::bench_reload::run(args),
        BenchCommand::Gemm(args) => return super::bench_gemm::run(args),
        BenchCommand::Vision(args) => return super::bench_vision::run(args),
    };
    let device = super::resolve_device(&args.device)?;
    let start = Instant::now();
    let model = Gpt2::load(&args.model, device)?;
    let load_s = start.elapsed().as_secs_f64();
    let rss_after_load = memory_kib("VmRSS");

    let ids = spread_ids(&model, args.batch, args.seq)?;
    let spec = RunSpec {
        capture: args.capture.clone(),
        ..Default::default()
    };
    let times = if args.grad {
        grad_seconds(&model, &ids, args.warmup, args.iters)?
    } else {
        forward_seconds(&model, &ids, &spec, args.warmup, args.iters)?
    };
    let median = times[times.len() / 2];
    let tokens = (args.batch * args.seq) as f64;
    println!("model:          {}", args.model.display());
    println!(
        "device:         {device}, {} threads",
        rayon::current_num_threads()
    );
    println!("batch × seq:    {} × {}", args.batch, args.seq);
    println!(
        "capture:        {}",
        if args.capture.is_empty() {
            "none".to_string()
        } else {
            args.capture.join(" ")
        }
    );
    println!(
        "load:           {load_s:.2} s, RSS {:.0} MiB",
        rss_after_load / 1024.0
    );
    println!(
        "{}median {:.1} ms, best {:.1} ms over {} passes",
        if args.grad {
            "forward+backward: "
        } else {
            "forward:        "
        },
        median * 1e3,
        times[0] * 1e3,
        times.len()
    );
    println!("tokens/s:       {:.0}", tokens / median);
    println!("peak RSS:       {:.0} MiB", memory_kib("VmHWM") / 1024.0);
    if let loupe_kernels::Device::Cuda(ordinal) = device
        && let Some(mem) = loupe_kernels::cuda::memory_use(ordinal)
    {
        println!(
            "GPU memory:     peak {:.0} MiB held by loupe of {:.0} MiB",
            mem.peak as f64 / (1u64 << 20) as f64,
            mem.total as f64 / (1u64 << 20) as f64
        );
    }
    Ok(())
}

/// A field of /proc/self/status in KiB (0 where unavailable).
pub(super) fn memory_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}
