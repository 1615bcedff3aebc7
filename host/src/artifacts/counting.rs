//! Sizing an encoding before it is written: the encoder runs once into a writer that only counts
//! and gives up past a limit (so a plugin's request is never expanded in memory, and a request too
//! big for the budget costs no more work than the budget), then once more into the file.

use std::io::{self, Write};

/// Why a [`Limited`] writer refused a write.
#[derive(Debug)]
pub struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("over the size limit")
    }
}

impl std::error::Error for OverLimit {}

/// Passes bytes on to `inner` while their total stays within `limit`; the write that would go past
/// it fails with [`OverLimit`].
pub struct Limited<W> {
    inner: W,
    written: u64,
    limit: u64,
}

impl<W: Write> Limited<W> {
    pub fn new(inner: W, limit: u64) -> Self {
        Limited {
            inner,
            written: 0,
            limit,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let total = self.written.saturating_add(buf.len() as u64);
        if total > self.limit {
            return Err(io::Error::other(OverLimit));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether an I/O error is a [`Limited`] writer's refusal.
pub fn is_over_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OverLimit>())
}

/// The bytes `encode` writes, if at most `limit`; `None` as soon as it passes `limit`.
pub fn encoded_size(
    limit: u64,
    encode: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<Option<u64>> {
    let mut counter = Limited::new(io::sink(), limit);
    match encode(&mut counter) {
        Ok(()) => Ok(Some(counter.written())),
        Err(e) if is_over_limit(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_limit_and_stops_past_it() {
        let size = encoded_size(10, |w| w.write_all(b"0123456789")).unwrap();
        assert_eq!(size, Some(10));
        let mut calls = 0;
        let size = encoded_size(10, |w| {
            loop {
                calls += 1;
                w.write_all(b"xyz")?;
            }
        })
        .unwrap();
        assert_eq!(size, None);
        assert_eq!(calls, 4, "it stops at the write that passes the limit");
    }
}
