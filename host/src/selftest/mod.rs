//! `loupe selftest`: checks, from the binary alone, that this machine computes what loupe promises —
//! every engine op on the CPU and on the chosen GPU with the same inputs and tolerances as the parity
//! suite (`loupe_kernels::selftest`), the reference GPT-2 of the fixtures against Hugging Face
//! transformers on each backend, and a short timing of matrix products and a forward pass. Without a
//! GPU the same checks run on the CPU alone, so they cannot rot where no GPU is.

pub mod fixture;
pub mod timing;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use loupe_kernels::{Device, MatmulPrecision, selftest};
use serde::Serialize;

use crate::model::random::{Preset, StorageDtype, write_random_model};
use crate::model::{Gpt2, RunSpec};

/// How one check went on one backend.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// How many of the check's cases failed.
    Failed(usize),
    Skipped(String),
}

/// One row of the table: a family of ops, or the fixture parity.
#[derive(Debug, Serialize)]
pub struct CheckRow {
    pub check: String,
    pub cases: usize,
    pub cpu: Verdict,
    /// The GPU's verdict; `None` on a CPU-only run.
    pub device: Option<Verdict>,
    /// The largest difference seen, as a fraction of the tolerance (≤ 1 passes); 0 for exact agreement.
    pub worst: Option<f32>,
    /// Each failed case with why.
    pub failures: Vec<String>,
}

impl CheckRow {
    pub fn passed(&self) -> bool {
        !matches!(self.cpu, Verdict::Failed(_)) && !matches!(self.device, Some(Verdict::Failed(_)))
    }
}

/// One timing: what ran and how fast.
#[derive(Debug, Serialize)]
pub struct Timing {
    pub what: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// The backend under test, in words (`cuda:0 (NVIDIA H200, sm_90)` or `cpu`).
    pub device: String,
    pub checks: Vec<CheckRow>,
    pub timings: Vec<Timing>,
    pub seconds: f64,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed()).count()
    }
}

pub struct Options {
    pub device: Device,
    /// The folder holding `gpt2-ref/` and `deit-ref/`; `None` skips the fixture checks (saying so).
    pub fixtures: Option<PathBuf>,
    pub timing: bool,
}

