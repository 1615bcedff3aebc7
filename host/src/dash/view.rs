//! Drawing the dashboard state: four panels (plugins, runs, the selected run, the device), a key line,
//! the detail view, the help and the experiment picker. Pure rendering: nothing here changes the
//! state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Clear, Dataset, GraphType, List, ListItem, Paragraph, Row, Table,
    TableState,
};

use super::detail;
use super::state::{
    DashState, PLUGINS_PANEL_HEIGHT, Panel, RunStatus, keep_visible, runs_panel_height, table_rows,
};

pub const KEYS: &str =
    "Tab panel  ↑↓ select  Enter detail  r run  c cancel  m/M metric  ? help  q quit";

pub const DETAIL_KEYS: &str = "↑↓ PgUp PgDn Home End scroll  Esc / Enter close";

const HELP: &[&str] = &[
    "Tab / Shift-Tab  move between panels",
    "↑ ↓ (k j)        select a plugin or a run",
    "PgUp PgDn        a page up / down (Home End: first / last)",
    "Enter            the selected run or plugin in full:",
    "                 state, whole error, summary, log",
    "                 (↑↓ PgUp PgDn Home End scroll, Esc closes)",
    "r                start a run: pick an experiment file",
    "c                cancel the selected run",
    "m / M            chart the selected run's next / previous metric",
    "?                this help (any key closes it)",
    "q / Esc / Ctrl-C quit (asks first while runs go)",
    "",
    "Drop .wasm files into the plugin directory to (re)load",
    "them; drop .toml experiment files into the experiment",
    "directory to run them. Runs found in the output",
    "directory at start are listed under this session's.",
];

/// Width of the runs list's id column: ids are `<date>-<time>-<name>`, see [`short_id`].
const RUN_ID_WIDTH: usize = 22;

fn block(title: &str, focused: bool) -> Block<'_> {
    let style = if focused {
        Style::default().add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    Block::bordered()
        .title(if focused {
            format!("[{title}]")
        } else {
            title.to_string()
        })
        .border_style(style)
}

/// `[#####.....]` for `done` of `total`, `width` characters inside the brackets.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64).round() as usize
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

fn seconds(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.0}m{:02.0}s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.0}s")
    }
}

/// GiB with one decimal; the unit is left to the caller.
fn gib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
}

/// Bytes in the largest unit that keeps a figure of at least 1.
fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A run id in `width` characters. Ids start with the UTC date and time (`20260102-230509-name`);
/// runs of a day share the date, so a long id loses its date first (the detail view shows it
/// whole), then its middle, keeping the time and the name's end, which tell runs apart.
pub fn short_id(id: &str, width: usize) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= width {
        return id.to_string();
    }
    let dated = chars.len() > 9 && chars[..8].iter().all(char::is_ascii_digit) && chars[8] == '-';
    let rest = if dated { &chars[9..] } else { &chars[..] };
    if rest.len() <= width {
        return rest.iter().collect();
    }
    let head = width / 2;
    let tail = width.saturating_sub(head + 1);
    let mut out: String = rest[..head].iter().collect();
    out.push('…');
    out.extend(&rest[rest.len() - tail..]);
    out
}

/// A run state's colour: failures stand out in red, successes in green, runs going in yellow
/// (queued in cyan), cancelled ones fade in grey.
pub fn status_style(status: RunStatus) -> Style {
    let color = match status {
        RunStatus::Failed => Color::Red,
        RunStatus::Done => Color::Green,
        RunStatus::Running => Color::Yellow,
        RunStatus::Queued => Color::Cyan,
        RunStatus::Cancelled => Color::DarkGray,
        RunStatus::Unknown => return Style::default(),
    };
    Style::default().fg(color)
}

fn plugin_status_style(status: &str) -> Style {
    match status {
        "ready" => Style::default().fg(Color::Green),
        "broken" | "failed" => Style::default().fg(Color::Red),
        "removed" => Style::default().fg(Color::DarkGray),
        _ => Style::default(),
    }
}

pub fn draw(frame: &mut Frame, state: &DashState) {
    let area = frame.area();
    let [body, keys] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    if state.detail.is_some() {
        draw_detail(frame, body, state);
    } else {
        let [top, runs, run] = Layout::vertical([
            Constraint::Length(PLUGINS_PANEL_HEIGHT),
            Constraint::Length(runs_panel_height(area.height)),
            Constraint::Min(6),
        ])
        .areas(body);
        let [plugins, device] =
            Layout::horizontal([Constraint::Min(40), Constraint::Length(24)]).areas(top);
        draw_plugins(frame, plugins, state);
        draw_device(frame, device, state);
        draw_runs(frame, runs, state);
        draw_run(frame, run, state);
    }
    let footer = match &state.flash {
        Some(message) => {
            Paragraph::new(message.as_str()).style(Style::default().add_modifier(Modifier::BOLD))
        }
        None if state.detail.is_some() => Paragraph::new(DETAIL_KEYS),
        None => Paragraph::new(KEYS),
    };
    frame.render_widget(footer, keys);
    draw_popups(frame, state);
}

