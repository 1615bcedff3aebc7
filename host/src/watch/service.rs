//! The long-running host behind `loupe watch` and `loupe dash`: keeps the plugins of a directory in
//! service as files change, runs the experiment files queued (dropped into a directory, or submitted by
//! the dashboard) on `jobs` workers, and reports everything as one stream of [`HostEvent`]s. Headless
//! mode prints that stream; the dashboard renders it: neither has logic of its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::inbox::{Decision, Inbox};
use super::{Change, DirWatcher, changes};
use crate::events::{Event, EventSink};
use crate::plugin::{
    PluginEngine, PluginRegistry, RegistryEvent, load_shared, remove_shared, scan_shared,
};
use crate::runner::{Cancellations, DeviceSlots, Experiment, Runner, RunnerOptions, SharedSink};

/// Something the host did.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// A plugin was loaded, failed to load, or was removed.
    Plugin(RegistryEvent),
    /// An experiment file is waiting for a worker.
    Queued(PathBuf),
    /// An event of a run of an experiment file (started, progress, metrics, logs, finished), as
    /// `loupe run` reports it.
    Run { experiment: PathBuf, event: Event },
    /// An experiment file's runs are over.
    ExperimentDone {
        path: PathBuf,
        succeeded: usize,
        total: usize,
    },
    /// An experiment file could not be run at all (unreadable, invalid, a bad override).
    ExperimentFailed { path: PathBuf, error: String },
    /// Anything else worth a line (what is watched).
    Note(String),
}

/// Where the stream goes.
pub type Emit = Arc<dyn Fn(HostEvent) + Send + Sync>;

pub struct ServiceConfig {
    /// Where the runs' cancel switches are kept (the dashboard flips them).
    pub cancellations: Arc<Cancellations>,
    pub plugins_dir: PathBuf,
    pub experiments_dir: PathBuf,
    pub out_dir: PathBuf,
    pub device: Option<String>,
    /// Runs at the same time on each device.
    pub jobs: usize,
    pub debounce: Duration,
    /// An experiment file edited after it ran runs again (otherwise only a new drop does).
    pub rerun_on_change: bool,
}

/// Run events of one experiment file, forwarded into the host's stream.
struct Forward {
    emit: Emit,
    experiment: PathBuf,
}

impl EventSink for Forward {
    fn emit(&mut self, event: &Event) {
        (self.emit)(HostEvent::Run {
            experiment: self.experiment.clone(),
            event: event.clone(),
        });
    }
}

