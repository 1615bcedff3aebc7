//! A run's event recorder: appends every event to `events.jsonl` (flushed as it goes, so a killed run
//! keeps its history) and forwards it to the terminal and other sinks.

use std::borrow::Cow;
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
pub const MAX_PLUGIN_EVENTS: u64 = 100_000;
/// The bytes of a plugin's events in `events.jsonl` (each line as encoded); past it, the rest of its
/// events are dropped. Every copy a sink keeps (the dashboard's) is bounded by it too.
pub const MAX_PLUGIN_EVENT_BYTES: u64 = 64 << 20;
/// The longest log message kept, in bytes; a longer one is cut, with a marker saying how much.
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// The longest progress stage or metric name kept, in bytes; a longer one is cut.
pub const MAX_EVENT_NAME_BYTES: usize = 256;
/// Progress stages tracked per run (for thinning); progress of stages past these is dropped.
pub const MAX_PROGRESS_STAGES: usize = 256;
/// Progress of one stage is recorded at most this often (its last step always is).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Why a plugin's events stopped being recorded; each is announced once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flood {
    Count,
    Bytes,
    Stages,
}

pub struct Recorder {
    run: String,
    start: Instant,
    file: Option<(PathBuf, File)>,
    sinks: Vec<SharedSink>,
    plugin_events: u64,
    plugin_bytes: u64,
    dropped: u64,
    /// What cut the plugin's events off, once announced (its stages flood aside: other events go on).
    flood: Option<Flood>,
    stages_flooded: bool,
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
            plugin_bytes: 0,
            dropped: 0,
            flood: None,
            stages_flooded: false,
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
        let event = self.event(body);
        let line = encode(&event);
        self.record(&event, &line);
    }

    fn event(&self, body: EventBody) -> Event {
        Event {
            run: self.run.clone(),
            t: self.elapsed(),
            body,
        }
    }

    fn record(&mut self, event: &Event, line: &str) {
        if let Some((path, file)) = &mut self.file
            && let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush())
        {
            eprintln!(
                "loupe: {}: cannot append events ({e}); the run goes on without its log",
                path.display()
            );
            self.file = None;
        }
        for sink in &self.sinks {
            if let Ok(mut sink) = sink.lock() {
                sink.emit(event);
            }
        }
    }

    /// Records an event the plugin asked for (a log line, progress, a metric, an artifact written):
    /// its text is cut to size, progress is thinned out, and a flood — too many events, too many
    /// bytes of them, too many progress stages — is cut off with one notice.
    pub fn plugin_event(&mut self, body: EventBody) {
        if self.flood.is_some() {
            self.dropped += 1;
            return;
        }
        let body = bounded(body);
        if let EventBody::Progress { stage, done, total } = &body {
            let now = Instant::now();
            let last = self.last_progress.get(stage);
            if last.is_none() && self.last_progress.len() >= MAX_PROGRESS_STAGES {
                self.dropped += 1;
                if !std::mem::replace(&mut self.stages_flooded, true) {
                    self.notice(Flood::Stages);
                }
                return;
            }
            let finished = done >= total;
            if !finished && last.is_some_and(|t| now.duration_since(*t) < PROGRESS_INTERVAL) {
                return;
            }
            self.last_progress.insert(stage.clone(), now);
        }
        self.plugin_events += 1;
        if self.plugin_events > MAX_PLUGIN_EVENTS {
            return self.cut_off(Flood::Count);
        }
        let event = self.event(body);
        let line = encode(&event);
        let bytes = self.plugin_bytes.saturating_add(line.len() as u64);
        if bytes > MAX_PLUGIN_EVENT_BYTES {
            return self.cut_off(Flood::Bytes);
        }
        self.plugin_bytes = bytes;
        self.record(&event, &line);
    }

    fn cut_off(&mut self, why: Flood) {
        self.dropped += 1;
        self.flood = Some(why);
        self.notice(why);
    }

    fn notice(&mut self, why: Flood) {
        let message = match why {
            Flood::Count => format!(
                "the plugin sent more than {MAX_PLUGIN_EVENTS} events; its further logs, progress and metrics are dropped"
            ),
            Flood::Bytes => format!(
                "the plugin's events reached {} MiB; its further logs, progress and metrics are dropped",
                MAX_PLUGIN_EVENT_BYTES >> 20
            ),
            Flood::Stages => format!(
                "the plugin reported progress of more than {MAX_PROGRESS_STAGES} stages; progress of further stages is dropped"
            ),
        };
        self.emit(EventBody::Log {
            level: Level::Warn,
            message,
        });
    }
}

