//! Choosing the device a command or run computes on.

use std::sync::atomic::{AtomicBool, Ordering};

use loupe_kernels::Device;
use loupe_kernels::cuda::{self, Driver};

static CHOICE_NOTED: AtomicBool = AtomicBool::new(false);

/// Says once per process, on stderr, what `auto` chose and why.
fn note_once(line: impl FnOnce() -> String) {
    if !CHOICE_NOTED.swap(true, Ordering::Relaxed) {
        eprintln!("loupe: {}", line());
    }
}

/// The name of CUDA device `ordinal`, as the driver reports it.
fn gpu_name(ordinal: usize) -> String {
    match cuda::driver() {
        Driver::Ready(gpus) => gpus
            .into_iter()
            .find(|g| g.ordinal == ordinal)
            .map_or_else(|| "unknown GPU".into(), |g| g.name),
        _ => "unknown GPU".into(),
    }
}

/// Resolves `auto|cpu|cuda[:N]`. `auto` takes CUDA device 0 when it starts (driver, compute capability
/// 8.0 or newer, NVRTC) and otherwise falls back to the CPU, saying which and why in one line.
pub fn resolve_device(choice: &str) -> Result<Device, String> {
    match choice {
        "auto" => match cuda::unavailable_reason(0) {
            None => {
                note_once(|| format!("running on cuda:0 ({})", gpu_name(0)));
                Ok(Device::Cuda(0))
            }
            Some(why) => {
                note_once(|| format!("{why}; running on the CPU"));
                Ok(Device::Cpu)
            }
        },
        other => match other.parse::<Device>() {
            Ok(Device::Cpu) => Ok(Device::Cpu),
            Ok(Device::Cuda(n)) => match cuda::unavailable_reason(n) {
                None => Ok(Device::Cuda(n)),
                Some(why) => Err(format!(
                    "device cuda:{n}: not available ({why}); use --device cpu (or auto)"
                )),
            },
            Err(e) => Err(format!("device {other}: {e} (or `auto`)")),
        },
    }
}
