//! Choosing the device a command or run computes on.

use std::sync::atomic::{AtomicBool, Ordering};

use loupe_kernels::Device;
use loupe_kernels::cuda::{self, Driver};

static FALLBACK_NOTED: AtomicBool = AtomicBool::new(false);

/// Why `auto` runs on the CPU, in one line.
fn fallback_reason() -> String {
    match cuda::driver() {
        Driver::Missing => "no CUDA driver (libcuda) could be loaded; running on the CPU".into(),
        Driver::Unusable(why) => format!("the CUDA driver failed ({why}); running on the CPU"),
        Driver::Ready(gpus) => format!(
            "found {} but CUDA ops do not run in this build yet; running on the CPU",
            gpus.iter()
                .map(|g| format!("cuda:{} ({})", g.ordinal, g.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Resolves `auto|cpu|cuda[:N]`. `auto` falls back to the CPU, saying why once per process on stderr.
pub fn resolve_device(choice: &str) -> Result<Device, String> {
    match choice {
        "auto" => {
            if !FALLBACK_NOTED.swap(true, Ordering::Relaxed) {
                eprintln!("loupe: {}", fallback_reason());
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
