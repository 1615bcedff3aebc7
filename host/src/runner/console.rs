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
    /// Each run's latest loss (a metric named `loss` or `…/loss`), shown beside its progress.
    losses: HashMap<String, f64>,
}

impl Default for HumanConsole {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a metric is the loss a progress line should show: `loss`, `train/loss`, `fit/loss`.
fn is_loss(name: &str) -> bool {
    name == "loss" || name.ends_with("/loss")
}

/// A plain progress line: `stage: 7/20 (35%, ETA 12 s) · loss 0.4132`. A total of 0 means the
/// plugin does not know how much there is, so no fraction or ETA is made up.
fn progress_line(stage: &str, done: u64, total: u64, elapsed_s: f64, loss: Option<f64>) -> String {
    let loss = loss.map_or(String::new(), |l| format!(" · loss {l:.4}"));
    if total == 0 {
        return format!("{stage}: {done} done (total unknown){loss}");
    }
    let eta = if done > 0 && done < total {
        format!(
            ", ETA {:.0} s",
            elapsed_s * (total - done) as f64 / done as f64
        )
    } else {
        String::new()
    };
    let pct = (100 * done.min(total)) / total;
    format!("{stage}: {done}/{total} ({pct}%{eta}){loss}")
}

/// What a terminal progress bar shows as its message: the stage, and the loss when there is one.
fn bar_message(stage: &str, loss: Option<f64>) -> String {
    match loss {
        Some(l) => format!("{stage} · loss {l:.4}"),
        None => stage.to_string(),
    }
}

fn bar_style(total: u64) -> ProgressStyle {
    // An unknown total gets a count and a spinner instead of a bar that would claim 100%.
    let template = if total == 0 {
        "{prefix} {spinner} {msg} {pos} done {elapsed_precise}"
    } else {
        "{prefix} {msg:20} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl HumanConsole {
    pub fn new() -> Self {
        HumanConsole {
            tty: std::io::stderr().is_terminal(),
            bars: HashMap::new(),
            clocks: HashMap::new(),
            losses: HashMap::new(),
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
        let new_stage = clock.stage != stage;
        if new_stage {
            *clock = StageClock {
                stage: stage.to_string(),
                started: Instant::now(),
                last_line: None,
            };
        }
        let loss = self.losses.get(run).copied();
        if self.tty {
            let bar = self.bars.entry(run.to_string()).or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(bar_style(total));
                bar.set_prefix(format!("[{run}]"));
                bar
            });
            if new_stage || bar.length() != Some(total) {
                bar.set_style(bar_style(total));
                bar.reset();
            }
            bar.set_message(bar_message(stage, loss));
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let now = Instant::now();
        let due = clock
            .last_line
            .is_none_or(|t| now.duration_since(t) >= PLAIN_PROGRESS_EVERY);
        if due || (total > 0 && done >= total) {
            clock.last_line = Some(now);
            let elapsed = clock.started.elapsed().as_secs_f64();
            println!(
                "[{run}] {}",
                progress_line(stage, done, total, elapsed, loss)
            );
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
            EventBody::Metric { name, value, .. } => {
                if is_loss(name) {
                    self.losses.insert(run.to_string(), *value);
                }
            }
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
                self.losses.remove(run);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_total_is_not_shown_as_done() {
        let line = progress_line("collect", 7, 0, 3.0, None);
        assert_eq!(line, "collect: 7 done (total unknown)");
        assert!(!line.contains("100%"));
    }

    #[test]
    fn a_known_total_shows_the_fraction_eta_and_loss() {
        assert_eq!(
            progress_line("train", 5, 20, 10.0, Some(0.41321)),
            "train: 5/20 (25%, ETA 30 s) · loss 0.4132"
        );
        assert_eq!(
            progress_line("train", 20, 20, 10.0, None),
            "train: 20/20 (100%)"
        );
        // A plugin that overshoots its total is capped at 100%, not 135%.
        assert_eq!(
            progress_line("train", 27, 20, 1.0, None),
            "train: 27/20 (100%)"
        );
    }

    #[test]
    fn the_loss_is_found_by_name() {
        assert!(is_loss("loss") && is_loss("train/loss") && is_loss("fit/loss"));
        assert!(!is_loss("sparsity_loss") && !is_loss("train/aux_loss") && !is_loss("l0"));
        assert_eq!(bar_message("train", Some(1.5)), "train · loss 1.5000");
    }
}
