//! Bytes held by CPU tensors, process-wide: what the dashboard's device panel shows on the CPU
//! backend (the CUDA backend keeps its own count, [`crate::cuda::memory_use`]). The process's
//! resident size alone cannot tell tensors from model weights being read, caches and the plugins'
//! own memories; this counts exactly the tensor buffers alive now.
//!
//! Every CPU buffer becomes a tensor's storage in one place (`Storage::cpu`), which counts it, and
//! the storage's `Drop` uncounts it, so the figure cannot drift.

use std::sync::atomic::{AtomicU64, Ordering};

/// CPU tensor memory: bytes alive now, and the most alive at once since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMemoryUse {
    pub in_use: u64,
    pub peak: u64,
}

/// A live-bytes counter with its high-water mark.
pub(crate) struct Counter {
    live: AtomicU64,
    peak: AtomicU64,
}

impl Counter {
    pub(crate) const fn new() -> Counter {
        Counter {
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, bytes: u64) {
        // Saturating: a miscount must show as 0, never as a wrapped-around exabyte figure.
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }

    pub(crate) fn get(&self) -> CpuMemoryUse {
        CpuMemoryUse {
            in_use: self.live.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
        }
    }
}

pub(crate) static CPU_TENSORS: Counter = Counter::new();

/// The bytes CPU tensors hold now in this process, and the peak.
pub fn cpu_memory_use() -> CpuMemoryUse {
    CPU_TENSORS.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_follows_adds_and_drops_and_keeps_its_peak() {
        let c = Counter::new();
        c.add(100);
        c.add(50);
        c.sub(100);
        assert_eq!(
            c.get(),
            CpuMemoryUse {
                in_use: 50,
                peak: 150
            }
        );
        c.sub(1000);
        assert_eq!(c.get().in_use, 0, "never wraps below zero");
    }

    #[test]
    fn cpu_tensors_are_counted_while_alive() {
        // Other tests allocate concurrently, so only a lower bound holds while the tensor lives.
        let before = cpu_memory_use().peak;
        let t = crate::Tensor::zeros([1024, 1024], crate::Device::Cpu).unwrap();
        assert!(cpu_memory_use().in_use >= 4 << 20);
        assert!(cpu_memory_use().peak >= before.max(4 << 20));
        drop(t);
    }
}
