//! `loupe selftest`: every engine op on the CPU and the GPU, the GPT-2 fixture parity, short timings.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::selftest::{self, Options};

#[derive(Args)]
pub struct SelftestArgs {
    /// The backend to check: `cuda[:N]` compares every op with the CPU on that GPU and fails if there is
    /// none; `cpu` runs the checks on the CPU alone; `auto` takes a GPU when one is usable.
    #[arg(long, default_value = "auto")]
    device: String,
    /// The reference fixtures: the folder holding `gpt2-ref/` and `deit-ref/` (configs, weights and
    /// the outputs Hugging Face transformers computed). Without it the fixture checks are skipped.
    #[arg(long, env = "LOUPE_FIXTURES", value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Leave out the GEMM and forward-pass timings.
    #[arg(long)]
    no_timing: bool,
    /// Also write every check, failure and timing to this JSON file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

pub fn run(args: SelftestArgs) -> Result<()> {
    let device = super::resolve_device(&args.device)?;
    if let Some(dir) = &args.fixtures
        && !dir.join("gpt2-ref").is_dir()
    {
        bail!(
            "--fixtures {}: no gpt2-ref/ folder there; give the folder that holds the reference fixtures",
            dir.display()
        );
    }
    let options = Options {
        device,
        fixtures: args.fixtures,
        timing: !args.no_timing,
    };
    let report = selftest::run(&options, &mut |step| eprintln!("selftest: {step}"))?;
    for row in &report.checks {
        for failure in &row.failures {
            println!("FAILED {}: {}", row.check, crate::text::shown(failure));
        }
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json)
            .with_context(|| format!("--report {}: cannot write the report", path.display()))?;
    }
    print!("{}", selftest::render(&report));
    match report.failed() {
        0 => Ok(()),
        n => bail!("{n} of {} selftest checks failed", report.checks.len()),
    }
}
