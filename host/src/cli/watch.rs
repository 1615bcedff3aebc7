//! `loupe watch`: a headless host that keeps running, hot-loads the plugin files of one directory and
//! runs every experiment file dropped into another.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use super::run::DEFAULT_PLUGINS_DIR;
use crate::plugin::{PluginEngine, PluginRegistry, RegistryEvent};
use crate::runner::{Experiment, HumanConsole, JsonLines, Runner, RunnerOptions, SharedSink};
use crate::watch::{Change, DirWatcher, changes};

/// Short: only a completed write (the writer closing the file) or a rename makes a file ready, so the
/// quiet period only merges bursts of events and is not what keeps half-written files out.
pub const DEFAULT_DEBOUNCE_MS: u64 = 25;

#[derive(Args)]
#[command(after_help = "\
Plugins: every .wasm file in --plugins is loaded at start, then reloaded when it changes. Copy or
build a file into the directory, or better, write it under a hidden name (.name.wasm.part) and rename
it into place. A file that fails to load is reported and the version loaded from it before stays in
service; a removed file takes its plugin out of service; runs already going keep the plugin they
started with.

Experiments: every .toml file written or renamed into --experiments afterwards is run once (files
already there at start are not), --jobs files at a time, with their runs' events printed as `loupe run`
prints them. Stop with Ctrl-C.")]
pub struct WatchArgs {
    /// Directory of plugin .wasm files to keep loaded.
    #[arg(long, default_value = DEFAULT_PLUGINS_DIR, env = "LOUPE_PLUGINS")]
    plugins: PathBuf,
    /// Directory to watch for experiment files.
    #[arg(long)]
    experiments: PathBuf,
    /// Where run directories are created.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Device for every run, overriding the files: auto, cpu or cuda[:N].
    #[arg(long)]
    device: Option<String>,
    /// Print every event as a JSON line on stdout instead of readable lines.
    #[arg(long)]
    json: bool,
    /// Experiment files run at the same time (each runs its [[run]]s in turn).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// How long a file must stay quiet before it is taken, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_DEBOUNCE_MS)]
    debounce_ms: u64,
}

/// Prints one plugin event: a readable line on stderr, or a JSON line on stdout.
fn report(event: &RegistryEvent, json: bool) {
    if json {
        println!("{}", event.to_json());
    } else {
        eprintln!("loupe watch: {}", event.describe());
    }
}

fn say(message: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "event": "watch", "message": message })
        );
    } else {
        eprintln!("loupe watch: {message}");
    }
}

fn check_dir(dir: &Path, flag: &str) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "--{flag} {}: not a directory; create it or point --{flag} at one",
            dir.display()
        );
    }
    Ok(())
}

pub fn run(args: WatchArgs) -> Result<()> {
    check_dir(&args.plugins, "plugins")?;
    check_dir(&args.experiments, "experiments")?;
    // Watched paths are compared with the events' absolute paths.
    let plugins_dir = args.plugins.canonicalize()?;
    let experiments_dir = args.experiments.canonicalize()?;
    let engine = PluginEngine::new()?;
    let registry = Arc::new(Mutex::new(PluginRegistry::new()));
    let watcher = DirWatcher::new(
        &[&plugins_dir, &experiments_dir],
        Duration::from_millis(args.debounce_ms),
    )
    .map_err(anyhow::Error::msg)?;
    for event in registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .scan(&engine, &plugins_dir)
    {
        report(&event, args.json);
    }
    say(
        &format!(
            "watching {} for plugins and {} for experiments",
            plugins_dir.display(),
            experiments_dir.display()
        ),
        args.json,
    );

    let (queue, experiments) = channel::<PathBuf>();
    std::thread::scope(|scope| -> Result<()> {
        let engine = &engine;
        let runner_registry = registry.clone();
        let args = &args;
        scope.spawn(move || {
            for path in experiments {
                run_experiment(engine, &runner_registry, args, &plugins_dir, &path);
            }
        });
        watch_loop(
            &watcher,
            engine,
            &registry,
            &experiments_dir,
            &queue,
            args.json,
        )
    })
}

/// Hands file changes to the registry (plugins) and the run queue (experiments) until watching fails.
fn watch_loop(
    watcher: &DirWatcher,
    engine: &PluginEngine,
    registry: &Mutex<PluginRegistry>,
    experiments_dir: &Path,
    queue: &Sender<PathBuf>,
    json: bool,
) -> Result<()> {
    loop {
        let Some(events) = watcher
            .next(Duration::from_secs(1))
            .map_err(anyhow::Error::msg)?
        else {
            continue;
        };
        for change in changes(&events, "wasm") {
            let mut registry = registry.lock().unwrap_or_else(|e| e.into_inner());
            let event = match &change {
                Change::Ready(path) => Some(registry.load(engine, path)),
                Change::Gone(path) => registry.remove(path),
            };
            if let Some(event) = event {
                report(&event, json);
            }
        }
        for change in changes(&events, "toml") {
            if let Change::Ready(path) = change
                && path.parent() == Some(experiments_dir)
            {
                say(&format!("queued {}", path.display()), json);
                queue.send(path)?;
            }
        }
    }
}

fn run_experiment(
    engine: &PluginEngine,
    registry: &Arc<Mutex<PluginRegistry>>,
    args: &WatchArgs,
    plugins_dir: &Path,
    path: &Path,
) {
    let experiment = match Experiment::load(path) {
        Ok(e) => e,
        Err(e) => return say(&format!("not run: {e}"), args.json),
    };
    let sink: SharedSink = if args.json {
        Arc::new(Mutex::new(JsonLines))
    } else {
        Arc::new(Mutex::new(HumanConsole::new()))
    };
    let mut runner = Runner::new(
        engine,
        RunnerOptions {
            plugins_dir: plugins_dir.to_path_buf(),
            out_dir: args.out.clone(),
            device: args.device.clone(),
            overrides: Vec::new(),
            sinks: vec![sink],
            registry: Some(registry.clone()),
        },
    );
    match runner.run_experiment(&experiment) {
        Ok(reports) => {
            let ok = reports.iter().filter(|r| r.ok).count();
            say(
                &format!(
                    "{}: {ok} of {} runs succeeded",
                    path.display(),
                    reports.len()
                ),
                args.json,
            );
        }
        Err(e) => say(&format!("{}: not run: {e}", path.display()), args.json),
    }
}
