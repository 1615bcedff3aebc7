//! `loupe kernels compile`: every CUDA kernel source through NVRTC for the given architectures, with no
//! GPU needed, so a kernel that does not compile is caught before it reaches one.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use loupe_kernels::cuda;

#[derive(Subcommand)]
pub enum KernelsCommand {
    /// Compile every kernel for the given architectures (e.g. --arch sm_80 --arch sm_90) and cache the PTX.
    Compile(CompileArgs),
}

#[derive(Args)]
pub struct CompileArgs {
    /// Target architecture: sm_80, sm_86, sm_89, sm_90, ... (repeatable).
    #[arg(long, required = true)]
    arch: Vec<String>,
    /// Compile even where the cache has the PTX already.
    #[arg(long)]
    no_cache: bool,
}

pub fn run(cmd: KernelsCommand) -> Result<()> {
    match cmd {
        KernelsCommand::Compile(args) => compile(args),
    }
}

fn compile(args: CompileArgs) -> Result<()> {
    for arch in &args.arch {
        cuda::check_arch(arch).map_err(|e| anyhow::anyhow!("--arch: {e}"))?;
    }
    let (major, minor) = cuda::nvrtc_version().map_err(anyhow::Error::msg)?;
    let cache = if args.no_cache {
        None
    } else {
        cuda::kernel_cache_dir()
    };
    println!(
        "nvrtc {major}.{minor}; cache {}",
        cache
            .as_ref()
            .map_or("off".to_string(), |d| d.display().to_string())
    );
    let mut failures = Vec::new();
    for arch in &args.arch {
        for source in cuda::SOURCES {
            let start = Instant::now();
            match cuda::compile(source, arch, cache.as_deref()) {
                Ok(k) => println!(
                    "{}.cu {}: {} bytes of PTX, {}",
                    k.name,
                    k.arch,
                    k.ptx.len(),
                    if k.cached {
                        "cached".to_string()
                    } else {
                        format!("compiled in {} ms", start.elapsed().as_millis())
                    }
                ),
                Err(e) => {
                    eprintln!("{e}");
                    failures.push(format!("{}.cu for {arch}", source.name));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} failed to compile: {}",
            failures.len(),
            failures.join(", ")
        );
    }
    Ok(())
}