fn draw_popups(frame: &mut Frame, state: &DashState) {
    if state.confirm_quit {
        let going = state.runs_going();
        let runs = if going == 1 { "run is" } else { "runs are" };
        draw_popup(
            frame,
            "quit?",
            vec![
                format!("{going} {runs} still going: quitting cancels them,"),
                "and each ends with its summary.json.".into(),
                String::new(),
                "q / Esc / Ctrl-C: quit     any other key: stay".into(),
            ],
        );
    } else if state.show_help {
        draw_popup(frame, "help", HELP.iter().map(|l| l.to_string()).collect());
    } else if let Some((files, at)) = &state.picker {
        let lines = if files.is_empty() {
            vec!["no .toml files in the experiment directory".to_string()]
        } else {
            files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = f
                        .file_name()
                        .map_or(String::new(), |n| crate::text::shown(&n.to_string_lossy()));
                    format!("{} {name}", if i == *at { ">" } else { " " })
                })
                .collect()
        };
        draw_popup(frame, "start a run (Enter; Esc to close)", lines);
    }
}

/// A table's scroll state: the selection (when shown) kept visible among the rows `area` holds.
fn table_state(area: Rect, offset: usize, selected: Option<usize>, len: usize) -> TableState {
    let offset = match selected {
        Some(s) => keep_visible(offset, s, table_rows(area.height), len),
        None => offset.min(len.saturating_sub(table_rows(area.height))),
    };
    TableState::default()
        .with_offset(offset)
        .with_selected(selected.filter(|_| len > 0))
}

pub fn draw_plugins(frame: &mut Frame, area: Rect, state: &DashState) {
    let focused = state.focused() == Panel::Plugins;
    let rows = state.plugins.iter().map(|p| {
        Row::new(vec![
            Cell::from(p.name.as_str()),
            Cell::from(p.version.as_str()),
            Cell::from(p.api.as_str()),
            Cell::from(p.status).style(plugin_status_style(p.status)),
            Cell::from(p.last.as_str()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(Row::new([
        "plugin",
        "version",
        "API",
        "status",
        "last event",
    ]))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block("plugins", focused));
    // The selection shows only while the panel has the focus (it is what Enter would open).
    let selected = focused.then_some(state.selected_plugin);
    let mut table_state = table_state(area, state.plugins_offset, selected, state.plugins.len());
    frame.render_stateful_widget(table, area, &mut table_state);
}

pub fn draw_device(frame: &mut Frame, area: Rect, state: &DashState) {
    let d = &state.device;
    let mut lines = vec![Line::from(format!("backend {}", d.backend))];
    if let Some(tensors) = d.tensors {
        lines.push(Line::from(format!("tensors {}", bytes(tensors))));
    }
    // On the CPU the figure is the process's resident memory (tensors, weights, plugins).
    let used = if d.tensors.is_some() { "RSS" } else { "memory" };
    match (d.used, d.total) {
        (Some(u), Some(total)) => {
            lines.push(Line::from(format!(
                "{used} {} / {} GiB",
                gib(u),
                gib(total)
            )));
            lines.push(Line::from(bar(u, total, 18)));
        }
        _ => lines.push(Line::from(format!("{used}: not known here"))),
    }
    let count = |s: RunStatus| state.runs.iter().filter(|r| r.status == s).count();
    lines.push(Line::from(format!(
        "{} running, {} queued",
        count(RunStatus::Running),
        count(RunStatus::Queued)
    )));
    let focused = state.focused() == Panel::Device;
    frame.render_widget(Paragraph::new(lines).block(block("device", focused)), area);
}

/// The runs panel's title: where the selection is once the list scrolls, and how many rows are
/// history.
fn runs_title(state: &DashState, rows: usize) -> String {
    let mut title = "runs".to_string();
    let len = state.runs.len();
    if len > rows {
        title += &format!(" · {} of {len}", state.selected_run + 1);
    }
    let earlier = state.runs.iter().filter(|r| r.history).count();
    if earlier > 0 {
        title += &format!(" · {earlier} earlier");
    }
    title
}

pub fn draw_runs(frame: &mut Frame, area: Rect, state: &DashState) {
    let focused = state.focused() == Panel::Runs;
    let rows = state.runs.iter().map(|r| {
        let progress = match &r.progress {
            Some((stage, done, total)) => format!("{} {stage}", bar(*done, *total, 10)),
            None => String::new(),
        };
        let eta = r
            .eta()
            .map(|s| format!("ETA {}", seconds(s)))
            .unwrap_or_default();
        Row::new(vec![
            Cell::from(short_id(&r.id, RUN_ID_WIDTH)),
            Cell::from(r.plugin.as_str()),
            Cell::from(r.status.word()).style(status_style(r.status)),
            Cell::from(progress),
            Cell::from(eta),
        ])
    });
    let title = runs_title(state, table_rows(area.height));
    let table = Table::new(
        rows,
        [
            Constraint::Length(RUN_ID_WIDTH as u16),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Min(20),
            Constraint::Length(9),
        ],
    )
    .header(Row::new(["run", "plugin", "status", "progress", "ETA"]))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block(&title, focused));
    let mut table_state = table_state(
        area,
        state.runs_offset,
        Some(state.selected_run),
        state.runs.len(),
    );
    frame.render_stateful_widget(table, area, &mut table_state);
}

pub fn draw_run(frame: &mut Frame, area: Rect, state: &DashState) {
    let focused = state.focused() == Panel::Run;
    let title = match state.selected_run() {
        Some(r) => format!("run {}", r.id),
        None => "run".to_string(),
    };
    let outer = block(&title, focused);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [chart_area, log_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(inner);

    match state.chart() {
        Some(c) if !c.points.is_empty() => {
            let points = c.points;
            let (x0, x1) = (
                points[0].0,
                points[points.len() - 1].0.max(points[0].0 + 1.0),
            );
            let (lo, hi) = points
                .iter()
                .filter(|p| p.1.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.1), hi.max(p.1))
                });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let hi = if hi > lo { hi } else { lo + 1.0 };
            let data = [Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .data(points)];
            let last = points[points.len() - 1].1;
            let chart = Chart::new(data.to_vec())
                .block(Block::default().title(format!(
                    "{} · {} of {} · {}",
                    c.name,
                    c.position,
                    c.count,
                    detail::value(last)
                )))
                .x_axis(
                    Axis::default()
                        .bounds([x0, x1])
                        .labels([format!("{x0:.0}"), format!("{x1:.0}")]),
                )
                .y_axis(
                    Axis::default()
                        .bounds([lo, hi])
                        .labels([format!("{lo:.3}"), format!("{hi:.3}")]),
                );
            frame.render_widget(chart, chart_area);
        }
        _ => frame.render_widget(Paragraph::new("no metrics yet"), chart_area),
    }

    let height = log_area.height as usize;
    let log: Vec<ListItem> = match state.selected_run() {
        Some(r) => r
            .log
            .iter()
            .skip(r.log.len().saturating_sub(height))
            .map(|l| ListItem::new(l.as_str()))
            .collect(),
        None => state
            .notes
            .iter()
            .skip(state.notes.len().saturating_sub(height))
            .map(|l| ListItem::new(l.as_str()))
            .collect(),
    };
    frame.render_widget(List::new(log), log_area);
}

/// The detail view: the selected run's or plugin's whole text, wrapped to the screen, from the
/// state's scroll position.
pub fn draw_detail(frame: &mut Frame, area: Rect, state: &DashState) {
    let (Some(open), Some((title, lines))) = (state.detail, state.detail_text()) else {
        return;
    };
    let outer = Block::bordered();
    let inner = outer.inner(area);
    let wrapped = detail::wrap_all(&lines, usize::from(inner.width));
    let height = usize::from(inner.height);
    let first = open.scroll.min(wrapped.len().saturating_sub(height));
    let last = (first + height).min(wrapped.len());
    let title = format!(
        "{title} · lines {}–{last} of {}",
        (first + 1).min(last),
        wrapped.len()
    );
    let text: Vec<Line> = wrapped[first..last]
        .iter()
        .map(|l| Line::raw(l.as_str()))
        .collect();
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(text).block(outer.title(title)), area);
}

