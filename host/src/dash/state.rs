//! What the dashboard shows, as plain data: built only from the host's event stream (the same one
//! `loupe watch` prints), the runs already in the output directory at start, and the keys pressed,
//! so every panel can be tested without a terminal.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::events::{EventBody, Level};
use crate::plugin::RegistryEvent;
use crate::text::{MAX_SHOWN_NAME_CHARS, shown, shown_capped};
use crate::watch::HostEvent;

use super::detail;

/// Log lines kept per run, and host notes kept.
const LOG_LINES: usize = 200;

/// Metric series kept per run: a plugin inventing names past this has the rest left off the chart.
pub const MAX_METRICS_PER_RUN: usize = 64;

/// Points kept per metric series: past this, every other point is dropped (the chart keeps the
/// series' whole span at half the resolution), so a long run's chart costs bounded memory.
pub const MAX_POINTS_PER_METRIC: usize = 4096;

/// Characters of an error kept for the detail view. The runner already cuts a run's error to
/// [`crate::runner::MAX_ERROR_BYTES`]; escaping can lengthen it (`\n` is two characters), hence the
/// headroom: the detail view is where a researcher reads the whole message.
pub const DETAIL_ERROR_CHARS: usize = 4 * crate::runner::MAX_ERROR_BYTES;

/// The plugins panel's height, borders and header included: four plugins show at once.
pub const PLUGINS_PANEL_HEIGHT: u16 = 7;

/// The runs panel's height on a terminal `rows` high: 7 on 24 rows, and half of every row beyond,
/// so that a tall terminal shows more runs (the selected run's panel takes the rest).
pub fn runs_panel_height(rows: u16) -> u16 {
    7 + rows.saturating_sub(24) / 2
}

/// Table rows visible in a panel `height` rows high (less its two borders and the header).
pub fn table_rows(height: u16) -> usize {
    usize::from(height.saturating_sub(3)).max(1)
}

/// The first row to show so that `selected` is visible among `rows` rows of `len`, moving the view
/// from `offset` as little as possible (the list scrolls only when the selection would leave it).
pub fn keep_visible(offset: usize, selected: usize, rows: usize, len: usize) -> usize {
    let rows = rows.max(1);
    let offset = offset.min(len.saturating_sub(rows));
    if selected < offset {
        selected
    } else if selected >= offset + rows {
        selected + 1 - rows
    } else {
        offset
    }
}

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
    /// The file's whole path, escaped.
    pub path: String,
    pub name: String,
    pub version: String,
    pub api: String,
    /// `ready`, `broken` (the last load failed; an older version may still serve), `failed`, `removed`.
    pub status: &'static str,
    /// The last reload event, in words.
    pub last: String,
    /// Why the last load failed, in full (escaped), until a load succeeds.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
    /// A run found in the output directory whose summary is missing or unreadable (it may have
    /// been cut short, or still be going in another process).
    Unknown,
}

impl RunStatus {
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Unknown => "unknown",
        }
    }

    /// How a run that ended says so: `error` names a cancellation when the user stopped it.
    pub fn ended(ok: bool, error: Option<&str>) -> RunStatus {
        match (ok, error.is_some_and(|e| e.contains("cancelled"))) {
            (true, _) => RunStatus::Done,
            (false, true) => RunStatus::Cancelled,
            (false, false) => RunStatus::Failed,
        }
    }

    pub fn is_going(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
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
    /// The run's directory, once it has one.
    pub dir: Option<PathBuf>,
    /// Why the run failed, in full (escaped).
    pub error: Option<String>,
    /// `summary.json`, pretty-printed and escaped line by line, once it has been read (it is read
    /// when the detail view asks for it: the runner writes it just after the run's last event).
    pub summary: Option<Vec<String>>,
    /// Found in the output directory at start, rather than run by this dashboard.
    pub history: bool,
}

impl RunRow {
    pub fn new(id: String, experiment: PathBuf, status: RunStatus) -> RunRow {
        RunRow {
            id,
            experiment,
            plugin: String::new(),
            status,
            progress: None,
            t: 0.0,
            metrics: BTreeMap::new(),
            log: VecDeque::new(),
            dir: None,
            error: None,
            summary: None,
            history: false,
        }
    }

    /// Seconds left at the current stage's pace.
    pub fn eta(&self) -> Option<f64> {
        let (_, done, total) = self.progress.as_ref()?;
        (*done > 0 && done < total && self.status == RunStatus::Running)
            .then(|| self.t * (*total - *done) as f64 / *done as f64)
    }

