//! The event stream of a run: what the plugin logs, its progress, metrics and artifacts, and how the run
//! ends. The same events go to `events.jsonl` in the run directory, to the terminal (`loupe run`, with
//! `--json` as JSON lines) and to the dashboard (`loupe dash`).

use serde::{Deserialize, Serialize};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// One thing that happened in a run, `t` seconds after it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run: String,
    pub t: f64,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    Started {
        plugin: String,
        plugin_version: String,
        method: String,
        model: Option<String>,
        device: String,
        dir: String,
    },
    Log {
        level: Level,
        message: String,
    },
    Progress {
        stage: String,
        done: u64,
        total: u64,
    },
    Metric {
        name: String,
        step: u64,
        value: f64,
    },
    Artifact {
        name: String,
        bytes: u64,
    },
    Finished {
        ok: bool,
        elapsed_s: f64,
        error: Option<String>,
    },
}

/// Somewhere events go. Sinks must not fail the run: they report their own trouble and carry on.
pub trait EventSink: Send {
    fn emit(&mut self, event: &Event);
}
