//! Drawing the dashboard state: four panels (plugins, runs, the selected run, the device), a key line,
//! the help and the experiment picker. Pure rendering: nothing here changes the state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Chart, Clear, Dataset, GraphType, List, ListItem, Paragraph, Row, Table,
};

use super::state::{DashState, Panel, RunStatus};

const KEYS: &str = "Tab panel  ↑↓ select  r start a run  c cancel  m metric  ? help  q quit";

const HELP: &[&str] = &[
    "Tab / Shift-Tab  move between panels",
    "↑ ↓ (k j)        select a plugin or a run",
    "r                start a run: pick an experiment file",
    "c                cancel the selected run",
    "m                chart the selected run's next metric",
    "?                this help (any key closes it)",
    "q / Esc / Ctrl-C quit (asks first while runs go)",
    "",
    "Drop .wasm files into the plugin directory to (re)load",
    "them; drop .toml experiment files into the experiment",
    "directory to run them.",
];

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

pub fn draw(frame: &mut Frame, state: &DashState) {
    let [top, runs, run, keys] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [plugins, device] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(24)]).areas(top);
    draw_plugins(frame, plugins, state);
    draw_device(frame, device, state);
    draw_runs(frame, runs, state);
    draw_run(frame, run, state);
    let footer = match &state.flash {
        Some(message) => {
            Paragraph::new(message.as_str()).style(Style::default().add_modifier(Modifier::BOLD))
        }
        None => Paragraph::new(KEYS),
    };
    frame.render_widget(footer, keys);
    if state.confirm_quit {
        let going = state.runs_going();
        let runs = if going == 1 { "run is" } else { "runs are" };
        draw_popup(
            frame,
            "quit?",
            vec![
                format!("{going} {runs} still going and would be abandoned"),
                "(their run directories keep what they wrote).".into(),
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
                        .map_or(String::new(), |n| n.to_string_lossy().into());
                    format!("{} {name}", if i == *at { ">" } else { " " })
                })
                .collect()
        };
        draw_popup(frame, "start a run (Enter; Esc to close)", lines);
    }
}

