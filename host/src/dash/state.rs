//! What the dashboard shows, as plain data: built only from the host's event stream (the same one
//! `loupe watch` prints) and the keys pressed, so every panel can be tested without a terminal.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::events::{EventBody, Level};
use crate::plugin::RegistryEvent;
use crate::text::{MAX_SHOWN_NAME_CHARS, shown, shown_capped};
use crate::watch::HostEvent;

/// Log lines kept per run, and host notes kept.
const LOG_LINES: usize = 200;

/// Metric series kept per run: a plugin inventing names past this has the rest left off the chart.
pub const MAX_METRICS_PER_RUN: usize = 64;

/// Points kept per metric series: past this, every other point is dropped (the chart keeps the
/// series' whole span at half the resolution), so a long run's chart costs bounded memory.
pub const MAX_POINTS_PER_METRIC: usize = 4096;

/// A name the plugin chose, as the dashboard draws it: escaped, one line, short.
fn shown_name(text: &str) -> String {
    shown_capped(text, MAX_SHOWN_NAME_CHARS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Plugins,
    Runs,
    Run,
    Device,
}

impl Panel {
    const ORDER: [Panel; 4] = [Panel::Plugins, Panel::Runs, Panel::Run, Panel::Device];

    fn next(self, step: isize) -> Panel {
        let i = Self::ORDER.iter().position(|&p| p == self).unwrap_or(0) as isize;
        Self::ORDER[(i + step).rem_euclid(Self::ORDER.len() as isize) as usize]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginRow {
    pub file: String,
    pub name: String,
    pub version: String,
    pub api: String,
    /// `ready`, `broken` (the last load failed; an older version may still serve), `failed`, `removed`.
    pub status: &'static str,
    /// The last reload event, in words.
    pub last: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The run's id, or the experiment file's name while it waits.
    pub id: String,
    pub experiment: PathBuf,
    pub plugin: String,
    pub status: RunStatus,
    /// The latest progress: stage, done, total.
    pub progress: Option<(String, u64, u64)>,
    /// Seconds since the run started, at its latest event.
    pub t: f64,
    pub metrics: BTreeMap<String, Vec<(f64, f64)>>,
    pub log: VecDeque<String>,
}

impl RunRow {
    /// Seconds left at the current stage's pace.
    pub fn eta(&self) -> Option<f64> {
        let (_, done, total) = self.progress.as_ref()?;
        (*done > 0 && done < total && self.status == RunStatus::Running)
            .then(|| self.t * (*total - *done) as f64 / *done as f64)
    }
}

/// The device panel's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub backend: String,
    /// Bytes used by this process and the machine's total, when known.
    pub used: Option<u64>,
    pub total: Option<u64>,
}

/// What a key asks the dashboard to do beyond changing what is shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Quit,
    /// Queue this experiment file.
    Start(PathBuf),
    /// Stop this run.
    Cancel(String),
}

#[derive(Debug, Default)]
pub struct DashState {
    pub plugins: Vec<PluginRow>,
    pub runs: Vec<RunRow>,
    pub notes: VecDeque<String>,
    pub device: DeviceInfo,
    pub panel: Option<Panel>,
    pub selected_plugin: usize,
    pub selected_run: usize,
    /// Which of the selected run's metrics the chart shows.
    pub selected_metric: usize,
    pub show_help: bool,
    /// The experiment picker: files to choose from and the highlighted one, while it is open.
    pub picker: Option<(Vec<PathBuf>, usize)>,
    /// Quitting was asked for while runs were going: the next quit key confirms, any other stays.
    pub confirm_quit: bool,
    /// The answer to the last key, shown in the footer until the next key.
    pub flash: Option<String>,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl DashState {
    pub fn new(device: DeviceInfo) -> Self {
        DashState {
            device,
            panel: Some(Panel::Runs),
            ..Self::default()
        }
    }

    pub fn focused(&self) -> Panel {
        self.panel.unwrap_or(Panel::Runs)
    }

    /// Runs queued or running: what quitting now would abandon.
    pub fn runs_going(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
            .count()
    }

    /// A note that answers a key: logged, and shown in the footer until the next key.
    pub fn flash(&mut self, line: String) {
        self.flash = Some(line.clone());
        self.note(line);
    }

    /// A line for the notes panel; escaped here, since errors in it can quote plugin text.
    pub fn note(&mut self, line: String) {
        self.notes.push_back(shown(&line));
        while self.notes.len() > LOG_LINES {
            self.notes.pop_front();
        }
    }

    /// The row of a plugin file, added in file-name order the first time it is seen.
    fn plugin_row(&mut self, path: &Path) -> &mut PluginRow {
        let file = file_name(path);
        let i = match self.plugins.binary_search_by(|p| p.file.cmp(&file)) {
            Ok(i) => i,
            Err(i) => {
                self.plugins.insert(
                    i,
                    PluginRow {
                        file,
                        name: String::new(),
                        version: String::new(),
                        api: String::new(),
                        status: "failed",
                        last: String::new(),
                    },
                );
                i
            }
        };
        &mut self.plugins[i]
    }

    /// Takes one event of the host's stream into account.
    pub fn apply(&mut self, event: &HostEvent) {
        match event {
            HostEvent::Plugin(e) => self.apply_plugin(e),
            HostEvent::Queued(path) => self.runs.push(RunRow {
                id: file_name(path),
                experiment: path.clone(),
                plugin: String::new(),
                status: RunStatus::Queued,
                progress: None,
                t: 0.0,
                metrics: BTreeMap::new(),
                log: VecDeque::new(),
            }),
            HostEvent::Run { experiment, event } => self.apply_run(experiment, event),
            HostEvent::ExperimentDone { path, .. } => {
                // An experiment whose runs all failed before starting leaves only its queued row.
                self.runs
                    .retain(|r| !(r.status == RunStatus::Queued && &r.experiment == path));
            }
            HostEvent::ExperimentFailed { path, error } => {
                for row in self.runs.iter_mut() {
                    if row.status == RunStatus::Queued && &row.experiment == path {
                        row.status = RunStatus::Failed;
                        row.log.push_back(shown(error));
                    }
                }
                self.note(format!("{}: not run: {error}", file_name(path)));
            }
            HostEvent::Note(line) => self.note(line.clone()),
        }
    }

    fn apply_plugin(&mut self, event: &RegistryEvent) {
        let line = event.describe();
        match event {
            RegistryEvent::Loaded {
                path,
                name,
                version,
                api_version,
                ..
            } => {
                let row = self.plugin_row(path);
                row.name = shown_name(name);
                row.version = shown_name(version);
                row.api = shown_name(api_version);
                row.status = "ready";
                row.last = line.clone();
            }
            RegistryEvent::Failed { path, kept, .. } => {
                let row = self.plugin_row(path);
                row.status = if kept.is_some() { "broken" } else { "failed" };
                row.last = line.clone();
            }
            RegistryEvent::Removed { path, .. } => {
                let row = self.plugin_row(path);
                row.status = "removed";
                row.last = line.clone();
            }
        }
        self.note(line);
    }

    fn apply_run(&mut self, experiment: &Path, event: &crate::events::Event) {
        let i = match self.runs.iter().position(|r| r.id == event.run) {
            Some(i) => i,
            None => {
                // The first event of a run takes over its experiment's queued row, if any.
                let queued = self
                    .runs
                    .iter()
                    .position(|r| r.status == RunStatus::Queued && r.experiment == experiment);
                let row = RunRow {
                    id: event.run.clone(),
                    experiment: experiment.to_path_buf(),
                    plugin: String::new(),
                    status: RunStatus::Running,
                    progress: None,
                    t: 0.0,
                    metrics: BTreeMap::new(),
                    log: VecDeque::new(),
                };
                match queued {
                    Some(q) => {
                        self.runs[q] = row;
                        q
                    }
                    None => {
                        self.runs.push(row);
                        self.runs.len() - 1
                    }
                }
            }
        };
        let row = &mut self.runs[i];
        row.t = row.t.max(event.t);
        match &event.body {
            EventBody::Started { plugin, device, .. } => {
                row.plugin = shown_name(plugin);
                row.log
                    .push_back(format!("started {} on {device}", row.plugin));
            }
            EventBody::Log { level, message } => {
                let prefix = match level {
                    Level::Warn => "warning: ",
                    Level::Error => "error: ",
                    Level::Info | Level::Debug => "",
                };
                row.log.push_back(format!("{prefix}{}", shown(message)));
            }
            EventBody::Progress { stage, done, total } => {
                row.progress = Some((shown_name(stage), *done, *total));
            }
            EventBody::Metric { name, step, value } => {
                add_point(&mut row.metrics, name, (*step as f64, *value));
            }
            EventBody::Artifact { name, bytes } => {
                row.log
                    .push_back(format!("wrote {} ({bytes} bytes)", shown(name)));
            }
            EventBody::Finished { ok, error, .. } => {
                let cancelled = error.as_deref().is_some_and(|e| e.contains("cancelled"));
                row.status = match (ok, cancelled) {
                    (true, _) => RunStatus::Done,
                    (false, true) => RunStatus::Cancelled,
                    (false, false) => RunStatus::Failed,
                };
                row.log.push_back(match error {
                    Some(e) => format!("failed: {}", shown(e)),
                    None => format!("finished in {:.1} s", row.t),
                });
            }
        }
        while row.log.len() > LOG_LINES {
            row.log.pop_front();
        }
    }

    pub fn selected_run(&self) -> Option<&RunRow> {
        self.runs.get(self.selected_run)
    }

    /// The selected run's chart: the metric's name and points.
    pub fn chart(&self) -> Option<(&str, &[(f64, f64)])> {
        let run = self.selected_run()?;
        let count = run.metrics.len();
        let (name, points) = run
            .metrics
            .iter()
            .nth(self.selected_metric % count.max(1))?;
        Some((name, points))
    }

    /// Quits at once when nothing is going; otherwise asks for the quit key again first, since the
    /// runs going would be abandoned.
    fn quit(&mut self) -> Action {
        if self.runs_going() == 0 {
            return Action::Quit;
        }
        self.confirm_quit = true;
        Action::None
    }

    /// Handles a key (its character, or a name such as `Tab`, `Up`, `Enter`, `Esc`); `experiments`
    /// lists the files the picker offers.
    pub fn key(&mut self, key: &str, experiments: impl FnOnce() -> Vec<PathBuf>) -> Action {
        self.flash = None;
        let quit_key = matches!(key, "q" | "Esc" | "Ctrl-c");
        if std::mem::take(&mut self.confirm_quit) {
            return if quit_key { Action::Quit } else { Action::None };
        }
        if key == "Ctrl-c" {
            return self.quit();
        }
        if self.show_help {
            self.show_help = false;
            return Action::None;
        }
        if let Some((files, at)) = &mut self.picker {
            match key {
                "Up" | "k" => *at = at.saturating_sub(1),
                "Down" | "j" => *at = (*at + 1).min(files.len().saturating_sub(1)),
                "Enter" => {
                    let chosen = files.get(*at).cloned();
                    self.picker = None;
                    return chosen.map_or(Action::None, Action::Start);
                }
                "Esc" | "q" => self.picker = None,
                _ => {}
            }
            return Action::None;
        }
        let focused = self.focused();
        match key {
            "q" | "Esc" => return self.quit(),
            "?" => self.show_help = true,
            "Tab" => self.panel = Some(focused.next(1)),
            "BackTab" => self.panel = Some(focused.next(-1)),
            "r" => self.picker = Some((experiments(), 0)),
            "c" => match self.selected_run() {
                Some(run) if run.status == RunStatus::Running => {
                    return Action::Cancel(run.id.clone());
                }
                _ => self.flash("select a running run (in the runs panel) to cancel it".into()),
            },
            "m" => self.selected_metric += 1,
            "Up" | "k" | "Down" | "j" => {
                let down = key == "Down" || key == "j";
                let (at, len) = match focused {
                    Panel::Plugins => (&mut self.selected_plugin, self.plugins.len()),
                    _ => (&mut self.selected_run, self.runs.len()),
                };
                *at = if down {
                    (*at + 1).min(len.saturating_sub(1))
                } else {
                    at.saturating_sub(1)
                };
                if focused != Panel::Plugins {
                    self.selected_metric = 0;
                }
            }
            _ => {}
        }
        Action::None
    }
}

/// Adds a point to a run's metric series, within [`MAX_METRICS_PER_RUN`] series of at most
/// [`MAX_POINTS_PER_METRIC`] points each.
fn add_point(metrics: &mut BTreeMap<String, Vec<(f64, f64)>>, name: &str, point: (f64, f64)) {
    let name = shown_name(name);
    if !metrics.contains_key(&name) && metrics.len() >= MAX_METRICS_PER_RUN {
        return;
    }
    let series = metrics.entry(name).or_default();
    if series.len() >= MAX_POINTS_PER_METRIC {
        let mut i = 0;
        series.retain(|_| {
            i += 1;
            i % 2 == 1
        });
    }
    series.push(point);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::Event;

    fn run_event(experiment: &str, run: &str, t: f64, body: EventBody) -> HostEvent {
        HostEvent::Run {
            experiment: PathBuf::from(experiment),
            event: Event {
                run: run.into(),
                t,
                body,
            },
        }
    }

    #[test]
    fn a_queued_experiment_becomes_its_run_and_ends_done_or_failed() {
        let mut s = DashState::new(DeviceInfo::default());
        s.apply(&HostEvent::Queued("/e/a.toml".into()));
        s.apply(&HostEvent::Queued("/e/b.toml".into()));
        assert_eq!(s.runs.len(), 2);
        assert!(s.runs.iter().all(|r| r.status == RunStatus::Queued));
        let progress = EventBody::Progress {
            stage: "fit".into(),
            done: 5,
            total: 10,
        };
        s.apply(&run_event("/e/b.toml", "r1", 2.0, progress));
        assert_eq!(s.runs[1].id, "r1");
        assert_eq!(s.runs[1].status, RunStatus::Running);
        assert_eq!(s.runs[1].eta(), Some(2.0));
        s.apply(&run_event(
            "/e/b.toml",
            "r1",
            3.0,
            EventBody::Finished {
                ok: false,
                elapsed_s: 3.0,
                error: Some("boom".into()),
            },
        ));
        assert_eq!(s.runs[1].status, RunStatus::Failed);
        assert_eq!(s.runs[1].eta(), None);
        assert_eq!(s.runs[1].log.back().unwrap(), "failed: boom");
        // An experiment that could not run at all marks its queued row failed.
        s.apply(&HostEvent::ExperimentFailed {
            path: "/e/a.toml".into(),
            error: "bad toml".into(),
        });
        assert_eq!(s.runs[0].status, RunStatus::Failed);
        assert!(
            s.notes
                .back()
                .unwrap()
                .contains("a.toml: not run: bad toml")
        );
    }

    #[test]
    fn plugin_rows_follow_reloads() {
        let mut s = DashState::new(DeviceInfo::default());
        let path = PathBuf::from("/p/x.wasm");
        s.apply(&HostEvent::Plugin(RegistryEvent::Loaded {
            path: path.clone(),
            name: "x".into(),
            version: "1.0.0".into(),
            api_version: "0.2.0".into(),
            from_cache: false,
            load_time: Duration::from_millis(200),
            replaced: None,
        }));
        assert_eq!(s.plugins[0].status, "ready");
        s.apply(&HostEvent::Plugin(RegistryEvent::Failed {
            path: path.clone(),
            error: "bad".into(),
            kept: Some(("x".into(), "1.0.0".into())),
        }));
        assert_eq!(s.plugins[0].status, "broken");
        assert_eq!(
            s.plugins[0].version, "1.0.0",
            "the old version stays listed"
        );
        s.apply(&HostEvent::Plugin(RegistryEvent::Removed {
            path,
            name: "x".into(),
            version: "1.0.0".into(),
        }));
        assert_eq!(s.plugins[0].status, "removed");
        assert_eq!(s.notes.len(), 3);
    }

    #[test]
    fn keys_move_focus_pick_experiments_and_quit() {
        let mut s = DashState::new(DeviceInfo::default());
        assert_eq!(s.focused(), Panel::Runs);
        s.key("Tab", Vec::new);
        assert_eq!(s.focused(), Panel::Run);
        s.key("BackTab", Vec::new);
        s.key("BackTab", Vec::new);
        assert_eq!(s.focused(), Panel::Plugins);
        let files = || vec![PathBuf::from("/e/a.toml"), PathBuf::from("/e/b.toml")];
        assert_eq!(s.key("r", files), Action::None);
        s.key("Down", Vec::new);
        s.key("Down", Vec::new);
        assert_eq!(s.key("Enter", Vec::new), Action::Start("/e/b.toml".into()));
        assert!(s.picker.is_none());
        s.key("r", Vec::new);
        assert_eq!(s.key("Enter", Vec::new), Action::None, "nothing to pick");
        s.key("r", files);
        assert_eq!(
            s.key("Esc", Vec::new),
            Action::None,
            "Esc closes the picker"
        );
        assert_eq!(s.key("q", Vec::new), Action::Quit);
        // Ctrl-C quits from anywhere, the picker and the help included.
        s.key("r", files);
        assert_eq!(s.key("Ctrl-c", Vec::new), Action::Quit);
        s.picker = None;
        s.key("?", Vec::new);
        assert_eq!(s.key("Ctrl-c", Vec::new), Action::Quit);
    }

    #[test]
    fn quitting_with_runs_going_asks_first() {
        let mut s = DashState::new(DeviceInfo::default());
        let progress = EventBody::Progress {
            stage: "fit".into(),
            done: 1,
            total: 10,
        };
        s.apply(&run_event("/e/a.toml", "r1", 1.0, progress));
        assert_eq!(s.runs_going(), 1);
        assert_eq!(s.key("q", Vec::new), Action::None);
        assert!(s.confirm_quit);
        // Any other key stays (and is not taken as a command).
        assert_eq!(s.key("r", Vec::new), Action::None);
        assert!(!s.confirm_quit && s.picker.is_none());
        assert_eq!(s.key("Ctrl-c", Vec::new), Action::None);
        assert_eq!(s.key("q", Vec::new), Action::Quit);
        // Once nothing is going, quitting is immediate.
        s.apply(&run_event(
            "/e/a.toml",
            "r1",
            2.0,
            EventBody::Finished {
                ok: true,
                elapsed_s: 2.0,
                error: None,
            },
        ));
        assert_eq!(s.runs_going(), 0);
        assert_eq!(s.key("Esc", Vec::new), Action::Quit);
    }

    #[test]
    fn c_cancels_the_selected_running_run_only() {
        let mut s = DashState::new(DeviceInfo::default());
        assert_eq!(s.key("c", Vec::new), Action::None);
        assert!(s.notes.back().unwrap().contains("to cancel it"));
        assert!(s.flash.as_deref().unwrap().contains("to cancel it"));
        s.key("Tab", Vec::new);
        assert_eq!(s.flash, None, "the next key clears the footer message");
        let progress = EventBody::Progress {
            stage: "fit".into(),
            done: 1,
            total: 10,
        };
        s.apply(&run_event("/e/a.toml", "r1", 1.0, progress));
        assert_eq!(s.key("c", Vec::new), Action::Cancel("r1".into()));
        s.apply(&run_event(
            "/e/a.toml",
            "r1",
            2.0,
            EventBody::Finished {
                ok: false,
                elapsed_s: 2.0,
                error: Some("cancelled by the user".into()),
            },
        ));
        assert_eq!(s.runs[0].status, RunStatus::Cancelled);
        assert_eq!(s.key("c", Vec::new), Action::None);
    }

    #[test]
    fn plugin_text_is_drawn_escaped_and_metrics_stay_bounded() {
        let forged = "\r\x1b[2K✓ done\n[loupe] fake\x1b]0;t\x07\u{202e}";
        let mut s = DashState::new(DeviceInfo::default());
        let body = |body| run_event("/e/a.toml", "r1", 1.0, body);
        s.apply(&body(EventBody::Started {
            plugin: format!("p{forged}"),
            plugin_version: "1".into(),
            method: "m".into(),
            model: None,
            device: "cpu".into(),
            dir: "/runs/r1".into(),
        }));
        s.apply(&body(EventBody::Log {
            level: Level::Warn,
            message: forged.into(),
        }));
        s.apply(&body(EventBody::Progress {
            stage: forged.into(),
            done: 1,
            total: 2,
        }));
        s.apply(&body(EventBody::Finished {
            ok: false,
            elapsed_s: 1.0,
            error: Some(forged.into()),
        }));
        s.apply(&HostEvent::Plugin(RegistryEvent::Failed {
            path: "/p/x.wasm".into(),
            error: forged.into(),
            kept: None,
        }));
        let row = &s.runs[0];
        let mut shown: Vec<&str> = row.log.iter().map(String::as_str).collect();
        shown.extend(s.notes.iter().map(String::as_str));
        shown.push(&row.plugin);
        shown.push(&row.progress.as_ref().unwrap().0);
        shown.push(&s.plugins[0].last);
        for text in shown {
            assert!(
                !text.chars().any(crate::text::is_unsafe),
                "drawn raw: {text:?}"
            );
        }
        assert!(
            row.log
                .iter()
                .any(|l| l.starts_with("warning: \\r\\x1b[2K"))
        );

        // Endless metric names and points: bounded series of bounded length.
        for i in 0..(MAX_POINTS_PER_METRIC * 3) as u64 {
            s.apply(&body(EventBody::Metric {
                name: format!("m{}", i % (MAX_METRICS_PER_RUN as u64 * 2)),
                step: i,
                value: 0.0,
            }));
            s.apply(&body(EventBody::Metric {
                name: "loss".into(),
                step: i,
                value: i as f64,
            }));
        }
        let metrics = &s.runs[0].metrics;
        assert_eq!(metrics.len(), MAX_METRICS_PER_RUN);
        let loss = &metrics["loss"];
        assert!(loss.len() <= MAX_POINTS_PER_METRIC, "{}", loss.len());
        assert_eq!(loss[0].0, 0.0, "the series keeps its start");
        assert_eq!(
            loss.last().unwrap().0,
            (MAX_POINTS_PER_METRIC * 3 - 1) as f64
        );
    }
}
