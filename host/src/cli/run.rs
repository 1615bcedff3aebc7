//! `loupe run EXP.toml`: headless runs of an experiment file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use clap::Args;

use crate::plugin::PluginEngine;
use crate::runner::{
    Cancellations, Experiment, HumanConsole, JsonLines, Override, Runner, RunnerOptions, SharedSink,
};

#[derive(Args)]
#[command(after_help = "\
An experiment file holds one or more [[run]] tables:

  [[run]]
  name = \"mlp0\"                      # optional; names the run directory
  plugin = \"act-stats\"               # a name in --plugins, or a path to a .wasm
  model = \"models/tiny-gpt2\"         # a Hugging Face directory (paths are relative to the file)
  data = \"corpus.txt\"                # or { path = \"c.jsonl\", seq_len = 64, bos = true, pack = true, field = \"text\" }
                                     # named: { acts = { path = \"r.safetensors\", tensor = \"x\" }, sae = \"saes/topk\" }
  device = \"auto\"                    # auto | cpu | cuda[:N]
  seed = 0
  resume = \"runs/<id>\"               # optional: continue that run from its artifacts/checkpoint/
  [run.params]                       # the plugin's parameters: `loupe plugins list` shows them
  hook = \"blocks.0.mlp.hook_post\"
  [run.limits]                       # optional: memory_mb (plugin memory), time_s, tensor_mb,
  time_s = 600                       #   stop_grace_s (time to save after Ctrl-C; default 10)

Each run writes <out>/<id>/: config.json (resolved, with the plugin's sha256 and API version),
events.jsonl, artifacts/ and summary.json. Every run is checked (plugin, parameters, device, model,
datasets, hook names) before any starts; a file with a problem is refused whole. Ctrl-C (or SIGTERM)
asks the runs going to stop: a plugin that watches for it saves what it has (the sae plugin a partial
SAE and a checkpoint) within stop_grace_s, any other stops at its next check; each ends with its
summary.json (\"ended\": \"cancelled\"). A second Ctrl-C stops at once. The exit code is 0 only if
every run succeeded.")]
pub struct RunArgs {
    /// The experiment file.
    experiment: PathBuf,
    /// Print every event as a JSON line on stdout instead of readable progress.
    #[arg(long)]
    json: bool,
    /// Device for every run, overriding the file: auto, cpu or cuda[:N].
    #[arg(long)]
    device: Option<String>,
    /// Directory of plugin .wasm files [default: plugins/dist in the nearest folder above the
    /// experiment file that has one, else in the checkout loupe was built in].
    #[arg(long, env = "LOUPE_PLUGINS")]
    plugins: Option<PathBuf>,
    /// Where run directories are created.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Override a plugin parameter in every run that has it: --set top_k=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Check every run — plugin, parameters, device, model, datasets, hook names — and start none.
    /// (`loupe run` always checks them all before starting any.)
    #[arg(long)]
    check: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    let overrides = args
        .set
        .iter()
        .map(|s| s.parse::<Override>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let experiment = Experiment::load(&args.experiment).map_err(anyhow::Error::msg)?;
    let cancellations = Arc::new(Cancellations::new());
    let engine = PluginEngine::new()?;
    let sink: SharedSink = if args.json {
        Arc::new(Mutex::new(JsonLines))
    } else {
        Arc::new(Mutex::new(HumanConsole::new()))
    };
    let mut runner = Runner::new(
        &engine,
        RunnerOptions {
            plugins_dir: args.plugins.unwrap_or_else(|| {
                super::paths::default_plugins_dir(Some(super::paths::folder_of(&args.experiment)))
            }),
            out_dir: args.out,
            device: args.device,
            overrides,
            sinks: vec![sink],
            registry: None,
            cancellations: Some(cancellations.clone()),
            slots: None,
        },
    );
    if args.check {
        let runs = runner
            .check_experiment(&experiment)
            .map_err(anyhow::Error::msg)?;
        for line in &runs {
            println!("ok  {line}");
        }
        println!(
            "{}: all {} run(s) can start (none was started)",
            args.experiment.display(),
            runs.len()
        );
        return Ok(());
    }
    #[cfg(unix)]
    super::interrupt::stop_runs_on_signals(cancellations.clone())?;
    let reports = runner
        .run_experiment(&experiment)
        .map_err(anyhow::Error::msg)?;
    let failed: Vec<_> = reports.iter().filter(|r| !r.ok).collect();
    if !args.json {
        println!(
            "{} of {} runs succeeded; results in {}",
            reports.len() - failed.len(),
            reports.len(),
            reports
                .first()
                .and_then(|r| r.dir.parent())
                .map_or("runs".into(), |d| d.display().to_string())
        );
    }
    if cancellations.all_cancelled() {
        bail!(
            "interrupted: {} of {} runs finished before the stop; each run's summary.json says how it ended",
            reports.len() - failed.len(),
            reports.len()
        );
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed
            .iter()
            .map(|r| format!("{} ({})", r.name, r.dir.display()))
            .collect();
        bail!("{} run(s) failed: {}", failed.len(), names.join(", "));
    }
    Ok(())
}
