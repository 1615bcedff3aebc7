//! `loupe doctor`: what this machine offers loupe — backend, GPUs, NVRTC, caches.

use anyhow::Result;
use loupe_kernels::cuda::{self, Driver};

pub fn run() -> Result<()> {
    let threads = rayon::current_num_threads();
    println!("loupe {}", env!("CARGO_PKG_VERSION"));
    match cuda::driver() {
        Driver::Missing => {
            println!("backend: cpu ({threads} threads); no CUDA driver (libcuda) could be loaded");
        }
        Driver::Unusable(why) => {
            println!("backend: cpu ({threads} threads); the CUDA driver loaded but failed: {why}");
        }
        Driver::Ready(gpus) => {
            println!(
                "backend: cpu ({threads} threads); CUDA ops do not run in this build yet, so GPUs are listed but unused"
            );
            for gpu in gpus {
                let (major, minor) = gpu.compute_capability;
                println!(
                    "gpu {}: {}, compute capability {major}.{minor} (sm_{major}{minor}), {:.1} GiB",
                    gpu.ordinal,
                    gpu.name,
                    gpu.total_memory as f64 / (1u64 << 30) as f64
                );
            }
        }
    }
    match cuda::nvrtc_version() {
        Ok((major, minor)) => println!("nvrtc: {major}.{minor}"),
        Err(why) => println!("nvrtc: not available ({why})"),
    }
    match cuda::kernel_cache_dir() {
        Some(dir) => println!("kernel cache: {}", dir.display()),
        None => println!("kernel cache: none (set LOUPE_CACHE_DIR or HOME)"),
    }
    match crate::plugin::default_cache_dir() {
        Some(dir) => println!("plugin cache: {}", dir.display()),
        None => println!("plugin cache: none (set LOUPE_CACHE_DIR or HOME)"),
    }
    Ok(())
}
