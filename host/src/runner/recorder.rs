//! A run's event recorder: appends every event to `events.jsonl` (flushed as it goes, so a killed run
//! keeps its history) and forwards it to the terminal and other sinks.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{Event, EventBody, EventSink, Level};

/// A sink shared by every run of a process (the terminal, the dashboard).
pub type SharedSink = Arc<Mutex<dyn EventSink>>;

/// A plugin that sends more events than this is flooding; the rest of its events are dropped.
const MAX_PLUGIN_EVENTS: u64 = 100_000;
/// Progress of one stage is recorded at most this often (its last step always is).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

pub struct Recorder {
    run: String,
    start: Instant,
    file: Option<(PathBuf, File)>,
    sinks: Vec<SharedSink>,
    plugin_events: u64,
    dropped: u64,
    last_progress: HashMap<String, Instant>,
}

impl Recorder {
    /// Records `run`'s events into `events_file` (created or appended to) and `sinks`.
    pub fn new(run: &str, events_file: &Path, sinks: Vec<SharedSink>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(events_file)?;
        Ok(Recorder {
            file: Some((events_file.to_path_buf(), file)),
            sinks,
            ..Self::discard(run)
        })
    }

    /// A recorder that keeps nothing (for calls outside a run, such as reading a manifest).
    pub fn discard(run: &str) -> Self {
        Recorder {
            run: run.to_string(),
            start: Instant::now(),
            file: None,
            sinks: Vec::new(),
            plugin_events: 0,
            dropped: 0,
            last_progress: HashMap::new(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Events of the plugin's that were dropped as a flood.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records one of the host's own events.
    pub fn emit(&mut self, body: EventBody) {
        let event = Event {
            run: self.run.clone(),
            t: self.elapsed(),
            body,
        };
        if let Some((path, file)) = &mut self.file {
            let mut line = serde_json::to_string(&event).unwrap_or_default();
            line.push('\n');
            if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
                eprintln!(
                    "loupe: {}: cannot append events ({e}); the run goes on without its log",
                    path.display()
                );
                self.file = None;
            }
        }
        for sink in &self.sinks {
            if let Ok(mut sink) = sink.lock() {
                sink.emit(&event);
            }
        }
    }

    /// Records an event the plugin asked for: progress is thinned out, and a flood is cut off.
    pub fn plugin_event(&mut self, body: EventBody) {
        if let EventBody::Progress { stage, done, total } = &body {
            let now = Instant::now();
            let last = self.last_progress.get(stage);
            let finished = done >= total;
            if !finished && last.is_some_and(|t| now.duration_since(*t) < PROGRESS_INTERVAL) {
                return;
            }
            self.last_progress.insert(stage.clone(), now);
        }
        self.plugin_events += 1;
        if self.plugin_events > MAX_PLUGIN_EVENTS {
            self.dropped += 1;
            if self.dropped == 1 {
                self.emit(EventBody::Log {
                    level: Level::Warn,
                    message: format!(
                        "the plugin sent more than {MAX_PLUGIN_EVENTS} events; its further logs, progress and metrics are dropped"
                    ),
                });
            }
            return;
        }
        self.emit(body);
    }
}
