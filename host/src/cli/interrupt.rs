//! Ctrl-C and SIGTERM during `loupe run`: the first asks every run to stop — a plugin that watches for
//! the request saves what it has within its grace period (`stop_grace_s`), any other is stopped at its
//! next check; each ends as cancelled with its events, artifacts and `summary.json` — and the file's
//! later runs end at once the same way. A second signal ends the grace at once (the summaries are
//! still written); if the process is still there a few seconds later, it exits.

use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::runner::Cancellations;

/// Exit status when the second signal's hard stop did not end the process: 128 + SIGINT, as shells
/// report an interrupted command.
const EXIT_INTERRUPTED: i32 = 130;

/// How long the hard stop after a second signal may take before the process exits regardless.
const HARD_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn stop_runs_on_signals(cancellations: Arc<Cancellations>) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot listen for Ctrl-C")?;
    std::thread::Builder::new()
        .name("loupe-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                let name = if signal == SIGTERM { "SIGTERM" } else { "Ctrl-C" };
                if seen > 2 {
                    std::process::exit(EXIT_INTERRUPTED);
                }
                if seen == 2 {
                    cancellations.stop_all_now();
                    eprintln!("loupe: {name} again: stopping at once, without the grace period (runs going keep their events and artifacts so far)");
                    // Whatever does not check the stop (a model still loading) is not waited for.
                    std::thread::spawn(|| {
                        std::thread::sleep(HARD_STOP_WAIT);
                        std::process::exit(EXIT_INTERRUPTED);
                    });
                    continue;
                }
                let going = cancellations.cancel_all();
                eprintln!(
                    "loupe: {name}: asking {going} run(s) to stop; each saves what it has and ends with its summary; \
                     {name} again stops at once"
                );
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
