//! `loupe doctor`: what this machine offers loupe — backend, GPUs, NVRTC, caches.

use anyhow::Result;
use loupe_kernels::cuda::{self, Driver};

pub fn run() -> Result<()> {
    let threads = rayon::current_num_threads();
    println!("loupe {}", env!("CARGO_PKG_VERSION"));
    // What `--device auto` would take.
    match cuda::unavailable_reason(0) {
        None => println!("backend: cuda:0 (--device auto); cpu ({threads} threads) on request"),
        Some(why) => println!("backend: cpu ({threads} threads); {why}"),
    }
    match cuda::driver() {
        Driver::Missing => println!("cuda driver: not loaded"),
        Driver::Unusable(why) => println!("cuda driver: loaded but failed: {why}"),
        Driver::Ready(gpus) => {
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
