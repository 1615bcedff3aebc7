//! The `loupe` command line.

mod bench;
mod bench_gemm;
mod bench_plugin;
mod bench_reload;
mod dash;
mod doctor;
mod edits;
mod kernels;
mod models;
mod plugins;
mod run;
mod tokenize;
mod trace;
mod watch;

use anyhow::Result;
use clap::{Parser, Subcommand};
use loupe_kernels::Device;

/// loupe: a plugin host for model-analysis (mechanistic interpretability) experiments.
#[derive(Parser)]
#[command(name = "loupe", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the [[run]]s of an experiment file: plugins on models and data, headless.
    Run(run::RunArgs),
    /// Keep running: hot-load the plugins of a directory and run experiment files dropped into another.
    Watch(watch::WatchArgs),
    /// The terminal dashboard: plugins, runs, live metrics and the device, over the same host as watch.
    Dash(dash::DashArgs),
    /// List installed plugins, or check a plugin file without running it.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Run a model on token ids or text and save its logits and hooked activations to a safetensors file.
    Trace(trace::TraceArgs),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::TokenizeArgs),
    /// Inspect model directories or create random ones.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Measure speed and memory.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print what this machine offers: backend, GPUs, NVRTC, cache directories.
    Doctor,
    /// Work with the CUDA kernel sources.
    #[command(subcommand)]
    Kernels(kernels::KernelsCommand),
}

impl Cli {
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Run(args) => run::run(args),
            Command::Watch(args) => watch::run(args),
            Command::Dash(args) => dash::run(args),
            Command::Plugins(cmd) => plugins::run(cmd),
            Command::Trace(args) => trace::run(args),
            Command::Tokenize(args) => tokenize::run(args),
            Command::Models(cmd) => models::run(cmd),
            Command::Bench(cmd) => bench::run(cmd),
            Command::Doctor => doctor::run(),
            Command::Kernels(cmd) => kernels::run(cmd),
        }
    }
}

/// Resolves `--device auto|cpu|cuda[:N]`. `auto` says in one line on stderr which it took and why.
pub fn resolve_device(choice: &str) -> Result<Device> {
    crate::device::resolve_device(choice).map_err(|e| anyhow::anyhow!("--{e}"))
}

/// Parses `--ids 1,2,3`.
pub fn parse_ids(list: &str) -> Result<Vec<u32>> {
    list.split(',')
        .map(|s| {
            let s = s.trim();
            s.parse::<u32>().map_err(|_| {
                anyhow::anyhow!("--ids: `{s}` is not a token id (expected e.g. --ids 464,3290,318)")
            })
        })
        .collect()
}
