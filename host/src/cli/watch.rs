//! `loupe watch`: a headless host that keeps running, hot-loads the plugin files of one directory and
//! runs every experiment file dropped into another, printing the host's event stream.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;

use crate::events::EventSink;
use crate::plugin::PluginEngine;
use crate::runner::{Cancellations, HumanConsole, JsonLines};
use crate::text::{shown, terminal_json};
use crate::watch::{Emit, HostEvent, ServiceConfig, serve};

/// Short: only a completed write (the writer closing the file) or a rename makes a file ready, so the
/// quiet period only merges bursts of events and is not what keeps half-written files out.
pub const DEFAULT_DEBOUNCE_MS: u64 = 25;

/// What `loupe watch` and `loupe dash` share: the directories, the output and the workers.
#[derive(Args)]
pub struct HostArgs {
    /// Directory of plugin .wasm files to keep loaded [default: plugins/dist in the nearest folder
    /// above --experiments that has one, else in the checkout loupe was built in].
    #[arg(long, env = "LOUPE_PLUGINS")]
    pub plugins: Option<std::path::PathBuf>,
    /// Directory to watch for experiment files.
    #[arg(long)]
    pub experiments: std::path::PathBuf,
    /// Where run directories are created.
    #[arg(long, default_value = "runs")]
    pub out: std::path::PathBuf,
    /// Device for every run, overriding the files: auto, cpu or cuda[:N].
    #[arg(long)]
    pub device: Option<String>,
    /// Runs at the same time on each device (an experiment file's own runs go in turn).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// How long a file must stay quiet before it is taken, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_DEBOUNCE_MS)]
    pub debounce_ms: u64,
    /// Run an experiment file again when it is edited after it ran (by default only a new drop of
    /// the file runs; a write that leaves it unchanged never does).
    #[arg(long)]
    pub rerun_on_change: bool,
}

impl HostArgs {
    /// `--plugins`, or where plugins are found from the watched folder.
    pub fn plugins_dir(&self) -> std::path::PathBuf {
        self.plugins
            .clone()
            .unwrap_or_else(|| super::paths::default_plugins_dir(Some(&self.experiments)))
    }

    /// Checks the directories and gives the service's configuration (absolute paths: they are
    /// compared with the watcher's).
    pub fn config(&self) -> Result<ServiceConfig> {
        if self.jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        // A device that cannot be had is refused now, not at the first dropped file.
        if let Some(device) = &self.device {
            crate::device::resolve_device(device).map_err(|e| anyhow::anyhow!("--{e}"))?;
        }
        Ok(ServiceConfig {
            cancellations: Arc::new(Cancellations::new()),
            plugins_dir: checked_dir(&self.plugins_dir(), "plugins")?,
            experiments_dir: checked_dir(&self.experiments, "experiments")?,
            out_dir: self.out.clone(),
            device: self.device.clone(),
            jobs: self.jobs,
            debounce: Duration::from_millis(self.debounce_ms),
            rerun_on_change: self.rerun_on_change,
        })
    }
}

fn checked_dir(dir: &Path, flag: &str) -> Result<std::path::PathBuf> {
    if !dir.is_dir() {
        bail!(
            "--{flag} {}: not a directory; create it or point --{flag} at one",
            dir.display()
        );
    }
    Ok(dir.canonicalize()?)
}

#[derive(Args)]
#[command(after_help = "\
Plugins: every .wasm file in --plugins is loaded at start, then reloaded when it changes. Copy or
build a file into the directory, or better, write it under a hidden name (.name.wasm.part) and rename
it into place. A file that fails to load is reported and the version loaded from it before stays in
service; a removed file takes its plugin out of service; runs already going keep the plugin they
started with.

Experiments: every .toml file written or renamed into --experiments afterwards is run once (files
already there at start are not), with up to --jobs runs at once on each device (the rest wait, queued),
their events printed as `loupe run` prints them. Ctrl-C (or SIGTERM) cancels the runs going — each
ends at its next check with its summary.json — and stops; a second Ctrl-C stops at once.")]
pub struct WatchArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Print every event as a JSON line on stdout instead of readable lines.
    #[arg(long)]
    json: bool,
}

