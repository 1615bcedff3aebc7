//! Runs already in the output directory when the dashboard starts, listed under this session's
//! runs so that a researcher sees what was run before (and can read it in the detail view), and
//! reading a run's `summary.json` for the detail view. Nothing here trusts the files: a run
//! directory with a missing, unreadable or malformed summary is listed as `unknown`.

use std::path::Path;

use serde::Deserialize;

use super::state::{RunRow, RunStatus};
use crate::text::shown;

/// History rows listed at most: the newest ones (run ids start with their UTC start time).
pub const HISTORY_RUNS: usize = 200;

/// Lines of a summary the detail view shows; a longer one is cut with a note.
const SUMMARY_LINES: usize = 5000;

/// A summary.json larger than this is not read into the dashboard (the runner allows large ones).
const SUMMARY_BYTES: u64 = 4 << 20;

/// What the history needs of `summary.json` (the plugin's own summary is skipped, unread).
#[derive(Deserialize)]
struct SummaryHead {
    ok: bool,
    error: Option<String>,
    elapsed_s: Option<f64>,
}

/// What it needs of `config.json`.
#[derive(Deserialize, Default)]
struct ConfigHead {
    experiment: Option<String>,
    plugin: Option<PluginHead>,
}

#[derive(Deserialize, Default)]
struct PluginHead {
    name: Option<String>,
    requested: Option<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| e.to_string())
}

/// The newest `limit` run directories of `out` (a missing or unreadable directory has none), newest
/// first, as rows of the runs list.
pub fn read_history(out: &Path, limit: usize) -> Vec<RunRow> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| !id.starts_with('.'))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.truncate(limit);
    ids.into_iter().map(|id| history_row(out, id)).collect()
}

/// One run directory as a row: state and time from its summary, plugin and experiment from its
/// config.
fn history_row(out: &Path, id: String) -> RunRow {
    let dir = out.join(&id);
    let config: ConfigHead = read_json(&dir.join("config.json")).unwrap_or_default();
    let mut row = RunRow::new(
        shown(&id),
        config.experiment.unwrap_or_default().into(),
        RunStatus::Unknown,
    );
    row.plugin = config
        .plugin
        .and_then(|p| p.name.or(p.requested))
        .map(|p| crate::text::shown_capped(&p, crate::text::MAX_SHOWN_NAME_CHARS))
        .unwrap_or_default();
    match read_json::<SummaryHead>(&dir.join("summary.json")) {
        Ok(s) => {
            row.status = RunStatus::ended(s.ok, s.error.as_deref());
            row.t = s.elapsed_s.filter(|t| t.is_finite()).unwrap_or(0.0);
            row.error = s
                .error
                .map(|e| crate::text::shown_capped(&e, super::state::DETAIL_ERROR_CHARS));
        }
        Err(e) => row.log.push_back(format!("summary.json: {}", shown(&e))),
    }
    row.dir = Some(dir);
    row
}

/// `summary.json` as the detail view shows it: pretty-printed, each line escaped, bounded. `None`
/// while the file does not exist (the runner writes it just after the run's last event: ask again).
pub fn summary_lines(path: &Path) -> Option<Vec<String>> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(vec![format!(
                "cannot read summary.json: {}",
                shown(&e.to_string())
            )]);
        }
    };
    if size > SUMMARY_BYTES {
        return Some(vec![format!(
            "summary.json is {:.1} MiB, too large to show here: open {}",
            size as f64 / (1u64 << 20) as f64,
            shown(&path.display().to_string())
        )]);
    }
    let value: serde_json::Value = match read_json(path) {
        Ok(v) => v,
        Err(e) => {
            return Some(vec![format!(
                "summary.json is not valid JSON: {}",
                shown(&e)
            )]);
        }
    };
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().take(SUMMARY_LINES).map(shown).collect();
    let total = text.lines().count();
    if total > SUMMARY_LINES {
        lines.push(format!(
            "… {} more lines in {}",
            total - SUMMARY_LINES,
            shown(&path.display().to_string())
        ));
    }
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn run_directories_become_history_rows_newest_first_and_bad_ones_unknown() {
        let out = tempfile::tempdir().unwrap();
        let out = out.path();
        let config =
            r#"{"experiment": "/e/sae.toml", "plugin": {"requested": "sae", "name": "sae"}}"#;
        let done = out.join("20260101-000000-a");
        write(&done, "config.json", config);
        write(
            &done,
            "summary.json",
            r#"{"ok": true, "error": null, "elapsed_s": 12.5, "summary": {"l0": 3}}"#,
        );
        let failed = out.join("20260102-000000-b");
        write(
            &failed,
            "config.json",
            r#"{"plugin": {"requested": "nope"}}"#,
        );
        write(
            &failed,
            "summary.json",
            "{\"ok\": false, \"error\": \"boom\\u001b[2J\", \"elapsed_s\": 1}",
        );
        let cancelled = out.join("20260103-000000-c");
        write(
            &cancelled,
            "summary.json",
            r#"{"ok": false, "error": "cancelled by the user"}"#,
        );
        write(&out.join("20260104-000000-d"), "summary.json", "{not json");
        std::fs::create_dir_all(out.join("20260105-000000-e")).unwrap();
        std::fs::create_dir_all(out.join(".hidden")).unwrap();
        std::fs::write(out.join("stray-file"), "x").unwrap();

        let rows = read_history(out, 100);
        let got: Vec<(&str, RunStatus, &str)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.status, r.plugin.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("20260105-000000-e", RunStatus::Unknown, ""),
                ("20260104-000000-d", RunStatus::Unknown, ""),
                ("20260103-000000-c", RunStatus::Cancelled, ""),
                ("20260102-000000-b", RunStatus::Failed, "nope"),
                ("20260101-000000-a", RunStatus::Done, "sae"),
            ]
        );
        assert_eq!(rows[4].t, 12.5);
        assert_eq!(rows[4].experiment, Path::new("/e/sae.toml"));
        assert_eq!(rows[3].error.as_deref(), Some("boom\\x1b[2J"), "escaped");
        assert!(
            rows[1].log[0].starts_with("summary.json: "),
            "{:?}",
            rows[1].log
        );
        assert_eq!(read_history(out, 2).len(), 2, "bounded, newest kept");
        assert!(read_history(&out.join("missing"), 10).is_empty());

        // The detail view's summary: pretty, escaped, and `None` until the file exists.
        let lines = summary_lines(&done.join("summary.json")).unwrap();
        assert!(lines.iter().any(|l| l.trim() == "\"l0\": 3"), "{lines:?}");
        let lines = summary_lines(&failed.join("summary.json")).unwrap();
        assert!(lines.iter().all(|l| !l.chars().any(crate::text::is_unsafe)));
        assert!(summary_lines(&out.join("20260105-000000-e/summary.json")).is_none());
        let bad = summary_lines(&out.join("20260104-000000-d/summary.json")).unwrap();
        assert!(
            bad[0].starts_with("summary.json is not valid JSON"),
            "{bad:?}"
        );
    }
}
