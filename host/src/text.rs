//! Showing untrusted text on a terminal. Plugins choose their log lines, progress stages, metric names,
//! error messages and manifest strings; printed raw, a newline or carriage return would let them forge
//! loupe's own lines, and an escape sequence (ANSI colours, cursor moves, OSC window titles and
//! hyperlinks) would let them redraw the screen. Everything a plugin wrote goes through [`shown`] (or
//! [`shown_capped`]) before it is printed or drawn: the result is one line of visible characters.
//! Files (`events.jsonl`, `summary.json`) keep the raw text; their JSON encoding escapes it.

use std::fmt::Write as _;

/// The longest text [`shown`] keeps, in characters (after escaping); the rest is cut with a marker.
pub const MAX_SHOWN_CHARS: usize = 2000;

/// The longest name (plugin, stage, metric) shown, in characters.
pub const MAX_SHOWN_NAME_CHARS: usize = 120;

/// Whether `c` must not reach a terminal as itself: C0 controls (newline, carriage return and tab
/// included), DEL, C1 controls (8-bit CSI, OSC, NEL), the line and paragraph separators, and the
/// Unicode bidirectional overrides, embeddings, isolates and marks (which reorder what follows them).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
    )
}

/// `text` as one line of visible characters: `\n`, `\r` and `\t` as those two-character escapes,
/// every other unsafe character (see [`is_unsafe`]) as `\x1b` or `\u{202e}`; at most
/// [`MAX_SHOWN_CHARS`] characters, a longer text cut with a marker saying how much was left out.
pub fn shown(text: &str) -> String {
    shown_capped(text, MAX_SHOWN_CHARS)
}

/// [`shown`] with a cap of `max_chars` characters of escaped text.
pub fn shown_capped(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 32));
    let mut kept = 0;
    for (at, c) in text.char_indices() {
        let start = out.len();
        push_escaped(&mut out, c);
        kept += out[start..].chars().count();
        if kept > max_chars {
            out.truncate(start);
            let _ = write!(out, "… [{} more bytes]", text.len() - at);
            return out;
        }
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe(c) && (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `text` cut to at most `max_bytes` bytes (on a character boundary), with a marker when cut: for
/// text that is stored (in files) rather than shown, where escaping is the encoder's job.
pub fn cut(text: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max_bytes {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… [{} more bytes]",
        &text[..end],
        text.len() - end
    ))
}

/// A JSON formatter that also writes DEL, C1 controls, the line separators and the bidi controls as
/// `\uXXXX` escapes (JSON itself escapes only C0): a JSON line printed on a terminal then holds no
/// character a terminal acts on, and still parses back to exactly the text the plugin sent.
#[derive(Default)]
pub struct TerminalSafeJson;

impl serde_json::ser::Formatter for TerminalSafeJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut from = 0;
        for (at, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[from..at])?;
                // Every unsafe character is in the Basic Multilingual Plane: one \u escape.
                write!(writer, "\\u{:04x}", c as u32)?;
                from = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[from..])
    }
}

/// `value` as one line of JSON that is safe to print on a terminal (see [`TerminalSafeJson`]).
pub fn terminal_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TerminalSafeJson);
    if value.serialize(&mut ser).is_err() {
        return "null".into();
    }
    // The serializer writes only valid UTF-8 (strings from &str, escapes in ASCII).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes_on_one_line() {
        let forged =
            "\r\x1b[2K✓ run ok: done\n[loupe] fake line\x07\x7f\u{9b}2J\u{202e}txt.exe\u{2066}";
        let s = shown(forged);
        assert_eq!(
            s,
            "\\r\\x1b[2K✓ run ok: done\\n[loupe] fake line\\x07\\x7f\\u{9b}2J\\u{202e}txt.exe\\u{2066}"
        );
        assert!(!s.chars().any(is_unsafe), "{s:?}");
        // An OSC title sequence (ESC ] 0 ; title BEL) and a tab.
        assert_eq!(shown("\x1b]0;pwned\x07\tx"), "\\x1b]0;pwned\\x07\\tx");
        // Ordinary text, non-ASCII included, is untouched.
        assert_eq!(shown("loss 0.5 — ünïcödé ✓"), "loss 0.5 — ünïcödé ✓");
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let s = shown_capped(&"a".repeat(50), 10);
        assert_eq!(s, "aaaaaaaaaa… [40 more bytes]");
        // An escape is never split.
        let s = shown_capped("abcdefghi\n", 10);
        assert_eq!(s, "abcdefghi… [1 more bytes]");
        assert_eq!(shown_capped("short", 10), "short");
        assert!(shown(&"x".repeat(10 * MAX_SHOWN_CHARS)).chars().count() < MAX_SHOWN_CHARS + 40);
    }

    #[test]
    fn cut_keeps_character_boundaries() {
        assert_eq!(cut("héllo", 2), "h… [5 more bytes]");
        assert_eq!(cut("héllo", 64), "héllo");
    }

    #[test]
    fn terminal_json_escapes_what_json_does_not_and_round_trips() {
        let text = "a\u{7f}b\u{9b}c\u{202e}d\u{2028}e\n\x1b";
        let line = terminal_json(&serde_json::json!({ "message": text }));
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        assert!(
            line.contains("\\u007f") && line.contains("\\u202e"),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["message"], text);
    }
}