    /// The metric the chart shows: `chosen` when this run has it, else the run's loss (the first
    /// name containing `loss`), else its first metric. Choosing by name (not position) keeps the
    /// chart on the same quantity while moving between runs and while new metrics arrive.
    pub fn charted(&self, chosen: Option<&str>) -> Option<&str> {
        let names = || self.metrics.keys().map(String::as_str);
        chosen
            .and_then(|c| self.metrics.get_key_value(c))
            .map(|(name, _)| name.as_str())
            .or_else(|| names().find(|n| n.contains("loss")))
            .or_else(|| names().next())
    }
}

/// The device panel's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub backend: String,
    /// Bytes used (on a GPU: loupe's tensors; on the CPU: this process's resident memory) and the
    /// device's (or machine's) total, when known.
    pub used: Option<u64>,
    pub total: Option<u64>,
    /// On the CPU backend, the bytes loupe's tensors hold now (part of `used`).
    pub tensors: Option<u64>,
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

/// Which selected item the detail view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailOf {
    Run,
    Plugin,
}

/// The detail view, while it is open: the selected run's or plugin's whole text, scrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detail {
    pub of: DetailOf,
    /// The first wrapped line shown.
    pub scroll: usize,
}

/// The chart panel's series, and where it stands among the run's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Charted<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    /// 1-based position among the run's metrics (in name order), and their number.
    pub position: usize,
    pub count: usize,
}

