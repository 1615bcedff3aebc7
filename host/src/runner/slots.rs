//! How many runs may use each device at once: a run takes a slot of its device before it starts and
//! gives it back when it ends; when all are taken it waits (and shows as queued).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

pub struct DeviceSlots {
    per_device: usize,
    busy: Mutex<HashMap<String, usize>>,
    freed: Condvar,
}

/// A taken slot; dropping it frees the slot.
pub struct Slot {
    slots: Arc<DeviceSlots>,
    device: String,
}

impl DeviceSlots {
    /// `per_device` runs at once on each device (at least 1).
    pub fn new(per_device: usize) -> Arc<Self> {
        Arc::new(DeviceSlots {
            per_device: per_device.max(1),
            busy: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
        })
    }

    /// Waits for a free slot of `device` and takes it.
    pub fn acquire(self: &Arc<Self>, device: &str) -> Slot {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while busy.get(device).copied().unwrap_or(0) >= self.per_device {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy.entry(device.to_string()).or_default() += 1;
        Slot {
            slots: self.clone(),
            device: device.to_string(),
        }
    }

    /// Runs holding a slot of `device` now.
    pub fn in_use(&self, device: &str) -> usize {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.get(device).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.slots.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = busy.get_mut(&self.device) {
            *n = n.saturating_sub(1);
        }
        self.slots.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn at_most_the_limit_per_device_and_devices_are_independent() {
        let slots = DeviceSlots::new(2);
        let peak = AtomicUsize::new(0);
        let now = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = slots.acquire("cpu");
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // Another device is not held up by the busy one.
            s.spawn(|| {
                let _slot = slots.acquire("cuda:0");
                assert_eq!(slots.in_use("cuda:0"), 1);
            });
        });
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(slots.in_use("cpu"), 0);
    }
}