/// An event as one line of `events.jsonl`.
fn encode(event: &Event) -> String {
    let mut line = serde_json::to_string(event).unwrap_or_default();
    line.push('\n');
    line
}

/// A plugin's event with its text cut to the limits, so that encoding it costs bounded work.
fn bounded(body: EventBody) -> EventBody {
    let cut = |text: String, max: usize| match crate::text::cut(&text, max) {
        Cow::Borrowed(_) => text,
        Cow::Owned(short) => short,
    };
    match body {
        EventBody::Log { level, message } => EventBody::Log {
            level,
            message: cut(message, MAX_LOG_BYTES),
        },
        EventBody::Progress { stage, done, total } => EventBody::Progress {
            stage: cut(stage, MAX_EVENT_NAME_BYTES),
            done,
            total,
        },
        EventBody::Metric { name, step, value } => EventBody::Metric {
            name: cut(name, MAX_EVENT_NAME_BYTES),
            step,
            value,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn warnings(events: &[serde_json::Value]) -> Vec<&str> {
        events
            .iter()
            .filter(|e| e["level"] == "warn")
            .filter_map(|e| e["message"].as_str())
            .collect()
    }

    #[test]
    fn a_flood_of_big_logs_is_cut_to_the_byte_budget_with_one_notice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut r = Recorder::new("r", &path, Vec::new()).unwrap();
        // 1 MiB messages of control characters (each 6 bytes once JSON-escaped), far past the
        // budget if kept whole: 200 of them would be 1.2 GiB of events.jsonl.
        let message = "\x1b".repeat(1 << 20);
        for _ in 0..200 {
            r.plugin_event(EventBody::Log {
                level: Level::Info,
                message: message.clone(),
            });
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 200 * (6 * MAX_LOG_BYTES as u64 + 200), "{size}");
        let events = lines(&path);
        let first = events[0]["message"].as_str().unwrap();
        assert!(first.len() < MAX_LOG_BYTES + 64 && first.contains("more bytes]"));
        // Many more, each cut to size: the byte budget stops them.
        let message = "x".repeat(MAX_LOG_BYTES);
        for _ in 0..(MAX_PLUGIN_EVENT_BYTES as usize / MAX_LOG_BYTES + 100) {
            r.plugin_event(EventBody::Log {
                level: Level::Info,
                message: message.clone(),
            });
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= MAX_PLUGIN_EVENT_BYTES + 4096, "{size}");
        assert!(r.dropped() >= 100, "{}", r.dropped());
        let events = lines(&path);
        let notices = warnings(&events);
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(
            notices[0].contains("events reached 64 MiB"),
            "{}",
            notices[0]
        );
    }

    #[test]
    fn progress_stages_are_bounded_and_none_are_kept_after_a_flood() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut r = Recorder::new("r", &path, Vec::new()).unwrap();
        let long = "s".repeat(100_000);
        for i in 0..(MAX_PROGRESS_STAGES * 4) {
            r.plugin_event(EventBody::Progress {
                stage: format!("{i}{long}"),
                done: 1,
                total: 1,
            });
        }
        assert_eq!(r.last_progress.len(), MAX_PROGRESS_STAGES);
        assert!(
            r.last_progress
                .keys()
                .all(|k| k.len() < MAX_EVENT_NAME_BYTES + 64)
        );
        let events = lines(&path);
        assert_eq!(warnings(&events).len(), 1);
        // Other events go on; after the count flood, no new stage is remembered.
        for i in 0..MAX_PLUGIN_EVENTS + 10 {
            r.plugin_event(EventBody::Metric {
                name: "m".into(),
                step: i,
                value: 0.0,
            });
        }
        r.last_progress.clear();
        r.plugin_event(EventBody::Progress {
            stage: "late".into(),
            done: 1,
            total: 1,
        });
        assert!(r.last_progress.is_empty());
        let events = lines(&path);
        let notices = warnings(&events);
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(notices[1].contains("more than 100000 events"));
    }
}