fn draw_popup(frame: &mut Frame, title: &str, lines: Vec<String>) {
    let area = frame.area();
    let width = (lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 4)
        .max(title.chars().count() + 4)
        .min(area.width as usize) as u16;
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    let text: Vec<Line> = lines
        .into_iter()
        .map(|l| Line::from(Span::raw(l)))
        .collect();
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title.to_string())),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::dash::state::DeviceInfo;
    use crate::events::{Event, EventBody, Level};
    use crate::plugin::RegistryEvent;
    use crate::watch::HostEvent;

    /// The state after a short synthetic session: two plugins (one replaced by a broken file), an
    /// experiment queued, one run finished with SAE-like metrics and one running.
    fn session() -> DashState {
        let mut state = DashState::new(DeviceInfo {
            backend: "cpu".into(),
            used: Some(512 << 20),
            total: Some(24 << 30),
            tensors: Some(96 << 20),
        });
        let plugins = PathBuf::from("/p");
        let loaded = |file: &str, name: &str| {
            HostEvent::Plugin(RegistryEvent::Loaded {
                path: plugins.join(file),
                name: name.into(),
                version: "0.1.0".into(),
                api_version: "0.3.0".into(),
                from_cache: true,
                load_time: Duration::from_millis(3),
                replaced: None,
            })
        };
        state.apply(&loaded("act-stats.wasm", "act-stats"));
        state.apply(&loaded("sae.wasm", "sae"));
        state.apply(&HostEvent::Plugin(RegistryEvent::Failed {
            path: plugins.join("sae.wasm"),
            error: "/p/sae.wasm: not a WebAssembly file".into(),
            kept: Some(("sae".into(), "0.1.0".into())),
        }));
        let exp = PathBuf::from("/e/train.toml");
        state.apply(&HostEvent::Queued(exp.clone()));
        let run = |id: &str, t: f64, body: EventBody| HostEvent::Run {
            experiment: exp.clone(),
            event: Event {
                run: id.into(),
                t,
                body,
            },
        };
        state.apply(&run(
            "001-sae",
            0.0,
            EventBody::Started {
                plugin: "sae".into(),
                plugin_version: "0.1.0".into(),
                method: "sae".into(),
                model: None,
                device: "cpu".into(),
                dir: "runs/001-sae".into(),
            },
        ));
        for step in 0..20u64 {
            let loss = 1.0 / (1.0 + step as f64);
            state.apply(&run(
                "001-sae",
                step as f64,
                EventBody::Metric {
                    name: "train/loss".into(),
                    step,
                    value: loss,
                },
            ));
            state.apply(&run(
                "001-sae",
                step as f64,
                EventBody::Metric {
                    name: "train/l0".into(),
                    step,
                    value: 64.0 - step as f64,
                },
            ));
        }
        state.apply(&run(
            "001-sae",
            20.0,
            EventBody::Log {
                level: Level::Warn,
                message: "3 dead latents".into(),
            },
        ));
        state.apply(&run(
            "001-sae",
            21.0,
            EventBody::Finished {
                ok: true,
                elapsed_s: 21.0,
                error: None,
            },
        ));
        state.apply(&HostEvent::ExperimentDone {
            path: exp.clone(),
            succeeded: 1,
            total: 1,
        });
        state.apply(&HostEvent::Queued(PathBuf::from("/e/next.toml")));
        state.apply(&HostEvent::Run {
            experiment: PathBuf::from("/e/stats.toml"),
            event: Event {
                run: "002-stats".into(),
                t: 10.0,
                body: EventBody::Progress {
                    stage: "batches".into(),
                    done: 1,
                    total: 4,
                },
            },
        });
        state
    }

    fn render(width: u16, height: u16, draw: impl FnOnce(&mut Frame)) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(draw).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    fn assert_lines(actual: Vec<String>, expected: &[&str]) {
        let expected: Vec<String> = expected.iter().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(actual, expected, "\nactual:\n{}\n", actual.join("\n"));
    }

    #[test]
    fn plugins_panel() {
        let state = session();
        assert_lines(
            render(60, 5, |f| draw_plugins(f, f.area(), &state)),
            &[
                "┌plugins───────────────────────────────────────────────────┐",
                "│plugin     version API   status  last event               │",
                "│act-stats  0.1.0   0.3.0 ready   plugin act-stats 0.1.0 (A│",
                "│sae        0.1.0   0.3.0 broken  /p/sae.wasm: not a WebAss│",
                "└──────────────────────────────────────────────────────────┘",
            ],
        );
    }

    #[test]
    fn device_panel() {
        let mut state = session();
        assert_lines(
            render(24, 7, |f| draw_device(f, f.area(), &state)),
            &[
                "┌device────────────────┐",
                "│backend cpu           │",
                "│tensors 96.0 MiB      │",
                "│RSS 0.5 / 24.0 GiB    │",
                "│[..................]  │",
                "│1 running, 1 queued   │",
                "└──────────────────────┘",
            ],
        );
        // On a GPU the figure is the device memory loupe's tensors hold.
        state.device = DeviceInfo {
            backend: "cuda:0".into(),
            used: Some(12 << 30),
            total: Some(24 << 30),
            tensors: None,
        };
        let lines = render(24, 7, |f| draw_device(f, f.area(), &state));
        assert_eq!(lines[2], "│memory 12.0 / 24.0 GiB│");
        assert_eq!(lines[3], "│[#########.........]  │");
    }

    #[test]
    fn runs_panel() {
        let state = session();
        assert_lines(
            render(80, 6, |f| draw_runs(f, f.area(), &state)),
            &[
                "┌[runs]────────────────────────────────────────────────────────────────────────┐",
                "│run                    plugin     status    progress                 ETA      │",
                "│001-sae                sae        done                                        │",
                "│next.toml                         queued                                      │",
                "│002-stats                         running   [###.......] batches     ETA 30s  │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
            ],
        );
    }

    #[test]
    fn run_panel_charts_a_metric_and_tails_the_log() {
        let mut state = session();
        // The run's loss by default, with its place among the run's metrics and its last value.
        assert_lines(
            render(80, 8, |f| draw_run(f, f.area(), &state)),
            &[
                "┌run 001-sae───────────────────────────────────────────────────────────────────┐",
                "│train/loss · 2 of 2 · 0.0500               started sae on cpu                 │",
                "│1.000│⠱⡀                                   warning: 3 dead latents            │",
                "│     │ ⠘⠤⣀                                 finished in 21.0 s                 │",
                "│0.050│    ⠉⠑⠒⠒⠒⠤⠤⠤⠤⠤⠤⠤⠤⠤⢄⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀                                   │",
                "│     └─────────────────────────────────────                                   │",
                "│     0                                   19                                   │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
            ],
        );
        // `m` moves the chart to the next metric (wrapping around to the L0, falling from 64 to 45).
        state.key("m", Vec::new);
        let lines = render(80, 8, |f| draw_run(f, f.area(), &state));
        assert!(
            lines[1].starts_with("│train/l0 · 1 of 2 · 45.0000 "),
            "{lines:#?}"
        );
        assert!(lines[2].starts_with("│64.000│"), "{lines:#?}");
        assert!(lines[4].starts_with("│45.000│"), "{lines:#?}");
        state.key("M", Vec::new);
        let lines = render(80, 8, |f| draw_run(f, f.area(), &state));
        assert!(lines[1].starts_with("│train/loss · 2 of 2"), "{lines:#?}");
    }

    #[test]
    fn the_whole_screen_fits_80_by_24_with_help_and_picker_on_top() {
        let mut state = session();
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(screen[0].starts_with("┌plugins") && screen[0].contains("┌device"));
        assert!(screen[7].starts_with("┌[runs]"));
        assert!(screen[14].starts_with("┌run 001-sae"));
        assert_eq!(screen[23], KEYS);

        state.key("?", Vec::new);
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(screen.iter().any(|l| l.contains("┌help")));
        assert!(screen.iter().any(|l| l.contains("q / Esc / Ctrl-C quit")));

        state.key("x", Vec::new); // any key closes the help
        state.key("r", || {
            vec![PathBuf::from("/e/a.toml"), PathBuf::from("/e/b.toml")]
        });
        state.key("Down", Vec::new);
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(
            screen.iter().any(|l| l.contains("│  a.toml")),
            "{screen:#?}"
        );
        assert!(
            screen.iter().any(|l| l.contains("│> b.toml")),
            "{screen:#?}"
        );
        // A small terminal still draws (everything shrinks) without panicking.
        render(40, 10, |f| draw(f, &state));

        // Quitting while a run is going asks first; a message answering a key replaces the key line.
        state.key("Esc", Vec::new);
        state.key("q", Vec::new);
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(screen.iter().any(|l| l.contains("┌quit?")), "{screen:#?}");
        assert!(
            screen
                .iter()
                .any(|l| l.contains("2 runs are still going: quitting cancels them")),
            "{screen:#?}"
        );
        state.key("x", Vec::new);
        state.flash("cancelling 001-sae".into());
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(!screen.iter().any(|l| l.contains("┌quit?")));
        assert_eq!(screen[23].trim_end(), "cancelling 001-sae");
    }

    use crate::dash::state::tests::run_event;

    fn started(plugin: &str, run: &str) -> EventBody {
        EventBody::Started {
            plugin: plugin.into(),
            plugin_version: "0.1.0".into(),
            method: "m".into(),
            model: None,
            device: "cpu".into(),
            dir: format!("/nonexistent/runs/{run}"),
        }
    }

    fn finished(ok: bool, error: Option<&str>) -> EventBody {
        EventBody::Finished {
            ok,
            elapsed_s: 1.0,
            error: error.map(str::to_string),
        }
    }

    /// A session of `n` runs with long ids (`20261202-2300SS-sae-layer-NN`), ending in turn done,
    /// failed, cancelled or still running, on a `columns`×`rows` terminal.
    fn many_runs(n: usize, columns: u16, rows: u16) -> DashState {
        let mut s = DashState::new(DeviceInfo {
            backend: "cpu".into(),
            ..DeviceInfo::default()
        });
        s.resize(columns, rows);
        for i in 0..n {
            let id = format!("20261202-2300{:02}-sae-layer-{i:02}", i % 60);
            let exp = format!("/e/{i}.toml");
            s.apply(&run_event(&exp, &id, 0.0, started("sae", &id)));
            let end = match i % 4 {
                0 => Some(finished(true, None)),
                1 => Some(finished(false, Some("boom"))),
                2 => Some(finished(false, Some("cancelled by the user"))),
                _ => None,
            };
            if let Some(end) = end {
                s.apply(&run_event(&exp, &id, 1.0, end));
            }
        }
        s
    }

    fn render_buffer(width: u16, height: u16, state: &DashState) -> ratatui::buffer::Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, state)).unwrap();
        terminal.backend().buffer().clone()
    }

    fn lines_of(buffer: &ratatui::buffer::Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    /// The style of the cell where `text` starts on the screen line that holds `on`.
    fn style_of(buffer: &ratatui::buffer::Buffer, on: &str, text: &str) -> Style {
        let lines = lines_of(buffer);
        let (y, line) = lines
            .iter()
            .enumerate()
            .find(|(_, l)| l.contains(on))
            .unwrap_or_else(|| panic!("no line with {on:?}:\n{}", lines.join("\n")));
        let at = line
            .find(text)
            .unwrap_or_else(|| panic!("{text:?} not in {line:?}"));
        let x = line[..at].chars().count() as u16;
        buffer[(x, y as u16)].style()
    }

    #[test]
    fn sixty_runs_scroll_and_keep_the_selection_visible_in_colour() {
        for (columns, rows) in [(120, 35), (80, 24)] {
            let mut state = many_runs(60, columns, rows);
            // The run started last is selected, and shown although it is the 60th.
            let buffer = render_buffer(columns, rows, &state);
            let screen = lines_of(&buffer).join("\n");
            assert!(screen.contains("runs · 60 of 60"), "{screen}");
            assert!(screen.contains("230059-sae-layer-59"), "{screen}");
            let style = style_of(&buffer, "230059-sae-layer-59", "230059-sae-layer-59");
            assert!(style.add_modifier.contains(Modifier::REVERSED), "{style:?}");
            // The narrower id column keeps the time and the name, not the shared date (the selected
            // run's panel below names it in full).
            assert!(
                screen.contains("│230059-sae-layer-59    sae        running"),
                "{screen}"
            );
            assert!(
                screen.contains("┌run 20261202-230059-sae-layer-59"),
                "{screen}"
            );

            state.key("Home", Vec::new);
            let screen = lines_of(&render_buffer(columns, rows, &state)).join("\n");
            assert!(screen.contains("runs · 1 of 60"), "{screen}");
            assert!(screen.contains("230000-sae-layer-00"), "{screen}");
            assert!(!screen.contains("sae-layer-59"), "{screen}");

            // Down past the panel's bottom scrolls it, the selection staying on screen.
            for _ in 0..30 {
                state.key("Down", Vec::new);
            }
            state.key("PageDown", Vec::new);
            let selected = state.selected_run;
            let visible = table_rows(runs_panel_height(rows));
            assert_eq!(selected, 30 + visible, "PgDn moves a page");
            let buffer = render_buffer(columns, rows, &state);
            let id = short_id(&state.runs[selected].id, RUN_ID_WIDTH);
            let style = style_of(&buffer, &id, &id);
            assert!(style.add_modifier.contains(Modifier::REVERSED), "{style:?}");
            let title = format!("runs · {} of 60", selected + 1);
            assert!(lines_of(&buffer).join("\n").contains(&title));

            // States in colour: failed red, done green, running yellow, cancelled grey.
            let colour = |i: usize| {
                let id = short_id(&state.runs[i].id, RUN_ID_WIDTH);
                let word = state.runs[i].status.word();
                style_of(&buffer, &id, word).fg
            };
            // The selection is at the panel's bottom: the four rows above it are on screen.
            for i in selected - 3..=selected {
                let want = [Color::Green, Color::Red, Color::DarkGray, Color::Yellow][i % 4];
                assert_eq!(colour(i), Some(want), "run {i}");
            }
            state.key("End", Vec::new);
            assert_eq!(state.selected_run, 59);
            // A small terminal still draws with many runs.
            render_buffer(40, 10, &state);
        }
    }

    #[test]
    fn the_runs_list_scrolled_to_its_sixth_row() {
        let mut state = many_runs(60, 80, 24);
        state.key("Home", Vec::new);
        for _ in 0..5 {
            state.key("Down", Vec::new);
        }
        // Moving down past the fourth row scrolled the list by two: the selection is its last row.
        assert_lines(
            render(80, 7, |f| draw_runs(f, f.area(), &state)),
            &[
                "┌[runs · 6 of 60]──────────────────────────────────────────────────────────────┐",
                "│run                    plugin     status    progress                 ETA      │",
                "│230002-sae-layer-02    sae        cancelled                                   │",
                "│230003-sae-layer-03    sae        running                                     │",
                "│230004-sae-layer-04    sae        done                                        │",
                "│230005-sae-layer-05    sae        failed                                      │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
            ],
        );
        let mut terminal = Terminal::new(TestBackend::new(80, 7)).unwrap();
        terminal.draw(|f| draw_runs(f, f.area(), &state)).unwrap();
        let buffer = terminal.backend().buffer();
        let selected = style_of(buffer, "layer-05", "failed");
        assert_eq!(selected.fg, Some(Color::Red));
        assert!(selected.add_modifier.contains(Modifier::REVERSED));
        let other = style_of(buffer, "layer-04", "230004");
        assert!(!other.add_modifier.contains(Modifier::REVERSED));
        // Up within the view does not scroll it.
        state.key("Up", Vec::new);
        let lines = render(80, 7, |f| draw_runs(f, f.area(), &state));
        assert!(lines[2].starts_with("│230002-sae-layer-02"), "{lines:#?}");
    }

    #[test]
    fn history_is_listed_under_this_sessions_runs() {
        let mut state = many_runs(2, 80, 24);
        let mut old = crate::dash::state::RunRow::new(
            "20250101-000000-old".into(),
            PathBuf::new(),
            RunStatus::Unknown,
        );
        old.plugin = "snmf".into();
        state.add_history(vec![old]);
        state.apply(&run_event(
            "/e/new.toml",
            "20261203-000000-new",
            0.0,
            started("sae", "new"),
        ));
        let ids: Vec<&str> = state.runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "20261202-230000-sae-layer-00",
                "20261202-230001-sae-layer-01",
                "20261203-000000-new",
                "20250101-000000-old"
            ]
        );
        assert_eq!(state.selected_run, 2, "the new run is selected");
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(screen[7].starts_with("┌[runs · 1 earlier]"), "{screen:#?}");
        assert!(
            screen[12].starts_with("│20250101-000000-old    snmf       unknown"),
            "{screen:#?}"
        );
    }

    #[test]
    fn sixteen_metrics_chart_by_name_with_position_and_value() {
        let mut state = many_runs(2, 120, 35);
        let names: Vec<String> = (0..15)
            .map(|i| format!("m{i:02}"))
            .chain(["loss".to_string()])
            .collect();
        for (run, base) in [
            ("20261202-230000-sae-layer-00", 0.0),
            ("20261202-230001-sae-layer-01", 1.0),
        ] {
            for (k, name) in names.iter().enumerate() {
                for step in 0..5u64 {
                    let value = if name == "loss" {
                        0.4132 + base
                    } else {
                        k as f64 + step as f64
                    };
                    state.apply(&run_event(
                        "/e/0.toml",
                        run,
                        1.0,
                        EventBody::Metric {
                            name: name.clone(),
                            step,
                            value,
                        },
                    ));
                }
            }
        }
        let title = |state: &DashState| {
            let screen = render(120, 35, |f| draw(f, state));
            let line = screen
                .iter()
                .find(|l| l.contains(" of 16 · "))
                .cloned()
                .unwrap_or_else(|| panic!("{screen:#?}"));
            let chart = line.split('│').nth(1).unwrap();
            chart.split("   ").next().unwrap().to_string()
        };
        // The run's loss by default (first by name here: 1 of 16), and its last value.
        assert_eq!(title(&state), "loss · 1 of 16 · 1.4132");
        state.key("m", Vec::new);
        state.key("m", Vec::new);
        state.key("m", Vec::new);
        assert_eq!(title(&state), "m02 · 4 of 16 · 6.0000");
        state.key("M", Vec::new);
        assert_eq!(title(&state), "m01 · 3 of 16 · 5.0000");
        // Another run charts the same metric, by name.
        state.key("Up", Vec::new);
        assert_eq!(state.selected_run, 0);
        assert_eq!(title(&state), "m01 · 3 of 16 · 5.0000");
        state.key("M", Vec::new);
        state.key("M", Vec::new);
        assert_eq!(title(&state), "loss · 1 of 16 · 0.4132");
        state.key("M", Vec::new);
        assert_eq!(title(&state), "m14 · 16 of 16 · 18.0000", "M wraps around");
    }

    /// A run that failed with a 2000-character error, after a 150-line log.
    fn failed_run(columns: u16, rows: u16) -> (DashState, String) {
        let mut state = many_runs(1, columns, rows);
        let id = state.runs[0].id.clone();
        for i in 0..150 {
            state.apply(&run_event(
                "/e/0.toml",
                &id,
                0.5,
                EventBody::Log {
                    level: Level::Info,
                    message: format!("log line {i:03}"),
                },
            ));
        }
        let mut error: String = (0..222).map(|i| format!("word{i:04} ")).collect();
        error.push_str("END\x1b[2J");
        assert!(error.len() >= 2000);
        // Reuses the run: its Finished event comes again with the long error.
        state.apply(&run_event(
            "/e/0.toml",
            &id,
            1.0,
            finished(false, Some(&error)),
        ));
        (state, error)
    }

    #[test]
    fn enter_opens_the_whole_text_of_a_run_wrapped_and_scrollable() {
        for (columns, rows) in [(80u16, 24u16), (120, 35)] {
            let (mut state, _) = failed_run(columns, rows);
            state.key("Enter", Vec::new);
            assert!(state.detail.is_some());
            assert_eq!(
                state.summary_wanted(),
                Some(PathBuf::from(format!(
                    "/nonexistent/runs/{}/summary.json",
                    state.runs[0].id
                )))
            );
            let screen = render(columns, rows, |f| draw(f, &state));
            let (width, height) = detail::text_area((columns, rows));
            assert!(
                screen[0].starts_with("┌run 20261202-230000-sae-layer-00 · lines 1–"),
                "{screen:#?}"
            );
            assert!(screen[1].starts_with("│run         20261202-230000-sae-layer-00"));
            assert!(screen[2].starts_with("│state       failed"));
            assert_eq!(screen[rows as usize - 1], DETAIL_KEYS);
            // The whole error, escaped, wrapped within the screen: every word is there.
            let (lines, page) = state.detail_page();
            assert_eq!(page, height);
            assert!(lines.iter().all(|l| l.chars().count() <= width));
            let text = lines.join(" ");
            for i in 0..222 {
                assert!(text.contains(&format!("word{i:04}")), "word {i} lost");
            }
            assert!(text.contains("END\\x1b[2J"), "escaped to the end");
            assert!(!text.chars().any(crate::text::is_unsafe));

            // End shows the log's last line at the bottom; PgUp goes back a page; Home to the top.
            state.key("End", Vec::new);
            let screen = render(columns, rows, |f| draw(f, &state));
            let last = lines.len();
            assert!(
                screen[0].contains(&format!("lines {}–{last} of {last}", last - height + 1)),
                "{}",
                screen[0]
            );
            for (row, line) in screen[1..=height].iter().zip(&lines[last - height..]) {
                assert_eq!(row.trim_end(), format!("│{line:width$}│").trim_end());
            }
            // The log's copy of the error is cut (as every log line is); the error section has it all.
            assert!(
                lines[last - 2..]
                    .join(" ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .ends_with("more bytes]"),
                "{screen:#?}"
            );
            let log_end = lines
                .iter()
                .rposition(|l| l.contains("log line 149"))
                .unwrap();
            assert!(lines[log_end + 1].starts_with("  failed: word0000"));
            state.key("Down", Vec::new);
            assert_eq!(
                state.detail.unwrap().scroll,
                last - height,
                "no scrolling past the end"
            );
            state.key("PageUp", Vec::new);
            assert_eq!(state.detail.unwrap().scroll, last - 2 * height);
            state.key("Home", Vec::new);
            assert_eq!(state.detail.unwrap().scroll, 0);
            state.key("Up", Vec::new);
            assert_eq!(state.detail.unwrap().scroll, 0);

            // A run started meanwhile does not take the selection from under the detail view.
            state.apply(&run_event(
                "/e/x.toml",
                "20261203-000000-x",
                0.0,
                started("sae", "x"),
            ));
            assert_eq!(state.selected_run, 0);
            let screen = render(columns, rows, |f| draw(f, &state));
            assert!(screen[1].contains("sae-layer-00"));
            state.key("Esc", Vec::new);
            assert!(state.detail.is_none());
            let screen = render(columns, rows, |f| draw(f, &state));
            assert!(screen[0].starts_with("┌plugins"));
            assert_eq!(screen[rows as usize - 1], KEYS);
        }
    }

    #[test]
    fn a_read_summary_and_a_plugins_load_error_show_in_full() {
        let (mut state, _) = failed_run(80, 24);
        state.key("Enter", Vec::new);
        state.set_summary(vec!["{".into(), "  \"ok\": false".into(), "}".into()]);
        assert_eq!(state.summary_wanted(), None, "read once");
        let (lines, _) = state.detail_page();
        let at = lines.iter().position(|l| l == "summary").unwrap();
        assert_eq!(lines[at + 2], "    \"ok\": false");
        state.key("Enter", Vec::new);
        assert!(state.detail.is_none(), "Enter closes too");

        let long = format!("{}: not a component\n{}", "/p/x.wasm", "why ".repeat(700));
        state.apply(&HostEvent::Plugin(RegistryEvent::Failed {
            path: "/p/x.wasm".into(),
            error: long.clone(),
            kept: None,
        }));
        state.panel = Some(Panel::Plugins);
        let buffer = render_buffer(80, 24, &state);
        assert_eq!(style_of(&buffer, "x.wasm", "failed").fg, Some(Color::Red));
        state.key("Enter", Vec::new);
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(
            screen[0].starts_with("┌plugin x.wasm · lines 1–21 of "),
            "{screen:#?}"
        );
        assert!(screen.iter().any(|l| l.contains("file        /p/x.wasm")));
        let (lines, _) = state.detail_page();
        let at = lines.iter().position(|l| l == "load error").unwrap();
        let text = lines[at..].join(" ");
        assert_eq!(text.matches("why").count(), 700, "the whole error");
        assert!(text.contains("not a component\\nwhy"), "escaped");
    }

    #[test]
    fn the_detail_view_of_a_broken_plugin() {
        let mut state = session();
        state.resize(60, 14);
        state.panel = Some(Panel::Plugins);
        state.key("Down", Vec::new);
        state.key("Enter", Vec::new);
        // The whole text, wrapped within the screen; wrapped lines keep their indentation.
        assert_lines(
            render(60, 14, |f| draw(f, &state)),
            &[
                "┌plugin sae · lines 1–11 of 12─────────────────────────────┐",
                "│plugin      sae                                           │",
                "│file        /p/sae.wasm                                   │",
                "│version     0.1.0                                         │",
                "│API         0.3.0                                         │",
                "│status      broken                                        │",
                "│                                                          │",
                "│last event                                                │",
                "│  /p/sae.wasm: not a WebAssembly file; sae 0.1.0 stays in │",
                "│  service                                                 │",
                "│                                                          │",
                "│load error                                                │",
                "└──────────────────────────────────────────────────────────┘",
                "↑↓ PgUp PgDn Home End scroll  Esc / Enter close",
            ],
        );
        state.key("End", Vec::new);
        let screen = render(60, 14, |f| draw(f, &state));
        assert!(
            screen[0].starts_with("┌plugin sae · lines 2–12 of 12"),
            "{screen:#?}"
        );
        assert_eq!(
            screen[11],
            "│  /p/sae.wasm: not a WebAssembly file                     │"
        );
        // A resize re-wraps and keeps the scroll within the text.
        state.resize(120, 35);
        assert_eq!(state.detail.unwrap().scroll, 0);
        let screen = render(120, 35, |f| draw(f, &state));
        assert!(
            screen[0].starts_with("┌plugin sae · lines 1–11 of 11"),
            "{screen:#?}"
        );
    }
}
