//! Choosing the device a command or run computes on.

use std::sync::atomic::{AtomicBool, Ordering};

use loupe_kernels::Device;

static FALLBACK_NOTED: AtomicBool = AtomicBool::new(false);

/// Resolves `auto|cpu|cuda[:N]`. `auto` falls back to the CPU, saying so once per process on stderr.
pub fn resolve_device(choice: &str) -> Result<Device, String> {
    match choice {
        "auto" => {
            if !FALLBACK_NOTED.swap(true, Ordering::Relaxed) {
                eprintln!("loupe: no CUDA backend in this build; running on the CPU");
            }
            Ok(Device::Cpu)
        }
        other => match other.parse::<Device>() {
            Ok(Device::Cpu) => Ok(Device::Cpu),
            Ok(cuda @ Device::Cuda(_)) => Err(format!(
                "device {cuda}: this build of loupe has no CUDA backend; use cpu (or auto)"
            )),
            Err(e) => Err(format!("device {other}: {e} (or `auto`)")),
        },
    }
}