/// Serves until `stop` is set: loads the plugins, then watches both directories and runs what is
/// queued on `queue` (the caller keeps `submit` to queue files of its own). Errors only when the
/// directories cannot be watched or the runtime cannot start.
///
/// The watch loop runs on the calling thread; a tokio runtime dispatches the queue, each experiment
/// file on a blocking task of its own (a run is blocking WebAssembly and engine work), and the device
/// slots bound how many runs go at once.
pub fn serve(
    cfg: Arc<ServiceConfig>,
    engine: Arc<PluginEngine>,
    emit: Emit,
    submit: UnboundedSender<PathBuf>,
    queue: UnboundedReceiver<PathBuf>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let registry = Arc::new(Mutex::new(PluginRegistry::new()));
    let watcher = DirWatcher::new(&[&cfg.plugins_dir, &cfg.experiments_dir], cfg.debounce)?;
    // Loading runs plugin code: it happens outside the registry's lock, so runs looking up a plugin
    // never wait for a slow manifest.
    let scanned = scan_shared(&registry, &engine, &cfg.plugins_dir);
    for event in scanned {
        emit(HostEvent::Plugin(event));
    }
    emit(HostEvent::Note(format!(
        "watching {} for plugins and {} for experiments",
        cfg.plugins_dir.display(),
        cfg.experiments_dir.display()
    )));
    let waiting = super::experiment_files(&cfg.experiments_dir).len();
    if waiting > 0 {
        let files = if waiting == 1 { "file is" } else { "files are" };
        emit(HostEvent::Note(format!(
            "{waiting} experiment {files} already in {}: left alone, since only files dropped from now on run \
             (drop one again, or `loupe run FILE`, to run it)",
            cfg.experiments_dir.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("loupe-runs")
        .build()
        .map_err(|e| format!("cannot start the run scheduler: {e}"))?;
    let slots = DeviceSlots::new(cfg.jobs);
    runtime.spawn(dispatch(
        cfg.clone(),
        engine.clone(),
        registry.clone(),
        slots,
        emit.clone(),
        queue,
    ));
    let result = watch_loop(&cfg, &engine, &registry, &watcher, &emit, &submit, stop);
    // Runs still going are not waited for: the caller decides whether to wait or leave.
    runtime.shutdown_background();
    result
}

/// Takes queued files as they come and starts each on a blocking task.
async fn dispatch(
    cfg: Arc<ServiceConfig>,
    engine: Arc<PluginEngine>,
    registry: Arc<Mutex<PluginRegistry>>,
    slots: Arc<DeviceSlots>,
    emit: Emit,
    mut queue: UnboundedReceiver<PathBuf>,
) {
    while let Some(path) = queue.recv().await {
        let (cfg, engine, registry) = (cfg.clone(), engine.clone(), registry.clone());
        let (slots, emit) = (slots.clone(), emit.clone());
        tokio::task::spawn_blocking(move || {
            run_experiment(&cfg, &engine, &registry, &slots, &emit, &path)
        });
    }
}

/// Hands file changes to the registry (plugins) and the queue (experiments).
fn watch_loop(
    cfg: &ServiceConfig,
    engine: &PluginEngine,
    registry: &Mutex<PluginRegistry>,
    watcher: &DirWatcher,
    emit: &Emit,
    submit: &UnboundedSender<PathBuf>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut inbox = Inbox::new(cfg.rerun_on_change);
    while !stop.load(Ordering::Relaxed) {
        let Some(events) = watcher.next(Duration::from_millis(200))? else {
            continue;
        };
        for change in changes(&events, "wasm") {
            if change.path().parent() != Some(cfg.plugins_dir.as_path()) {
                continue;
            }
            let events: Vec<RegistryEvent> = match &change {
                Change::Ready(path) => load_shared(registry, engine, path),
                Change::Gone(path) => remove_shared(registry, engine, path),
            };
            for event in events {
                emit(HostEvent::Plugin(event));
            }
        }
        for change in changes(&events, "toml") {
            if change.path().parent() != Some(cfg.experiments_dir.as_path()) {
                continue;
            }
            let path = match change {
                Change::Gone(path) => {
                    inbox.forget(&path);
                    continue;
                }
                Change::Ready(path) => path,
            };
            match inbox.take(&path, std::fs::read(&path).ok().as_deref()) {
                Decision::Run => queue(emit, submit, path),
                Decision::Unchanged => {}
                Decision::EditIgnored => emit(HostEvent::Note(format!(
                    "{} changed after it ran; not run again (remove it and drop it again, or start \
                     with --rerun-on-change to run edited files)",
                    path.display()
                ))),
            }
        }
    }
    Ok(())
}

/// Queues an experiment file and says so.
pub fn queue(emit: &Emit, submit: &UnboundedSender<PathBuf>, path: PathBuf) {
    emit(HostEvent::Queued(path.clone()));
    if submit.send(path.clone()).is_err() {
        emit(HostEvent::ExperimentFailed {
            path,
            error: "the host is stopping".into(),
        });
    }
}

fn run_experiment(
    cfg: &ServiceConfig,
    engine: &PluginEngine,
    registry: &Arc<Mutex<PluginRegistry>>,
    slots: &Arc<DeviceSlots>,
    emit: &Emit,
    path: &Path,
) {
    let failed = |error: String| {
        emit(HostEvent::ExperimentFailed {
            path: path.to_path_buf(),
            error,
        })
    };
    let experiment = match Experiment::load(path) {
        Ok(e) => e,
        Err(e) => return failed(e),
    };
    let sink: SharedSink = Arc::new(Mutex::new(Forward {
        emit: emit.clone(),
        experiment: path.to_path_buf(),
    }));
    let mut runner = Runner::new(
        engine,
        RunnerOptions {
            plugins_dir: cfg.plugins_dir.clone(),
            out_dir: cfg.out_dir.clone(),
            device: cfg.device.clone(),
            overrides: Vec::new(),
            sinks: vec![sink],
            registry: Some(registry.clone()),
            cancellations: Some(cfg.cancellations.clone()),
            slots: Some(slots.clone()),
        },
    );
    match runner.run_experiment(&experiment) {
        Ok(reports) => emit(HostEvent::ExperimentDone {
            path: path.to_path_buf(),
            succeeded: reports.iter().filter(|r| r.ok).count(),
            total: reports.len(),
        }),
        Err(e) => failed(e),
    }
}
