//! `loupe dash`: the terminal dashboard. The host service (plugins hot-loaded, experiments queued and
//! run) works in the background and sends its event stream here; [`state::DashState`] folds it into
//! what the panels show and [`view`] draws that; runs already in the output directory are listed
//! from [`history`]. The terminal is restored on exit and on panic.

pub mod detail;
pub mod history;
pub mod state;
pub mod view;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::UnboundedSender;

use crate::plugin::PluginEngine;
use crate::watch::{Emit, HostEvent, ServiceConfig, experiment_files, queue, serve};
use state::{Action, DashState, DeviceInfo};

/// How often the screen is redrawn when nothing happens (for ETAs and the device panel).
const TICK: Duration = Duration::from_millis(250);

/// This process's resident memory and the machine's total, from `/proc` (Linux); `None` elsewhere.
/// What the device panel shows for the CPU, and for a GPU not used yet.
fn memory() -> (Option<u64>, Option<u64>) {
    let field = |file: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(file).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    (
        field("/proc/self/status", "VmRSS:"),
        field("/proc/meminfo", "MemTotal:"),
    )
}

fn device_info(backend: &str) -> DeviceInfo {
    // On a GPU: the device memory loupe's tensors hold, once the device is in use.
    let gpu = backend
        .strip_prefix("cuda:")
        .and_then(|n| n.parse().ok())
        .and_then(loupe_kernels::cuda::memory_use);
    let (used, total) = match gpu {
        Some(m) => (Some(m.in_use as u64), Some(m.total as u64)),
        None => memory(),
    };
    // On the CPU, the resident size mixes tensors with weights being read, caches and plugin
    // memories: the engine's own count says how much of it is tensors.
    let tensors = (backend == "cpu").then(|| loupe_kernels::cpu_memory_use().in_use);
    DeviceInfo {
        backend: backend.to_string(),
        used,
        total,
        tensors,
    }
}

/// The terminal in the dashboard's mode (raw input, alternate screen) for as long as this lives;
/// dropping it restores the terminal. On a panic, the hook `ratatui::try_init` installs restores the
/// terminal before the panic message prints, so the message lands on a usable screen.
pub struct TerminalSession(ratatui::DefaultTerminal);

impl TerminalSession {
    pub fn start() -> Result<TerminalSession> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(TerminalSession(terminal)),
            Err(e) => {
                // Raw mode may have been switched on before the step that failed (a no-op if not).
                let _ = crossterm::terminal::disable_raw_mode();
                Err(e).context(
                    "the dashboard needs a terminal (standard input is not one and /dev/tty cannot \
                     be opened); use `loupe watch` for headless runs",
                )
            }
        }
    }
}

