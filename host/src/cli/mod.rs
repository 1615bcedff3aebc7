//! The `loupe` command line.

mod bench;
mod bench_gemm;
mod bench_plugin;
mod bench_reload;
mod bench_vision;
mod classify;
mod dash;
mod doctor;
mod edits;
mod grad;
mod images;
mod input;
#[cfg(unix)]
mod interrupt;
mod kernels;
mod models;
mod paths;
mod plugins;
mod run;
mod selftest;
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
    /// Run a model on token ids or text (a vision model: images) and save its logits and hooked
    /// activations to a safetensors file.
    Trace(trace::TraceArgs),
    /// Gradients of a cross-entropy or of a cotangent at a hook with respect to the input (tokens'
    /// embeddings or pixels), hooks and weights, as safetensors.
    Grad(grad::GradArgs),
    /// The top classes and their probabilities of an image classifier (ViT, DeiT) for some images.
    Classify(classify::ClassifyArgs),
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
    /// Check this machine: every engine op on the CPU and the GPU compared, the reference GPT-2
    /// against Hugging Face transformers on each, and short GEMM and forward-pass timings, in one table.
    Selftest(selftest::SelftestArgs),
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
            Command::Grad(args) => grad::run(args),
            Command::Classify(args) => classify::run(args),
            Command::Tokenize(args) => tokenize::run(args),
            Command::Models(cmd) => models::run(cmd),
            Command::Bench(cmd) => bench::run(cmd),
            Command::Doctor => doctor::run(),
            Command::Selftest(args) => selftest::run(args),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without help:\n{}",
            missing.join("\n")
        );
    }
}
