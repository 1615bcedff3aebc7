//! `loupe bench reload`: how long hot loading takes, from a plugin file renamed into a watched
//! directory to the plugin being in service — through the same watcher, change filter and registry
//! as `loupe watch` — with a cold compile (an empty compiled-code cache) and with the cache warm.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::plugin::{PluginEngine, PluginRegistry, RegistryEvent};
use crate::watch::{Change, DirWatcher, changes};

#[derive(Args)]
pub struct ReloadArgs {
    /// Plugin files to time (repeatable).
    #[arg(long = "plugin", required = true)]
    plugins: Vec<PathBuf>,
    /// Timed reloads per plugin and cache state (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The watcher's quiet period, as `loupe watch --debounce-ms`.
    #[arg(long, default_value_t = super::watch::DEFAULT_DEBOUNCE_MS)]
    debounce_ms: u64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// This process's scratch directory `name` under the system's temporary directory.
fn scratch_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loupe-bench-reload-{}-{name}", std::process::id()))
}

/// A fresh, empty scratch directory `name`.
fn scratch(name: &str) -> Result<PathBuf> {
    let dir = scratch_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Seconds from renaming `bytes` into a watched directory to the plugin being loaded.
fn time_reload(engine: &PluginEngine, bytes: &[u8], debounce: Duration) -> Result<f64> {
    let dir = scratch("plugins")?.canonicalize()?;
    let watcher = DirWatcher::new(&[&dir], debounce).map_err(anyhow::Error::msg)?;
    let mut registry = PluginRegistry::new();
    let (part, dest) = (dir.join(".plugin.wasm.part"), dir.join("plugin.wasm"));
    std::fs::write(&part, bytes)?;
    // Let the write's own events pass before the clock starts.
    while watcher
        .next(debounce * 4)
        .map_err(anyhow::Error::msg)?
        .is_some()
    {}
    let start = Instant::now();
    std::fs::rename(&part, &dest)?;
    loop {
        let events = watcher
            .next(Duration::from_secs(10))
            .map_err(anyhow::Error::msg)?
            .context("no file event within 10 s of the rename")?;
        for change in changes(&events, "wasm") {
            if let Change::Ready(path) = change {
                match registry.load(engine, &path) {
                    RegistryEvent::Loaded { .. } => {
                        let elapsed = start.elapsed().as_secs_f64();
                        std::fs::remove_dir_all(&dir)?;
                        return Ok(elapsed);
                    }
                    other => bail!("{}", other.describe()),
                }
            }
        }
    }
}

fn report(plugin: &Path, state: &str, times: Vec<f64>) {
    println!(
        "{}: {state}: rename → ready {:.1} ms (median of {}; min {:.1}, max {:.1})",
        plugin.display(),
        median(times.clone()) * 1e3,
        times.len(),
        times.iter().cloned().fold(f64::INFINITY, f64::min) * 1e3,
        times.iter().cloned().fold(0.0, f64::max) * 1e3
    );
}

pub fn run(args: ReloadArgs) -> Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let debounce = Duration::from_millis(args.debounce_ms);
    println!("debounce {} ms", args.debounce_ms);
    for plugin in &args.plugins {
        let bytes =
            std::fs::read(plugin).with_context(|| format!("{}: cannot read", plugin.display()))?;
        let mut cold = Vec::new();
        for _ in 0..args.rounds {
            let engine = PluginEngine::with_cache_dir(Some(scratch("cold-cache")?))?;
            cold.push(time_reload(&engine, &bytes, debounce)?);
        }
        report(plugin, "cold (compiled)", cold);
        let warm = PluginEngine::with_cache_dir(Some(scratch("warm-cache")?))?;
        time_reload(&warm, &bytes, debounce)?;
        let cached = (0..args.rounds)
            .map(|_| time_reload(&warm, &bytes, debounce))
            .collect::<Result<Vec<_>>>()?;
        report(plugin, "cached", cached);
    }
    for name in ["plugins", "cold-cache", "warm-cache"] {
        let _ = std::fs::remove_dir_all(scratch_path(name));
    }
    Ok(())
}
