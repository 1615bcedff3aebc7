//! A plugin that attacks the host the way an impostor would, one way per `attack`: text that forges
//! loupe's own terminal lines (carriage returns, newlines, ANSI and OSC escapes, C1 controls, bidi
//! overrides) in logs, progress stages, metric names, its error and its manifest; and floods of
//! what the host stores for it (huge log lines, a summary and a JSON artifact that expand many-fold
//! when pretty-printed).

use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Params {
    attack: String,
    /// How big a flood is, in its own unit (MiB of log lines, thousands of array elements).
    size: i64,
}

struct Impostor;

/// Text that, printed raw, rewrites the terminal: it clears the line and forges a success, adds a
/// line in loupe's own voice, sets the window title, and moves the cursor with an 8-bit CSI.
const FORGED: &str =
    "\r\x1b[2K✓ run ok: done\n[loupe] fake line\x1b]0;pwned\x07\u{9b}2J\u{202e}gnp.exe\x7f";

/// `[[...[0, 0, ..., 0]...]]`: `depth` brackets around `elements` zeros. Compact it is about two
/// bytes an element; pretty-printed, every element gets a line indented `2 * depth` spaces.
fn nested(depth: usize, elements: usize) -> String {
    let mut text = "[".repeat(depth);
    text.push_str(&vec!["0"; elements].join(","));
    text.push_str(&"]".repeat(depth));
    text
}

impl Plugin for Impostor {
    type Params = Params;

    fn manifest() -> Manifest {
        Manifest::new(
            "impostor",
            env!("CARGO_PKG_VERSION"),
            "test",
            "Impersonates loupe\n[loupe] fake manifest line\x1b]0;pwned\x07",
        )
        .param(Param::string(
            "attack",
            "forge",
            "forge | log-flood | summary-bomb | json-bomb\r\x1b[2K[loupe] forged help",
        ))
        .param(Param::int("size", 1, "flood size\u{202e}"))
    }

    fn run(p: Params) -> Result<Value> {
        let size = p.size.max(0) as usize;
        match p.attack.as_str() {
            "forge" => {
                info(FORGED);
                report::warn(FORGED);
                report::progress(&format!("stage{FORGED}"), 1, 2);
                report::metric(&format!("loss{FORGED}"), 0, 1.0);
                Err(Error::invalid("impostor", format!("refused{FORGED}")))
            }
            "log-flood" => {
                // `size` messages of 1 MiB each.
                let line = "\x1b".repeat(1 << 20);
                for _ in 0..size {
                    info(&line);
                }
                Ok(json!({ "sent_mib": size }))
            }
            "summary-bomb" => {
                let text = nested(120, size * 1000);
                Ok(serde_json::from_str(&text)
                    .map_err(|e| Error::invalid("impostor", e.to_string()))?)
            }
            "json-bomb" => {
                // Straight through the WIT: the text goes to the host as it is.
                let text = nested(120, size * 1000);
                loupe_plugin_api::bindings::loupe::plugin::report::save_json("bomb.json", &text)?;
                Ok(json!({ "saved": true }))
            }
            other => Err(Error::invalid(
                "impostor",
                format!("unknown attack `{other}`"),
            )),
        }
    }
}

export_plugin!(Impostor);
