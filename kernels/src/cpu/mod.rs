//! The CPU backend: plain slices in, fresh `Vec`s out, parallel over rows with rayon.
//! Callers (the `ops` layer) have already validated shapes and dtypes.

pub(crate) mod attention;
pub(crate) mod elementwise;
pub(crate) mod grad;
pub(crate) mod layout;
pub(crate) mod linalg;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod nn;
pub(crate) mod optim;
pub(crate) mod reduce;
pub(crate) mod simd;
pub(crate) mod sparse;

/// Below this many elements the cost of splitting work across threads outweighs the gain.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// Rows per parallel task such that each task touches at least `PAR_MIN_ELEMS` elements.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (PAR_MIN_ELEMS / row_len.max(1)).max(1)
}

/// A buffer of `len` floats that `fill` writes in full — the output of a GEMM that does not accumulate —
/// without first zeroing it (for the logits of a GPT-2 batch that pass alone is ~200 MB of writes).
///
/// # Safety
/// `fill` must initialise every element of the slice it is given.
pub(crate) unsafe fn fully_written(
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees `fill` initialised all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// A pointer that parallel tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);
// SAFETY: every user writes only elements no other task touches, and reads none it did not write.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// # Safety
    /// `offset` must lie inside the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// A stop signal shared by the tasks of one parallel loop: each task asks before its block of work,
/// and once one sees the signal, the others skip theirs.
pub(crate) struct Stopper<'a> {
    signal: &'a crate::guard::StopSignal,
    hit: std::sync::atomic::AtomicBool,
}

impl<'a> Stopper<'a> {
    pub(crate) fn new(signal: &'a crate::guard::StopSignal) -> Self {
        Stopper {
            signal,
            hit: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether to skip the next block (a clock read and two atomic loads).
    pub(crate) fn should_stop(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.hit.load(Relaxed) || self.signal.reason().is_some() {
            self.hit.store(true, Relaxed);
            return true;
        }
        false
    }

    /// `value` if no block was skipped, else why.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, crate::guard::StopReason> {
        match self.signal.reason().filter(|_| self.hit.into_inner()) {
            Some(reason) => Err(reason),
            None => Ok(value),
        }
    }
}