#[derive(Debug, Default)]
pub struct DashState {
    pub plugins: Vec<PluginRow>,
    /// This session's runs (in the order they were queued), then the history (newest first).
    pub runs: Vec<RunRow>,
    pub notes: VecDeque<String>,
    pub device: DeviceInfo,
    pub panel: Option<Panel>,
    pub selected_plugin: usize,
    pub selected_run: usize,
    /// The first plugin and run rows shown (the lists scroll to keep the selection visible).
    pub plugins_offset: usize,
    pub runs_offset: usize,
    /// The metric the chart shows, by name, once one was chosen with `m`/`M`; see [`RunRow::charted`].
    pub metric: Option<String>,
    pub detail: Option<Detail>,
    /// The terminal's size (columns, rows): how far a page scrolls and how many rows the lists show.
    pub size: (u16, u16),
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
            size: (80, 24),
            ..Self::default()
        }
    }

    pub fn focused(&self) -> Panel {
        self.panel.unwrap_or(Panel::Runs)
    }

    /// Runs queued or running: what quitting now would cancel.
    pub fn runs_going(&self) -> usize {
        self.runs.iter().filter(|r| r.status.is_going()).count()
    }

    /// Lists runs found in the output directory at start, under this session's runs.
    pub fn add_history(&mut self, rows: Vec<RunRow>) {
        self.runs.extend(rows.into_iter().map(|mut r| {
            r.history = true;
            r
        }));
        self.follow_selection();
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

    /// The row of a plugin file, added in file-name order the first time it is seen (the
    /// selection stays on the plugin it was on).
    fn plugin_row(&mut self, path: &Path) -> &mut PluginRow {
        let file = file_name(path);
        let i = match self.plugins.binary_search_by(|p| p.file.cmp(&file)) {
            Ok(i) => i,
            Err(i) => {
                if i <= self.selected_plugin && !self.plugins.is_empty() {
                    self.selected_plugin += 1;
                }
                self.plugins.insert(
                    i,
                    PluginRow {
                        file,
                        path: shown(&path.display().to_string()),
                        name: String::new(),
                        version: String::new(),
                        api: String::new(),
                        status: "failed",
                        last: String::new(),
                        error: None,
                    },
                );
                i
            }
        };
        &mut self.plugins[i]
    }

    /// Adds a row of this session, above the history; the selection stays on the row it was on.
    fn insert_run(&mut self, row: RunRow) -> usize {
        let at = self
            .runs
            .iter()
            .position(|r| r.history)
            .unwrap_or(self.runs.len());
        if self.selected_run >= at && self.selected_run < self.runs.len() {
            self.selected_run += 1;
        }
        self.runs.insert(at, row);
        at
    }

    /// Removes the rows `drop` picks; the selection stays on the row it was on, or the one before.
    fn remove_runs(&mut self, drop: impl Fn(&RunRow) -> bool) {
        let before = self.runs[..self.selected_run.min(self.runs.len())]
            .iter()
            .filter(|r| drop(r))
            .count();
        self.runs.retain(|r| !drop(r));
        self.selected_run = self.selected_run.saturating_sub(before);
    }

    /// Takes one event of the host's stream into account.
    pub fn apply(&mut self, event: &HostEvent) {
        self.apply_event(event);
        self.follow_selection();
    }

    fn apply_event(&mut self, event: &HostEvent) {
        match event {
            HostEvent::Plugin(e) => self.apply_plugin(e),
            HostEvent::Queued(path) => {
                self.insert_run(RunRow::new(
                    file_name(path),
                    path.clone(),
                    RunStatus::Queued,
                ));
            }
            HostEvent::Run { experiment, event } => self.apply_run(experiment, event),
            HostEvent::ExperimentDone { path, .. } => {
                // An experiment whose runs all failed before starting leaves only its queued row.
                self.remove_runs(|r| r.status == RunStatus::Queued && &r.experiment == path);
            }
            HostEvent::ExperimentFailed { path, error } => {
                for row in self.runs.iter_mut() {
                    if row.status == RunStatus::Queued && &row.experiment == path {
                        row.status = RunStatus::Failed;
                        row.log.push_back(shown(error));
                        row.error = Some(shown_capped(error, DETAIL_ERROR_CHARS));
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
                row.error = None;
            }
            RegistryEvent::Failed {
                path, kept, error, ..
            } => {
                let row = self.plugin_row(path);
                row.status = if kept.is_some() { "broken" } else { "failed" };
                row.last = line.clone();
                row.error = Some(shown_capped(error, DETAIL_ERROR_CHARS));
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
                let row = RunRow::new(
                    event.run.clone(),
                    experiment.to_path_buf(),
                    RunStatus::Running,
                );
                match queued {
                    Some(q) => {
                        self.runs[q] = row;
                        q
                    }
                    None => self.insert_run(row),
                }
            }
        };
        // A run just started is what the user most likely wants to watch; but not while they
        // read a detail view, which would change under them.
        if matches!(event.body, EventBody::Started { .. }) && self.detail.is_none() {
            self.selected_run = i;
        }
        let row = &mut self.runs[i];
        row.status = RunStatus::Running;
        row.t = event.t;
        match &event.body {
            EventBody::Started {
                plugin,
                device,
                dir,
                ..
            } => {
                row.plugin = shown_name(plugin);
                row.dir = Some(PathBuf::from(dir));
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
                row.status = RunStatus::ended(*ok, error.as_deref());
                row.error = error
                    .as_deref()
                    .map(|e| shown_capped(e, DETAIL_ERROR_CHARS));
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

    /// The selected run's chart: the metric's name and points, and its place among the run's.
    pub fn chart(&self) -> Option<Charted<'_>> {
        let run = self.selected_run()?;
        let name = run.charted(self.metric.as_deref())?;
        let (position, (name, points)) = run
            .metrics
            .iter()
            .enumerate()
            .find(|(_, (n, _))| n.as_str() == name)?;
        Some(Charted {
            name,
            points,
            position: position + 1,
            count: run.metrics.len(),
        })
    }

    /// Charts the selected run's next (`step` 1) or previous (-1) metric, in name order, and
    /// remembers it by name.
    fn step_metric(&mut self, step: isize) {
        let Some(chart) = self.chart() else {
            self.flash("the selected run has no metrics yet".into());
            return;
        };
        let at = (chart.position as isize - 1 + step).rem_euclid(chart.count as isize) as usize;
        self.metric = self
            .selected_run()
            .and_then(|r| r.metrics.keys().nth(at).cloned());
    }

    /// Keeps the selections within their lists and the lists scrolled to show them.
    fn follow_selection(&mut self) {
        let runs = table_rows(runs_panel_height(self.size.1));
        self.selected_run = self.selected_run.min(self.runs.len().saturating_sub(1));
        self.runs_offset = keep_visible(self.runs_offset, self.selected_run, runs, self.runs.len());
        let plugins = table_rows(PLUGINS_PANEL_HEIGHT);
        self.selected_plugin = self
            .selected_plugin
            .min(self.plugins.len().saturating_sub(1));
        self.plugins_offset = keep_visible(
            self.plugins_offset,
            self.selected_plugin,
            plugins,
            self.plugins.len(),
        );
    }

    /// The terminal was resized (or drawn for the first time at this size).
    pub fn resize(&mut self, columns: u16, rows: u16) {
        self.size = (columns, rows);
        self.follow_selection();
        self.scroll_detail(0);
    }

    /// The detail view's title and its lines before wrapping, while it is open.
    pub fn detail_text(&self) -> Option<(String, Vec<String>)> {
        match self.detail?.of {
            DetailOf::Run => self.selected_run().map(detail::run),
            DetailOf::Plugin => self.plugins.get(self.selected_plugin).map(detail::plugin),
        }
    }

    /// The detail view's lines wrapped to the screen, and how many show at once.
    pub fn detail_page(&self) -> (Vec<String>, usize) {
        let (width, height) = detail::text_area(self.size);
        let lines = self
            .detail_text()
            .map(|(_, lines)| detail::wrap_all(&lines, width))
            .unwrap_or_default();
        (lines, height)
    }

    /// Moves the detail view by `by` wrapped lines (to the end for `isize::MAX`), within the text.
    fn scroll_detail(&mut self, by: isize) {
        let Some(d) = self.detail else { return };
        let (lines, height) = self.detail_page();
        let last = lines.len().saturating_sub(height);
        let scroll = d.scroll.saturating_add_signed(by).min(last);
        self.detail = Some(Detail { scroll, ..d });
    }

    /// The `summary.json` the open detail view wants read, for an ended run whose summary is not
    /// read yet; the caller reads it ([`super::history::summary_lines`]) and gives it to
    /// [`Self::set_summary`].
    pub fn summary_wanted(&self) -> Option<PathBuf> {
        if self.detail?.of != DetailOf::Run {
            return None;
        }
        let run = self.selected_run()?;
        (!run.status.is_going() && run.summary.is_none())
            .then(|| run.dir.as_ref().map(|d| d.join("summary.json")))
            .flatten()
    }

    pub fn set_summary(&mut self, lines: Vec<String>) {
        if let Some(run) = self.runs.get_mut(self.selected_run) {
            run.summary = Some(lines);
        }
    }

    /// Quits at once when nothing is going; otherwise asks for the quit key again first, since the
    /// runs going would be cancelled.
    fn quit(&mut self) -> Action {
        if self.runs_going() == 0 {
            return Action::Quit;
        }
        self.confirm_quit = true;
        Action::None
    }

    /// Handles a key (its character, or a name such as `Tab`, `Up`, `Enter`, `Esc`, `PageDown`);
    /// `experiments` lists the files the picker offers.
    pub fn key(&mut self, key: &str, experiments: impl FnOnce() -> Vec<PathBuf>) -> Action {
        let action = self.key_action(key, experiments);
        self.follow_selection();
        action
    }

    fn key_action(&mut self, key: &str, experiments: impl FnOnce() -> Vec<PathBuf>) -> Action {
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
        if self.detail.is_some() {
            self.detail_key(key);
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
            "m" => self.step_metric(1),
            "M" => self.step_metric(-1),
            "Enter" => self.open_detail(focused),
            "Up" | "k" | "Down" | "j" | "PageUp" | "PageDown" | "Home" | "End" => {
                self.move_selection(focused, key)
            }
            _ => {}
        }
        Action::None
    }

    fn move_selection(&mut self, focused: Panel, key: &str) {
        let (at, len, page) = match focused {
            Panel::Plugins => (
                &mut self.selected_plugin,
                self.plugins.len(),
                table_rows(PLUGINS_PANEL_HEIGHT),
            ),
            _ => (
                &mut self.selected_run,
                self.runs.len(),
                table_rows(runs_panel_height(self.size.1)),
            ),
        };
        let last = len.saturating_sub(1);
        *at = match key {
            "Up" | "k" => at.saturating_sub(1),
            "Down" | "j" => (*at + 1).min(last),
            "PageUp" => at.saturating_sub(page),
            "PageDown" => (*at + page).min(last),
            "Home" => 0,
            _ => last,
        };
    }

    /// Enter: the detail view of the selected plugin (in the plugins panel) or run (elsewhere).
    fn open_detail(&mut self, focused: Panel) {
        let (of, any) = match focused {
            Panel::Plugins => (DetailOf::Plugin, !self.plugins.is_empty()),
            Panel::Runs | Panel::Run => (DetailOf::Run, !self.runs.is_empty()),
            Panel::Device => return,
        };
        if any {
            self.detail = Some(Detail { of, scroll: 0 });
        } else {
            self.flash("nothing selected to show".into());
        }
    }

    fn detail_key(&mut self, key: &str) {
        let page = detail::text_area(self.size).1.max(1) as isize;
        let by = match key {
            "Esc" | "Enter" | "q" => {
                self.detail = None;
                return;
            }
            "Up" | "k" => -1,
            "Down" | "j" => 1,
            "PageUp" => -page,
            "PageDown" | " " => page,
            "Home" | "g" => isize::MIN,
            "End" | "G" => isize::MAX,
            _ => return,
        };
        self.scroll_detail(by);
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
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::Event;

    /// A run event of `experiment`, as the service forwards it (shared with the view's tests).
    pub(crate) fn run_event(experiment: &str, run: &str, t: f64, body: EventBody) -> HostEvent {
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
            api_version: "0.3.0".into(),
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

    fn metric(run: &str, name: &str) -> HostEvent {
        run_event(
            "/e/a.toml",
            run,
            1.0,
            EventBody::Metric {
                name: name.into(),
                step: 0,
                value: 1.0,
            },
        )
    }

    #[test]
    fn the_charted_metric_is_remembered_by_name_and_defaults_to_the_loss() {
        let mut s = DashState::new(DeviceInfo::default());
        for name in ["acc", "l0", "train/loss"] {
            s.apply(&metric("r1", name));
        }
        s.apply(&metric("r2", "acc"));
        s.selected_run = 0;
        assert_eq!(s.chart().unwrap().name, "train/loss");
        s.key("m", Vec::new);
        assert_eq!(s.chart().unwrap().name, "acc", "wraps to the first");
        assert_eq!(s.metric.as_deref(), Some("acc"));
        // A new metric sorted before the chosen one does not move the chart off it.
        s.apply(&metric("r1", "aaa"));
        assert_eq!(s.chart().unwrap().name, "acc");
        assert_eq!(s.chart().unwrap().position, 2);
        s.key("M", Vec::new);
        assert_eq!(s.chart().unwrap().name, "aaa");
        // A run without the chosen metric shows its loss, else its first; the choice is kept.
        s.key("Down", Vec::new);
        assert_eq!(s.chart().unwrap().name, "acc");
        s.key("Up", Vec::new);
        assert_eq!(s.chart().unwrap().name, "aaa");
        // No metrics: `m` says so instead of charting nothing.
        s.apply(&run_event(
            "/e/b.toml",
            "r3",
            0.0,
            EventBody::Log {
                level: Level::Info,
                message: "x".into(),
            },
        ));
        s.selected_run = 2;
        s.key("m", Vec::new);
        assert!(s.flash.as_deref().unwrap().contains("no metrics"));
    }

    #[test]
    fn the_selection_stays_on_its_row_as_rows_come_and_go() {
        let mut s = DashState::new(DeviceInfo::default());
        s.add_history(vec![
            RunRow::new("old-2".into(), PathBuf::new(), RunStatus::Done),
            RunRow::new("old-1".into(), PathBuf::new(), RunStatus::Failed),
        ]);
        s.key("Down", Vec::new);
        assert_eq!(s.selected_run().unwrap().id, "old-1");
        // Queued rows go above the history; the selection follows its row.
        s.apply(&HostEvent::Queued("/e/a.toml".into()));
        s.apply(&HostEvent::Queued("/e/b.toml".into()));
        assert_eq!(s.selected_run().unwrap().id, "old-1");
        assert_eq!(s.runs[1].id, "b.toml");
        s.apply(&HostEvent::ExperimentDone {
            path: "/e/a.toml".into(),
            succeeded: 0,
            total: 1,
        });
        assert_eq!(s.selected_run().unwrap().id, "old-1");
        // A run that starts is selected.
        s.apply(&run_event(
            "/e/b.toml",
            "r1",
            0.0,
            EventBody::Started {
                plugin: "p".into(),
                plugin_version: "1".into(),
                method: "m".into(),
                model: None,
                device: "cpu".into(),
                dir: "/runs/r1".into(),
            },
        ));
        assert_eq!(s.selected_run().unwrap().id, "r1");
        assert_eq!(s.runs[0].dir.as_deref(), Some(Path::new("/runs/r1")));
        // Summaries are wanted only for ended runs, in the detail view.
        s.key("Enter", Vec::new);
        assert_eq!(s.summary_wanted(), None, "still running");
        s.key("Esc", Vec::new);
        s.key("End", Vec::new);
        s.key("Enter", Vec::new);
        assert_eq!(s.selected_run().unwrap().id, "old-1");
        assert_eq!(s.summary_wanted(), None, "no directory known");
    }

    #[test]
    fn keep_visible_scrolls_only_when_the_selection_would_leave_the_view() {
        assert_eq!(keep_visible(0, 3, 4, 60), 0);
        assert_eq!(keep_visible(0, 4, 4, 60), 1);
        assert_eq!(keep_visible(10, 12, 4, 60), 10);
        assert_eq!(keep_visible(10, 9, 4, 60), 9);
        assert_eq!(keep_visible(58, 59, 4, 60), 56, "never past the end");
        assert_eq!(keep_visible(5, 0, 0, 0), 0, "nothing to show");
    }
}