impl std::ops::Deref for TerminalSession {
    type Target = ratatui::DefaultTerminal;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for TerminalSession {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Raises the service's stop flag when dropped, so that a panic in the UI loop (which unwinds
/// through `thread::scope`, and the scope waits for its threads) cannot leave the process hanging.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A key as the state names it; Ctrl-C (which raw mode delivers as a key, not a signal) is `Ctrl-c`.
fn key_name(code: KeyCode, modifiers: KeyModifiers) -> Option<String> {
    Some(match code {
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => "Ctrl-c".into(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Tab => "Tab".into(),
        KeyCode::BackTab => "BackTab".into(),
        KeyCode::Up => "Up".into(),
        KeyCode::Down => "Down".into(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Esc => "Esc".into(),
        KeyCode::PageUp => "PageUp".into(),
        KeyCode::PageDown => "PageDown".into(),
        KeyCode::Home => "Home".into(),
        KeyCode::End => "End".into(),
        _ => return None,
    })
}

pub fn run(cfg: ServiceConfig, backend: &str) -> Result<()> {
    let engine = Arc::new(PluginEngine::new()?);
    let cfg = Arc::new(cfg);
    let (events_tx, events) = channel::<HostEvent>();
    let events_tx = Mutex::new(events_tx);
    let emit: Emit = Arc::new(move |e| {
        let _ = events_tx.lock().unwrap_or_else(|p| p.into_inner()).send(e);
    });
    let (submit, queue_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = AtomicBool::new(false);
    let mut state = DashState::new(device_info(backend));
    // Read before the service starts, so that only earlier runs are history.
    state.add_history(history::read_history(&cfg.out_dir, history::HISTORY_RUNS));
    let mut terminal = TerminalSession::start()?;
    std::thread::scope(|scope| {
        let _stop_service = StopOnDrop(&stop);
        let (service_cfg, service_emit) = (cfg.clone(), emit.clone());
        let service_submit = submit.clone();
        let service = scope.spawn(|| {
            serve(
                service_cfg,
                engine,
                service_emit,
                service_submit,
                queue_rx,
                &stop,
            )
        });
        let result = ui_loop(
            &mut terminal,
            &mut state,
            &events,
            &cfg,
            &emit,
            &submit,
            backend,
        );
        drop(terminal);
        // Runs going are asked to stop and given time to write their summaries before the host
        // goes; the file's runs not started yet end at once the same way.
        if !finish_runs(&mut state, &events, &cfg) {
            stop.store(true, Ordering::Relaxed);
            eprintln!(
                "loupe dash: runs still going after {} s were abandoned; their directories keep what they wrote",
                QUIT_GRACE.as_secs()
            );
            std::process::exit(result.is_err() as i32);
        }
        stop.store(true, Ordering::Relaxed);
        let served = service.join().unwrap_or(Ok(()));
        result?;
        served.map_err(anyhow::Error::msg)
    })
}

/// How long quitting waits for cancelled runs to end and write their summaries.
const QUIT_GRACE: Duration = Duration::from_secs(30);

/// Cancels every run going or queued and waits (up to [`QUIT_GRACE`]) until each experiment file in
/// flight reports it is done — which it does after every run's `summary.json` is written. True when
/// nothing was left going.
fn finish_runs(state: &mut DashState, events: &Receiver<HostEvent>, cfg: &ServiceConfig) -> bool {
    let mut in_flight: std::collections::BTreeSet<PathBuf> = state
        .runs
        .iter()
        .filter(|r| r.status.is_going())
        .map(|r| r.experiment.clone())
        .collect();
    if in_flight.is_empty() {
        return true;
    }
    let going = cfg.cancellations.cancel_all();
    eprintln!(
        "loupe dash: stopping {going} run(s) at their next check; each keeps its summary (Ctrl-C leaves at once)"
    );
    let deadline = Instant::now() + QUIT_GRACE;
    while !in_flight.is_empty() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        match events.recv_timeout(left) {
            Ok(event) => {
                if let HostEvent::ExperimentDone { path, .. }
                | HostEvent::ExperimentFailed { path, .. } = &event
                {
                    in_flight.remove(path);
                }
                state.apply(&event);
            }
            Err(_) => return false,
        }
    }
    true
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    state: &mut DashState,
    events: &Receiver<HostEvent>,
    cfg: &ServiceConfig,
    emit: &Emit,
    submit: &UnboundedSender<PathBuf>,
    backend: &str,
) -> Result<()> {
    let mut last_sample = Instant::now();
    loop {
        while let Ok(event) = events.try_recv() {
            state.apply(&event);
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            state.device = device_info(backend);
            last_sample = Instant::now();
        }
        if let Some(path) = state.summary_wanted()
            && let Some(lines) = history::summary_lines(&path)
        {
            state.set_summary(lines);
        }
        let size = terminal.size()?;
        if (size.width, size.height) != state.size {
            state.resize(size.width, size.height);
        }
        terminal.draw(|frame| view::draw(frame, state))?;
        if !event::poll(TICK)? {
            continue;
        }
        if let TermEvent::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
            && let Some(name) = key_name(key.code, key.modifiers)
        {
            match state.key(&name, || experiment_files(&cfg.experiments_dir)) {
                Action::Quit => return Ok(()),
                Action::Start(path) => queue(emit, submit, path),
                Action::Cancel(run) => {
                    let line = if cfg.cancellations.cancel(&run) {
                        format!(
                            "asked {run} to stop: it saves what it can and ends with its summary"
                        )
                    } else {
                        format!("{run} is no longer running")
                    };
                    state.flash(line);
                }
                Action::None => {}
            }
        }
    }
}
