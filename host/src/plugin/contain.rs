//! Containing a panic inside a host call: it ends the run it happened in, never the host.
//!
//! wasmtime catches a panic in a host function, unwinds the guest, and resumes the panic where the
//! host called into the instance. [`contained`] catches it there, so the caller can discard the store
//! and report the panic as that run's failure. The panic hook, installed once, keeps such panics off
//! the terminal (the dashboard may own it): their message and location are captured for the run's
//! error instead. Panics anywhere else go to the hook that was in place before.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    /// `Some` while this thread runs a contained call: the message of a panic in it, once one happened.
    static CAPTURED: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Contained calls in flight on any thread. A panic on an engine worker thread during one reaches
/// the contained caller through the thread pool, so it is kept off the terminal too.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Runs `f`; a panic inside it comes back as `Err` with its message and location, on one line.
pub(crate) fn contained<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    // Restores the outer state (calls may nest: a load inside a run) even if `f` unwinds.
    struct Scope(Option<Option<String>>);
    impl Drop for Scope {
        fn drop(&mut self) {
            let outer = self.0.take();
            CAPTURED.with(|c| *c.borrow_mut() = outer);
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        }
    }
    IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    let _scope = Scope(CAPTURED.with(|c| c.replace(Some(None))));
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let captured = CAPTURED.with(|c| c.borrow_mut().as_mut().and_then(Option::take));
        captured.unwrap_or_else(|| one_line(payload_text(payload.as_ref())))
    })
}

/// The failure of a run (or a manifest read) whose host call panicked, for `what` ("this run").
pub(crate) fn panic_failure(what: &str, panic: &str) -> String {
    format!(
        "loupe failed inside a host call and ended {what}: {panic}; this is a bug in loupe, not in \
         the plugin: please report it with the plugin and the experiment that caused it"
    )
}

fn install_hook() {
    static INSTALL: Once = Once::new();
    // Installed at the first contained call rather than at start-up, so that it wraps any hook set
    // before (the dashboard's, which restores the terminal): a contained panic must not reach that.
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if capture(info) {
                return;
            }
            if IN_FLIGHT.load(Ordering::Relaxed) > 0 && rayon::current_thread_index().is_some() {
                return;
            }
            previous(info);
        }));
    });
}

/// Keeps the panic's message for the contained call running on this thread, if there is one.
fn capture(info: &PanicHookInfo<'_>) -> bool {
    CAPTURED.with(|c| {
        let Ok(mut slot) = c.try_borrow_mut() else {
            return false;
        };
        match slot.as_mut() {
            Some(message) => {
                let text = one_line(payload_text(info.payload()));
                *message = Some(match info.location() {
                    Some(at) => format!("{text} (at {}:{}:{})", at.file(), at.line(), at.column()),
                    None => text,
                });
                true
            }
            None => false,
        }
    })
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The environment variable naming a host call to make panic, for testing containment.
const INJECT_PANIC_VAR: &str = "LOUPE_INJECT_PANIC";

/// Test-only fault injection: in debug builds, the host call named by `LOUPE_INJECT_PANIC`
/// (`data.datasets`, `model.info`, ...) panics when a plugin makes it, so the tests can reach a host
/// panic on purpose. Release builds ignore the variable.
#[track_caller]
pub(crate) fn fault_point(op: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(INJECT_PANIC_VAR).ok());
    if chosen.as_deref() == Some(op) {
        panic!("injected fault: {op} panics on purpose ({INJECT_PANIC_VAR})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_comes_back_as_its_message_and_location() {
        let e = contained(|| -> u32 { panic!("boom:\n  shapes {:?}", [2, 3]) }).unwrap_err();
        assert!(e.starts_with("boom: shapes [2, 3] (at "), "{e}");
        assert!(e.contains("contain.rs:"), "{e}");
        assert_eq!(contained(|| 7), Ok(7));
    }

    #[test]
    fn contained_calls_nest() {
        let outer = contained(|| {
            let inner = contained(|| -> () { panic!("inner") });
            assert!(inner.unwrap_err().starts_with("inner (at "));
            panic!("outer")
        });
        assert!(outer.unwrap_err().starts_with("outer (at "));
    }
}