/// One line for the host's own events (plugins, the queue), as text or JSON.
pub fn describe(event: &HostEvent) -> Option<(String, serde_json::Value)> {
    let note = |message: String| {
        let json = serde_json::json!({ "event": "watch", "message": message });
        Some((message, json))
    };
    match event {
        HostEvent::Plugin(e) => Some((e.describe(), e.to_json())),
        HostEvent::Queued(path) => note(format!("queued {}", path.display())),
        HostEvent::ExperimentDone {
            path,
            succeeded,
            total,
        } => note(format!(
            "{}: {succeeded} of {total} runs succeeded",
            path.display()
        )),
        HostEvent::ExperimentFailed { path, error } => {
            note(format!("{}: not run: {error}", path.display()))
        }
        HostEvent::Note(message) => note(message.clone()),
        HostEvent::Run { .. } => None,
    }
}

pub fn run(args: WatchArgs) -> Result<()> {
    let cfg = args.host.config()?;
    let engine = PluginEngine::new()?;
    let json = args.json;
    let runs: Mutex<Box<dyn EventSink>> = Mutex::new(if json {
        Box::new(JsonLines)
    } else {
        Box::new(HumanConsole::new())
    });
    let emit: Emit = Arc::new(move |event: HostEvent| {
        if let HostEvent::Run { event: e, .. } = &event {
            runs.lock().unwrap_or_else(|p| p.into_inner()).emit(e);
        } else if let Some((text, value)) = describe(&event) {
            // Plugin names, versions and load errors are the plugin's text: escaped for the terminal.
            if json {
                println!("{}", terminal_json(&value));
            } else {
                eprintln!("loupe watch: {}", shown(&text));
            }
        }
    });
    // Experiment files queued or running, so that stopping can wait for their summaries.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = in_flight.clone();
    let emit: Emit = Arc::new(move |event: HostEvent| {
        match &event {
            HostEvent::Queued(_) => {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            HostEvent::ExperimentDone { .. } | HostEvent::ExperimentFailed { .. } => {
                counted.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        }
        emit(event)
    });
    let (submit, queue) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    stop_on_signals(cfg.cancellations.clone(), stop.clone())?;
    let served = serve(Arc::new(cfg), Arc::new(engine), emit, submit, queue, &stop);
    // Stopped by a signal: the runs going were cancelled; wait for each file's summaries.
    let deadline = Instant::now() + STOP_GRACE;
    while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if in_flight.load(Ordering::SeqCst) > 0 {
        eprintln!(
            "loupe watch: runs still going after {} s were abandoned; their directories keep what they wrote",
            STOP_GRACE.as_secs()
        );
    }
    served.map_err(anyhow::Error::msg)
}

/// How long stopping waits for cancelled runs to end and write their summaries.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The first Ctrl-C or SIGTERM asks every run to stop (each saves what it has within its grace period
/// and ends with its summary) and stops watching; a second ends the grace periods at once, and the
/// process exits a few seconds later if the runs have not ended by then.
#[cfg(unix)]
fn stop_on_signals(cancellations: Arc<Cancellations>, stop: Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("loupe-signals".into())
        .spawn(move || {
            for (seen, _) in signals.forever().enumerate() {
                if seen > 1 {
                    std::process::exit(130);
                }
                if seen == 1 {
                    eprintln!("loupe watch: stopping at once");
                    cancellations.stop_all_now();
                    std::thread::spawn(|| {
                        std::thread::sleep(Duration::from_secs(5));
                        std::process::exit(130);
                    });
                    continue;
                }
                let going = cancellations.cancel_all();
                stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "loupe watch: stopping; {going} run(s) save what they have and end with their summaries \
                     (again to stop at once)"
                );
            }
        })?;
    Ok(())
}
