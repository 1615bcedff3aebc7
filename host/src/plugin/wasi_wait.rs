//! Blocking WASI calls that stop with the run.
//!
//! The epoch deadline only fires while the plugin runs wasm code; a plugin blocked in the host —
//! `std::thread::sleep`, or `wasi:io/poll` on a clock it set an hour ahead — would otherwise outlive
//! its deadline and ignore a cancel. Every WASI wait goes through `wasi:io/poll`'s `poll` and
//! `pollable.block` (sleeps, stream and socket readiness alike), so this module links its own
//! versions of those over wasmtime-wasi's: they wait exactly as before, but give up as soon as the
//! run's [`StopSignal`] fires, and trap, which ends the run with the time-limit or cancel message.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::{Duration, Instant};

use loupe_kernels::{StopReason, StopSignal};
use wasmtime::Trap;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;

use super::execute::Cancelled;
use super::state::RunState;

/// How often a blocked call looks at the cancel switch.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// Replaces `wasi:io/poll` in `linker` (which must already hold wasmtime-wasi's) with the
/// stop-aware versions.
pub(crate) fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = sync_poll::add_to_linker::<RunState, StopAwarePoll>(linker, |s| PollView {
        table: &mut s.table,
        stop: &s.stop,
    });
    linker.allow_shadowing(false);
    linked
}

struct StopAwarePoll;

impl HasData for StopAwarePoll {
    type Data<'a> = PollView<'a>;
}

/// What a poll needs of a run: its resources and its stop signal.
pub(crate) struct PollView<'a> {
    table: &'a mut ResourceTable,
    stop: &'a StopSignal,
}

impl sync_poll::Host for PollView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let stop = self.stop.clone();
        until_stopped(&stop, async_poll::Host::poll(self.table, pollables))?
    }
}

impl sync_poll::HostPollable for PollView<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Never waits: no stop needed.
        waits().block_on(async_poll::HostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let stop = self.stop.clone();
        until_stopped(&stop, async_poll::HostPollable::block(self.table, pollable))?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

/// The runtime blocked calls wait on. Its own, with timers: the host's scheduler has none, and the
/// clock pollables need them.
fn waits() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("loupe-wasi-wait")
            .enable_time()
            .build()
            // Without a runtime no blocking call can be served at all: nothing sensible remains.
            .expect("cannot start the runtime that serves plugins' blocking WASI calls")
    })
}

/// Waits for `work`, or traps once `stop` fires, whichever comes first.
fn until_stopped<F: Future>(stop: &StopSignal, work: F) -> wasmtime::Result<F::Output> {
    let outcome = waits().block_on(async {
        let mut work = pin!(work);
        let mut stopped = pin!(stopped(stop.clone()));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            stopped.as_mut().poll(cx).map(Err)
        })
        .await
    });
    outcome.map_err(|reason| match reason {
        StopReason::Deadline => Trap::Interrupt.into(),
        StopReason::Cancelled => wasmtime::Error::new(Cancelled),
    })
}

/// Resolves when `stop` fires: at its deadline, or within [`CANCEL_CHECK`] of a cancel.
async fn stopped(stop: StopSignal) -> StopReason {
    loop {
        if let Some(reason) = stop.reason() {
            return reason;
        }
        let nap = stop.deadline().map_or(CANCEL_CHECK, |d| {
            d.saturating_duration_since(Instant::now())
                .min(CANCEL_CHECK)
        });
        tokio::time::sleep(nap).await;
    }
}
