//! `loupe dash`: the terminal dashboard over the same host as `loupe watch`.

use anyhow::Result;
use clap::Args;

use super::watch::HostArgs;

#[derive(Args)]
#[command(after_help = "\
Panels: plugins (name, version, API version, status, last reload event), runs (this session's, then
those already in --out as history; queued, running, done, failed, cancelled, with progress and ETA),
the selected run (a live chart of one of its metrics, its position and current value, and its log) and
the device (backend, memory; on the CPU the bytes loupe's tensors hold and the process's resident
memory). Keys: Tab moves between panels, the arrows (PgUp, PgDn, Home, End) select, Enter opens the
selected run or plugin in full (its whole error, summary and log; Esc closes), r starts a run from an
experiment file in --experiments, c cancels the selected run (the others go on), m / M chart the next /
previous metric, ? shows help, q (or Ctrl-C) quits, asking first while runs are going.

Plugins and experiment files dropped into the directories are taken as `loupe watch` takes them; the
dashboard shows the same event stream `loupe watch` prints.")]
pub struct DashArgs {
    #[command(flatten)]
    host: HostArgs,
}

pub fn run(args: DashArgs) -> Result<()> {
    let cfg = args.host.config()?;
    // `cuda` and `auto` named as the device they resolve to (`cuda:0`, `cpu`).
    let asked = cfg.device.clone().unwrap_or_else(|| "auto".into());
    let backend = crate::device::resolve_device(&asked)
        .map(|d| d.to_string())
        .unwrap_or(asked);
    crate::dash::run(cfg, &backend)
}