/// Runs every check; `progress` hears a line before each step.
pub fn run(options: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    let start = Instant::now();
    let gpu = matches!(options.device, Device::Cuda(_)).then_some(options.device);
    let mut checks = op_checks(gpu, progress);
    progress("GPT-2 fixture parity");
    checks.push(fixture_check(
        "GPT-2 fixture parity (gpt2-ref)",
        fixture::gpt2_parity,
        options.fixtures.as_deref(),
        gpu,
    ));
    progress("DeiT fixture parity");
    checks.push(fixture_check(
        "DeiT fixture parity, pixel gradient (deit-ref)",
        fixture::deit_parity,
        options.fixtures.as_deref(),
        gpu,
    ));
    let timings = if options.timing {
        progress("timing");
        timings(options.device)?
    } else {
        Vec::new()
    };
    Ok(Report {
        device: describe(options.device),
        checks,
        timings,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Every case of the engine's list, grouped into rows in the list's order.
fn op_checks(gpu: Option<Device>, progress: &mut dyn FnMut(&str)) -> Vec<CheckRow> {
    let cases = selftest::cases();
    let mut rows: Vec<CheckRow> = Vec::new();
    let mut cpu_failed = Vec::new();
    let mut gpu_failed = Vec::new();
    for case in &cases {
        if rows.last().is_none_or(|r| r.check != case.group) {
            close_row(rows.last_mut(), &mut cpu_failed, &mut gpu_failed);
            let n = cases.iter().filter(|c| c.group == case.group).count();
            progress(&format!("{} ({n} cases)", case.group));
            rows.push(CheckRow {
                check: case.group.to_string(),
                cases: 0,
                cpu: Verdict::Ok,
                device: gpu.map(|_| Verdict::Ok),
                worst: Some(0.0),
                failures: Vec::new(),
            });
        }
        let row = rows.last_mut().expect("a row was just opened");
        row.cases += 1;
        let outcome = case.check(gpu);
        if let Err(why) = &outcome.cpu {
            cpu_failed.push(format!("{}: {why}", case.name));
        }
        match (&outcome.device, case.rtol()) {
            (Some(Err(why)), _) => gpu_failed.push(format!("{}: {why}", case.name)),
            (Some(Ok(agreement)), Some(rtol)) if rtol > 0.0 => {
                row.worst = row.worst.map(|w| w.max(agreement.worst / rtol));
            }
            _ => {}
        }
    }
    close_row(rows.last_mut(), &mut cpu_failed, &mut gpu_failed);
    if gpu.is_none() {
        // No second backend: nothing was compared, so there is no difference to report.
        rows.iter_mut().for_each(|r| r.worst = None);
    }
    rows
}

fn close_row(
    row: Option<&mut CheckRow>,
    cpu_failed: &mut Vec<String>,
    gpu_failed: &mut Vec<String>,
) {
    let Some(row) = row else { return };
    if !cpu_failed.is_empty() {
        row.cpu = Verdict::Failed(cpu_failed.len());
    }
    if !gpu_failed.is_empty() {
        row.device = Some(Verdict::Failed(gpu_failed.len()));
    }
    row.failures
        .extend(cpu_failed.drain(..).map(|f| format!("cpu: {f}")));
    row.failures
        .extend(gpu_failed.drain(..).map(|f| format!("gpu: {f}")));
}

/// A reference model on the CPU and on the GPU, each against transformers' outputs.
fn fixture_check(
    check: &str,
    parity_on: fn(&Path, Device) -> Result<fixture::FixtureParity>,
    fixtures: Option<&Path>,
    gpu: Option<Device>,
) -> CheckRow {
    let mut row = CheckRow {
        check: check.into(),
        cases: 0,
        cpu: Verdict::Ok,
        device: gpu.map(|_| Verdict::Ok),
        worst: Some(0.0),
        failures: Vec::new(),
    };
    let Some(fixtures) = fixtures else {
        let why = "no fixtures given (--fixtures DIR, the folder holding gpt2-ref/ and deit-ref/)"
            .to_string();
        row.cpu = Verdict::Skipped(why.clone());
        row.device = gpu.map(|_| Verdict::Skipped(why));
        row.worst = None;
        return row;
    };
    let mut judge = |device: Device| -> Verdict {
        match parity_on(fixtures, device) {
            Ok(parity) => {
                row.cases = row.cases.max(parity.compared);
                row.worst = row.worst.map(|w| w.max(parity.worst));
                let failed = parity.mismatches.len();
                row.failures.extend(
                    parity
                        .mismatches
                        .into_iter()
                        .map(|m| format!("{device}: {m}")),
                );
                if failed == 0 {
                    Verdict::Ok
                } else {
                    Verdict::Failed(failed)
                }
            }
            Err(e) => {
                row.failures.push(format!("{device}: {e:#}"));
                Verdict::Failed(1)
            }
        }
    };
    let cpu = judge(Device::Cpu);
    let device = gpu.map(&mut judge);
    row.cpu = cpu;
    row.device = device;
    row
}

/// GEMM and a forward pass, sized for the backend: a GPU gets products that fill it and GPT-2 small,
/// the CPU small ones so the CPU-only check stays short.
fn timings(device: Device) -> Result<Vec<Timing>> {
    let on_gpu = matches!(device, Device::Cuda(_));
    let mut out = Vec::new();
    let n = if on_gpu { 4096 } else { 512 };
    let precisions: &[MatmulPrecision] = if on_gpu {
        &[MatmulPrecision::F32, MatmulPrecision::Bf16]
    } else {
        &[MatmulPrecision::F32]
    };
    for &precision in precisions {
        let seconds = timing::gemm_seconds(n, precision, device, 10)?;
        out.push(Timing {
            what: format!(
                "gemm {} {n}×{n}·{n}×{n} on {device}",
                precision_name(precision)
            ),
            value: format!(
                "{:.2} TFLOP/s ({:.3} ms, median of 10)",
                timing::gemm_tflops(n, seconds),
                seconds * 1e3
            ),
        });
    }

    let (preset, batch, seq) = if on_gpu {
        (Preset::Gpt2Small, 8, 128)
    } else {
        (Preset::Tiny, 4, 32)
    };
    let dir = TempDir::new()?;
    write_random_model(preset, 0, StorageDtype::F32, dir.path())?;
    let model = Gpt2::load(dir.path(), device)?;
    let ids = timing::spread_ids(&model, batch, seq)?;
    let times = timing::forward_seconds(&model, &ids, &RunSpec::default(), 1, 5)?;
    let median = times[times.len() / 2];
    out.push(Timing {
        what: format!(
            "forward {} (random weights) {batch}×{seq} tokens on {device}",
            preset.name()
        ),
        value: format!(
            "{:.0} tokens/s ({:.2} ms, median of 5)",
            (batch * seq) as f64 / median,
            median * 1e3
        ),
    });
    if let Device::Cuda(ordinal) = device
        && let Some(mem) = loupe_kernels::cuda::memory_use(ordinal)
    {
        out.push(Timing {
            what: "GPU memory held by loupe".into(),
            value: format!("peak {:.0} MiB of {:.0} MiB", mib(mem.peak), mib(mem.total)),
        });
    }
    Ok(out)
}

fn precision_name(precision: MatmulPrecision) -> &'static str {
    match precision {
        MatmulPrecision::F32 => "f32",
        MatmulPrecision::Bf16 => "bf16",
        MatmulPrecision::F16 => "f16",
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The backend in words: `cuda:0 (NVIDIA H200, sm_90, 139.8 GiB)` or `cpu (16 threads)`.
fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(ordinal) => {
            let gpu = match loupe_kernels::cuda::driver() {
                loupe_kernels::cuda::Driver::Ready(gpus) => {
                    gpus.into_iter().find(|g| g.ordinal == ordinal)
                }
                _ => None,
            };
            let nvrtc = loupe_kernels::cuda::nvrtc_version()
                .map_or("?".into(), |(a, b)| format!("{a}.{b}"));
            match gpu {
                Some(g) => format!(
                    "{device} ({}, sm_{}{}, {:.1} GiB), NVRTC {nvrtc}",
                    g.name,
                    g.compute_capability.0,
                    g.compute_capability.1,
                    g.total_memory as f64 / (1u64 << 30) as f64
                ),
                None => format!("{device}, NVRTC {nvrtc}"),
            }
        }
    }
}

/// The table `loupe selftest` prints last: one row per check, then the timings.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let gpu = report.checks.iter().any(|c| c.device.is_some());
    let word = |v: &Verdict| match v {
        Verdict::Ok => "ok".to_string(),
        Verdict::Failed(n) => format!("FAILED {n}"),
        Verdict::Skipped(_) => "skipped".to_string(),
    };
    let width = report
        .checks
        .iter()
        .map(|c| c.check.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loupe selftest on {} in {:.1} s",
        report.device, report.seconds
    );
    let _ = writeln!(
        out,
        "{:<width$}  {:>5}  {:<9}  {:<9}  worst/tol",
        "check", "cases", "cpu", "gpu"
    );
    for row in &report.checks {
        let device = row.device.as_ref().map_or("no gpu".to_string(), word);
        let worst = match row.worst {
            None => "-".to_string(),
            Some(0.0) => "exact".to_string(),
            Some(w) => format!("{w:.3}"),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>5}  {:<9}  {:<9}  {worst}",
            row.check,
            row.cases,
            word(&row.cpu),
            device
        );
    }
    for t in &report.timings {
        let _ = writeln!(out, "{:<width$}  {}", t.what, t.value);
    }
    let skipped: Vec<&str> = report
        .checks
        .iter()
        .flat_map(|c| [Some(&c.cpu), c.device.as_ref()])
        .flatten()
        .filter_map(|v| {
            if let Verdict::Skipped(why) = v {
                Some(why.as_str())
            } else {
                None
            }
        })
        .collect();
    if let Some(why) = skipped.first() {
        let _ = writeln!(out, "skipped: {why}");
    }
    if !gpu {
        let _ = writeln!(
            out,
            "gpu: not checked (CPU-only run: pass --device cuda on a GPU machine)"
        );
    }
    match report.failed() {
        0 => {
            let _ = writeln!(out, "all {} checks passed", report.checks.len());
        }
        n => {
            let _ = writeln!(
                out,
                "{n} of {} checks FAILED (details above)",
                report.checks.len()
            );
        }
    }
    out
}

/// A scratch folder for the timing model, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("loupe-selftest-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create a scratch folder", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
