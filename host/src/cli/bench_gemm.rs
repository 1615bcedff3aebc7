//! `loupe bench gemm`: matrix-multiply throughput of the engine's kernels (TFLOP/s) at square sizes.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use loupe_kernels::MatmulPrecision;

use crate::selftest::timing::{gemm_seconds, gemm_tflops};

#[derive(Clone, Copy, ValueEnum)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl From<Precision> for MatmulPrecision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F32 => MatmulPrecision::F32,
            Precision::Bf16 => MatmulPrecision::Bf16,
            Precision::F16 => MatmulPrecision::F16,
        }
    }
}

#[derive(Args)]
pub struct GemmArgs {
    /// Square sizes n (n×n · n×n), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1024usize, 2048, 4096, 8192])]
    sizes: Vec<usize>,
    /// What the products are computed in: f32, or bf16/f16 operands with f32 accumulation (tensor
    /// cores on a GPU).
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Timed products per size (the median is reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(args: GemmArgs) -> Result<()> {
    let device = super::resolve_device(&args.device)?;
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        bail!("--sizes: give positive sizes, e.g. --sizes 1024,4096");
    }
    let precision = MatmulPrecision::from(args.precision);
    println!(
        "device: {device}, precision: {precision:?}, median of {} products",
        args.iters.max(1)
    );
    println!("{:>6}  {:>10}  {:>9}", "n", "ms", "TFLOP/s");
    for &n in &args.sizes {
        let median = gemm_seconds(n, precision, device, args.iters)?;
        let tflops = gemm_tflops(n, median);
        println!("{n:>6}  {:>10.3}  {tflops:>9.2}", median * 1e3);
    }
    Ok(())
}
