//! The terminal's view of the event stream: JSON lines with `--json`; otherwise readable lines, with
//! progress bars and ETAs on a terminal and plain progress lines when output goes to a file or pipe.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, EventBody, EventSink, Level};
use crate::text::{MAX_SHOWN_NAME_CHARS, shown, shown_capped, terminal_json};

/// Every event as one JSON object per line on stdout, with every character a terminal would act on
/// escaped (the text parses back unchanged).
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&mut self, event: &Event) {
        let line = terminal_json(event);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A name the plugin chose (stage, plugin, version), as the terminal shows it.
fn shown_name(text: &str) -> String {
    shown_capped(text, MAX_SHOWN_NAME_CHARS)
}

/// How often a plain (non-terminal) progress line is printed per stage.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

struct StageClock {
    stage: String,
    started: Instant,
    last_line: Option<Instant>,
}

/// Human-readable lines on stdout; progress bars on stderr when it is a terminal.
pub struct HumanConsole {
    tty: bool,
    bars: HashMap<String, ProgressBar>,
    clocks: HashMap<String, StageClock>,
}

impl Default for HumanConsole {
    fn default() -> Self {
        Self::new()
    }
}

impl HumanConsole {
    pub fn new() -> Self {
        HumanConsole {
            tty: std::io::stderr().is_terminal(),
            bars: HashMap::new(),
            clocks: HashMap::new(),
        }
    }

    /// Prints one line for `run`; `text` holds plugin text already made safe by [`shown`].
    fn say(&self, run: &str, text: String) {
        let line = format!("[{run}] {text}");
        match self.bars.get(run) {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn progress(&mut self, run: &str, stage: &str, done: u64, total: u64) {
        let clock = self
            .clocks
            .entry(run.to_string())
            .or_insert_with(|| StageClock {
                stage: stage.to_string(),
                started: Instant::now(),
                last_line: None,
            });
        if clock.stage != stage {
            *clock = StageClock {
                stage: stage.to_string(),
                started: Instant::now(),
                last_line: None,
            };
        }
        if self.tty {
            let bar = self.bars.entry(run.to_string()).or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} {msg:20} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(format!("[{run}]"));
                bar
            });
            if bar.message() != stage {
                bar.set_message(stage.to_string());
                bar.reset();
            }
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let now = Instant::now();
        let due = clock
            .last_line
            .is_none_or(|t| now.duration_since(t) >= PLAIN_PROGRESS_EVERY);
        if due || done >= total {
            clock.last_line = Some(now);
            let elapsed = clock.started.elapsed().as_secs_f64();
            let eta = if done > 0 && done < total {
                format!(
                    ", ETA {:.0} s",
                    elapsed * (total - done) as f64 / done as f64
                )
            } else {
                String::new()
            };
            let pct = (100 * done).checked_div(total).unwrap_or(100);
            println!("[{run}] {stage}: {done}/{total} ({pct}%{eta})");
        }
    }
}

impl EventSink for HumanConsole {
    fn emit(&mut self, event: &Event) {
        let run = event.run.as_str();
        match &event.body {
            EventBody::Started {
                plugin,
                plugin_version,
                device,
                dir,
                ..
            } => println!(
                "[{run}] started {} {} on {device} → {dir}",
                shown_name(plugin),
                shown_name(plugin_version)
            ),
            EventBody::Log { level, message } => match level {
                Level::Debug => {}
                Level::Info => self.say(run, shown(message)),
                other => self.say(run, format!("{other}: {}", shown(message))),
            },
            EventBody::Progress { stage, done, total } => {
                self.progress(run, &shown_name(stage), *done, *total)
            }
            EventBody::Metric { .. } => {}
            EventBody::Artifact { name, bytes } => self.say(
                run,
                format!("wrote artifacts/{} ({})", shown(name), human_bytes(*bytes)),
            ),
            EventBody::Finished {
                ok,
                elapsed_s,
                error,
            } => {
                if let Some(bar) = self.bars.remove(run) {
                    bar.finish_and_clear();
                }
                self.clocks.remove(run);
                match (ok, error) {
                    (true, _) => println!("[{run}] done in {elapsed_s:.1} s"),
                    (false, Some(e)) => {
                        println!("[{run}] FAILED after {elapsed_s:.1} s: {}", shown(e))
                    }
                    (false, None) => println!("[{run}] FAILED after {elapsed_s:.1} s"),
                }
            }
        }
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
