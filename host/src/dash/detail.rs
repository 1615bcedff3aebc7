//! The detail view's text: everything the dashboard knows of one run or plugin, as lines to wrap
//! and scroll (the panels cut long text to their width; this is where it is read whole). Every
//! line is built from text the state already escaped.

use super::state::{PluginRow, RunRow};

/// The detail view's text area on a terminal of `size` (columns, rows): the whole screen above
/// the key line, inside the view's border.
pub fn text_area(size: (u16, u16)) -> (usize, usize) {
    (
        usize::from(size.0.saturating_sub(2)).max(1),
        usize::from(size.1.saturating_sub(3)),
    )
}

/// `line` cut into pieces of at most `width` characters, at the last space of a piece when there is
/// one in its second half (so words stay whole), else mid-word (a long path or number). Pieces after
/// the first keep the line's indentation, so an indented block stays one block.
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let indent = line.chars().take_while(|&c| c == ' ').count();
    let indent = if indent * 2 <= width { indent } else { 0 };
    let mut out: Vec<String> = Vec::new();
    let mut rest: Vec<char> = line.chars().collect();
    loop {
        let (room, prefix) = if out.is_empty() {
            (width, 0)
        } else {
            (width - indent, indent)
        };
        if rest.len() <= room {
            out.push(" ".repeat(prefix) + &rest.into_iter().collect::<String>());
            return out;
        }
        let cut = rest[..=room]
            .iter()
            .rposition(|&c| c == ' ')
            .filter(|&at| at > room / 2)
            .unwrap_or(room);
        let piece: String = rest[..cut].iter().collect();
        out.push(" ".repeat(prefix) + piece.trim_end());
        // The space the line broke at is not carried to the next line.
        let skip = cut + usize::from(rest.get(cut) == Some(&' '));
        rest.drain(..skip.min(rest.len()));
    }
}

pub fn wrap_all(lines: &[String], width: usize) -> Vec<String> {
    lines.iter().flat_map(|l| wrap(l, width)).collect()
}

/// A heading and its text, indented under it.
fn section(lines: &mut Vec<String>, heading: &str, body: impl IntoIterator<Item = String>) {
    lines.push(String::new());
    lines.push(heading.to_string());
    lines.extend(body.into_iter().map(|l| format!("  {l}")));
}

/// A run's title and lines: its state, where it came from, its metrics, its whole error, its
/// summary and its log.
pub fn run(r: &RunRow) -> (String, Vec<String>) {
    let mut lines = vec![
        format!("run         {}", r.id),
        format!(
            "state       {}{}",
            r.status.word(),
            if r.history {
                " (found in the output directory at start)"
            } else {
                ""
            }
        ),
        format!("plugin      {}", r.plugin),
        format!(
            "experiment  {}",
            crate::text::shown(&r.experiment.display().to_string())
        ),
    ];
    if let Some(dir) = &r.dir {
        lines.push(format!(
            "directory   {}",
            crate::text::shown(&dir.display().to_string())
        ));
    }
    if r.t > 0.0 {
        lines.push(format!("time        {:.1} s", r.t));
    }
    if let Some((stage, done, total)) = &r.progress {
        lines.push(format!("progress    {stage}: {done} of {total}"));
    }
    if !r.metrics.is_empty() {
        let metrics = r.metrics.iter().map(|(name, points)| {
            let last = points.last().map_or(String::new(), |p| {
                format!(", last {} at step {}", value(p.1), p.0)
            });
            format!("{name}: {} points{last}", points.len())
        });
        section(&mut lines, "metrics", metrics);
    }
    if let Some(error) = &r.error {
        section(&mut lines, "error", [error.clone()]);
    }
    let summary: Vec<String> = match (&r.summary, r.status.is_going(), &r.dir) {
        (Some(summary), _, _) => summary.clone(),
        (None, true, _) => vec!["(written when the run ends)".into()],
        (None, false, Some(_)) => vec!["(summary.json is not written yet)".into()],
        (None, false, None) => vec!["(the run never started: no run directory)".into()],
    };
    section(&mut lines, "summary", summary);
    section(
        &mut lines,
        &format!("log (the last {} lines)", r.log.len()),
        r.log.iter().cloned(),
    );
    (format!("run {}", r.id), lines)
}

/// A plugin's title and lines: its file, manifest, status and the whole load error.
pub fn plugin(p: &PluginRow) -> (String, Vec<String>) {
    let mut lines = vec![
        format!("plugin      {}", p.name),
        format!("file        {}", p.path),
        format!("version     {}", p.version),
        format!("API         {}", p.api),
        format!("status      {}", p.status),
    ];
    section(&mut lines, "last event", [p.last.clone()]);
    if let Some(error) = &p.error {
        section(&mut lines, "load error", [error.clone()]);
    }
    let title = if p.name.is_empty() { &p.file } else { &p.name };
    (format!("plugin {title}"), lines)
}

/// A metric's value in few characters: four decimals, or scientific notation when that would hide it.
pub fn value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_or_mid_word_and_loses_nothing() {
        assert_eq!(wrap("hello big world", 9), ["hello big", "world"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("ünïcödé ünïcödé", 8), ["ünïcödé", "ünïcödé"]);
        let long = "word ".repeat(500);
        let wrapped = wrap(&long, 37);
        assert!(wrapped.iter().all(|l| l.chars().count() <= 37));
        assert_eq!(
            wrapped.concat().replace(' ', ""),
            long.replace(' ', ""),
            "every character is kept"
        );
        assert_eq!(
            wrap("  indented text here", 12),
            ["  indented", "  text here"]
        );
        // Width 0 (a terminal too small) still makes progress.
        assert_eq!(wrap("ab", 0), ["a", "b"]);
    }

    #[test]
    fn values_stay_short_and_readable() {
        assert_eq!(value(0.41321), "0.4132");
        assert_eq!(value(0.0), "0.0000");
        assert_eq!(value(1.5e-6), "1.500e-6");
        assert_eq!(value(-2.5e9), "-2.500e9");
        assert_eq!(value(f64::NAN), "NaN");
    }
}
