//! Ctrl-C and SIGTERM during `loupe run`: the first asks every run to stop — each ends at its next
//! check as cancelled, with its events, artifacts so far and `summary.json` — and the file's later
//! runs end at once the same way; a second signal exits at once.

use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::runner::Cancellations;

/// Exit status after a second signal: 128 + SIGINT, as shells report an interrupted command.
const EXIT_INTERRUPTED: i32 = 130;

pub fn stop_runs_on_signals(cancellations: Arc<Cancellations>) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot listen for Ctrl-C")?;
    std::thread::Builder::new()
        .name("loupe-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                let name = if signal == SIGTERM { "SIGTERM" } else { "Ctrl-C" };
                if seen > 1 {
                    eprintln!("loupe: {name} again: stopping at once (runs going keep their events and artifacts so far)");
                    std::process::exit(EXIT_INTERRUPTED);
                }
                let going = cancellations.cancel_all();
                eprintln!(
                    "loupe: {name}: stopping {going} run(s) at their next check, each with its summary; \
                     {name} again stops at once"
                );
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