pub fn draw_plugins(frame: &mut Frame, area: Rect, state: &DashState) {
    let focused = state.focused() == Panel::Plugins;
    let rows = state.plugins.iter().enumerate().map(|(i, p)| {
        let style = if focused && i == state.selected_plugin {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        Row::new(vec![
            p.name.clone(),
            p.version.clone(),
            p.api.clone(),
            p.status.to_string(),
            p.last.clone(),
        ])
        .style(style)
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
    .block(block("plugins", focused));
    frame.render_widget(table, area);
}

pub fn draw_device(frame: &mut Frame, area: Rect, state: &DashState) {
    let d = &state.device;
    let mut lines = vec![Line::from(format!("backend {}", d.backend))];
    match (d.used, d.total) {
        (Some(used), Some(total)) => {
            lines.push(Line::from(format!(
                "memory {} / {} GiB",
                gib(used),
                gib(total)
            )));
            lines.push(Line::from(bar(used, total, 18)));
        }
        _ => lines.push(Line::from("memory: not known here")),
    }
    let running = state
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .count();
    let queued = state
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Queued)
        .count();
    lines.push(Line::from(format!("{running} running, {queued} queued")));
    let focused = state.focused() == Panel::Device;
    frame.render_widget(Paragraph::new(lines).block(block("device", focused)), area);
}

pub fn draw_runs(frame: &mut Frame, area: Rect, state: &DashState) {
    let focused = state.focused() == Panel::Runs;
    let rows = state.runs.iter().enumerate().map(|(i, r)| {
        let progress = match &r.progress {
            Some((stage, done, total)) => format!("{} {stage}", bar(*done, *total, 10)),
            None => String::new(),
        };
        let eta = r
            .eta()
            .map(|s| format!("ETA {}", seconds(s)))
            .unwrap_or_default();
        let style = if i == state.selected_run {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        Row::new(vec![
            r.id.clone(),
            r.plugin.clone(),
            r.status.word().to_string(),
            progress,
            eta,
        ])
        .style(style)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(24),
            Constraint::Length(9),
        ],
    )
    .header(Row::new(["run", "plugin", "status", "progress", "ETA"]))
    .block(block("runs", focused));
    frame.render_widget(table, area);
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
        Some((name, points)) if !points.is_empty() => {
            let (x0, x1) = (
                points[0].0,
                points[points.len() - 1].0.max(points[0].0 + 1.0),
            );
            let (lo, hi) = points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.1), hi.max(p.1))
                });
            let hi = if hi > lo { hi } else { lo + 1.0 };
            let data = [Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .data(points)];
            let chart = Chart::new(data.to_vec())
                .block(Block::default().title(format!("{name} (m: next)")))
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
        });
        let plugins = PathBuf::from("/p");
        let loaded = |file: &str, name: &str| {
            HostEvent::Plugin(RegistryEvent::Loaded {
                path: plugins.join(file),
                name: name.into(),
                version: "0.1.0".into(),
                api_version: "0.2.0".into(),
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
                "│act-stats  0.1.0   0.2.0 ready   plugin act-stats 0.1.0 (A│",
                "│sae        0.1.0   0.2.0 broken  /p/sae.wasm: not a WebAss│",
                "└──────────────────────────────────────────────────────────┘",
            ],
        );
    }

    #[test]
    fn device_panel() {
        let state = session();
        assert_lines(
            render(24, 6, |f| draw_device(f, f.area(), &state)),
            &[
                "┌device────────────────┐",
                "│backend cpu           │",
                "│memory 0.5 / 24.0 GiB │",
                "│[..................]  │",
                "│1 running, 1 queued   │",
                "└──────────────────────┘",
            ],
        );
    }

    #[test]
    fn runs_panel() {
        let state = session();
        assert_lines(
            render(80, 6, |f| draw_runs(f, f.area(), &state)),
            &[
                "┌[runs]────────────────────────────────────────────────────────────────────────┐",
                "│run                       plugin    status  progress                 ETA      │",
                "│001-sae                   sae       done                                      │",
                "│next.toml                           queued                                    │",
                "│002-stats                           running [###.......] batches     ETA 30s  │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
            ],
        );
    }

    #[test]
    fn run_panel_charts_a_metric_and_tails_the_log() {
        let mut state = session();
        assert_lines(
            render(80, 8, |f| draw_run(f, f.area(), &state)),
            &[
                "┌run 001-sae───────────────────────────────────────────────────────────────────┐",
                "│train/l0 (m: next)                         started sae on cpu                 │",
                "│64.000│⠉⠑⠒⠒⠒⠤⠤⠤⠤⣀⣀⣀⡀                       warning: 3 dead latents            │",
                "│      │            ⠈⠉⠑⠒⠒⠒⠤⠤⠤⠤⣀⣀            finished in 21.0 s                 │",
                "│45.000│                        ⠉⠉⠉⠑⠒⠒⠒⠢⠤⠤⠤⣀                                   │",
                "│      └────────────────────────────────────                                   │",
                "│      0                                  19                                   │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
            ],
        );
        // `m` moves the chart to the next metric (the loss, falling from 1 to 0.05).
        state.key("m", Vec::new);
        let lines = render(80, 8, |f| draw_run(f, f.area(), &state));
        assert!(lines[1].contains("train/loss (m: next)"), "{lines:#?}");
        assert!(lines[2].starts_with("│1.000│"), "{lines:#?}");
        assert!(lines[4].starts_with("│0.050│"), "{lines:#?}");
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
                .any(|l| l.contains("2 runs are still going and would be abandoned")),
            "{screen:#?}"
        );
        state.key("x", Vec::new);
        state.flash("cancelling 001-sae".into());
        let screen = render(80, 24, |f| draw(f, &state));
        assert!(!screen.iter().any(|l| l.contains("┌quit?")));
        assert_eq!(screen[23].trim_end(), "cancelling 001-sae");
    }
}
