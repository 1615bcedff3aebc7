//! What a caller lets the engine spend on its behalf while it runs ops: a byte budget for the tensors
//! the ops make, and a stop signal that long ops check between blocks of work.
//!
//! A plugin host wraps each host call in [`guarded`]: every tensor an op makes is reserved against the
//! budget by [`reserve`] *before* its memory is touched (an op cannot allocate first and check later),
//! and a long op — a Cholesky factorisation, a large matrix product — gives up with
//! [`Error::Interrupted`] once the run's deadline passes or it is cancelled. Outside a guard (the CLI,
//! the model's own forward pass) shapes are still checked, but nothing is budgeted or interrupted.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crate::stop::StopSwitch;
use crate::{DType, Error, Result, Shape};

/// Why a guarded op gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The caller's deadline passed.
    Deadline,
    /// The caller's stop switch called for a hard stop.
    Cancelled,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Deadline => "its time limit passed",
            StopReason::Cancelled => "it was cancelled",
        })
    }
}

/// A deadline and a stop switch, cheap to clone and to check (a clock read and a few atomic loads).
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    deadline: Option<Instant>,
    cancel: Option<Arc<StopSwitch>>,
}

impl StopSignal {
    /// Never stops.
    pub fn never() -> Self {
        Self::default()
    }

    pub fn new(deadline: Option<Instant>, cancel: Option<Arc<StopSwitch>>) -> Self {
        StopSignal { deadline, cancel }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether to stop now, and why.
    pub fn reason(&self) -> Option<StopReason> {
        // A stop request inside its grace period is not a stop: the run may still be saving.
        if self.cancel.as_ref().is_some_and(|c| c.hard_stop_due()) {
            return Some(StopReason::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(StopReason::Deadline);
        }
        None
    }

    /// An error for `op` if it should stop.
    pub fn check(&self, op: &'static str) -> Result<()> {
        match self.reason() {
            Some(reason) => Err(Error::Interrupted { op, reason }),
            None => Ok(()),
        }
    }
}

/// The state of one [`guarded`] scope.
struct Scope {
    /// Bytes the ops may still reserve; `None`: no budget.
    remaining: Option<u64>,
    reserved: u64,
    stop: StopSignal,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` with at most `budget` bytes of new tensors (`None`: unbounded) and `stop` checked by long
/// ops. Returns `f`'s result and the bytes its ops reserved. Scopes nest: the inner one replaces the
/// outer for its duration.
pub fn guarded<R>(budget: Option<u64>, stop: StopSignal, f: impl FnOnce() -> R) -> (R, u64) {
    let scope = Scope {
        remaining: budget,
        reserved: 0,
        stop,
    };
    // Puts the outer scope back when this one ends, even if `f` unwinds.
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            SCOPE.with(|s| *s.borrow_mut() = outer);
        }
    }
    let _restore = Restore(SCOPE.with(|s| s.replace(Some(scope))));
    let result = f();
    let reserved = SCOPE.with(|s| s.borrow().as_ref().map_or(0, |s| s.reserved));
    (result, reserved)
}

/// The bytes of a `shape` of `dtype`, or an error if they cannot be counted.
pub(crate) fn bytes_of(op: &'static str, shape: &Shape, dtype: DType) -> Result<u64> {
    (shape.numel() as u64)
        .checked_mul(dtype.size_in_bytes() as u64)
        .ok_or_else(|| Error::TooLarge {
            op,
            shape: shape.clone(),
        })
}

/// Charges a new tensor of `shape` and `dtype` to the current scope's budget, or refuses it.
pub(crate) fn reserve(op: &'static str, shape: &Shape, dtype: DType) -> Result<()> {
    charge(op, shape, bytes_of(op, shape, dtype)?)
}

fn charge(op: &'static str, shape: &Shape, bytes: u64) -> Result<()> {
    SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        let Some(scope) = s.as_mut() else {
            return Ok(());
        };
        if let Some(remaining) = scope.remaining.as_mut() {
            if bytes > *remaining {
                return Err(Error::OverBudget {
                    op,
                    shape: shape.clone(),
                    bytes,
                    remaining: *remaining,
                });
            }
            *remaining -= bytes;
        }
        scope.reserved += bytes;
        Ok(())
    })
}

/// Charges scratch space — `dims`' element count times `elem_bytes` — that an op needs besides its
/// outputs (a factorisation's f64 copy, say).
pub(crate) fn reserve_scratch(op: &'static str, dims: &[usize], elem_bytes: u64) -> Result<()> {
    let shape = Shape::checked(op, dims)?;
    let bytes = (shape.numel() as u64)
        .checked_mul(elem_bytes)
        .ok_or_else(|| Error::TooLarge {
            op,
            shape: shape.clone(),
        })?;
    charge(op, &shape, bytes)
}

/// The current scope's stop signal (never, outside a scope): long ops check it between blocks, and
/// clone it into worker threads, which do not see the scope.
pub(crate) fn stop_signal() -> StopSignal {
    SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map_or_else(StopSignal::never, |s| s.stop.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_charged_until_the_budget_runs_out() {
        let shape = Shape::checked("t", &[4, 4]).unwrap();
        let (results, reserved) = guarded(Some(100), StopSignal::never(), || {
            [
                reserve("t", &shape, DType::F32),
                reserve("t", &shape, DType::F32),
            ]
        });
        assert!(results[0].is_ok());
        assert!(
            matches!(
                results[1],
                Err(Error::OverBudget {
                    bytes: 64,
                    remaining: 36,
                    ..
                })
            ),
            "{:?}",
            results[1]
        );
        assert_eq!(reserved, 64);
        // Outside a scope nothing is budgeted.
        assert!(reserve("t", &shape, DType::F32).is_ok());
    }

    #[test]
    fn scopes_nest_and_restore() {
        let shape = Shape::checked("t", &[8]).unwrap();
        let (inner, outer_reserved) = guarded(Some(1000), StopSignal::never(), || {
            reserve("t", &shape, DType::F32).unwrap();
            let (r, inner_reserved) = guarded(Some(0), StopSignal::never(), || {
                reserve("t", &shape, DType::F32)
            });
            assert_eq!(inner_reserved, 0);
            reserve("t", &shape, DType::F32).unwrap();
            r
        });
        assert!(inner.is_err());
        assert_eq!(outer_reserved, 64);
    }

    #[test]
    fn stop_signals_report_cancel_and_deadline() {
        let switch = Arc::new(StopSwitch::new());
        let stop = StopSignal::new(None, Some(switch.clone()));
        assert_eq!(stop.reason(), None);
        switch.request();
        assert_eq!(stop.reason(), Some(StopReason::Cancelled));
        let past = StopSignal::new(Some(Instant::now()), None);
        let (r, _) = guarded(None, past, || stop_signal().check("cholesky"));
        assert!(
            matches!(
                r,
                Err(Error::Interrupted {
                    op: "cholesky",
                    reason: StopReason::Deadline
                })
            ),
            "{r:?}"
        );
        assert!(stop_signal().check("cholesky").is_ok(), "no scope, no stop");
    }
}
