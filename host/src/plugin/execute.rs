//! One run of a plugin: a fresh instance, its limits, and a clear account of how it ended.

use loupe_kernels::StopReason;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::ApiError;
use super::contain::{contained, panic_failure};
use super::engine::PluginEngine;
use super::limits::{Limits, count_limit_message};
use super::load::{LoadedPlugin, one_line};
use super::state::{RunContext, RunState};

/// Why a run failed, in one line.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure(pub String);

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl LoadedPlugin {
    /// Runs the plugin once on `params` (a JSON object, already checked against the manifest) in a
    /// fresh instance. Returns the run context (with its recorder) and the summary or the failure.
    pub fn run(
        &self,
        engine: &PluginEngine,
        ctx: RunContext,
        limits: &Limits,
        params: &str,
    ) -> (RunContext, Result<serde_json::Value, RunFailure>) {
        let mut store = limited_store(engine, ctx, limits);
        let outcome = contained(|| match self.pre.instantiate(&mut store) {
            Ok(instance) => instance.loupe_plugin_method().call_run(&mut store, params),
            Err(e) => Err(e),
        });
        // A run that failed once its time was up or it was cancelled failed for that reason, even if
        // the plugin got to return the error of the host call that stopped first.
        let stop = store.data().stop.reason();
        let result = match (outcome, stop) {
            (Ok(Ok(Ok(summary))), _) => parse_summary(&summary),
            (Err(panic), _) => Err(RunFailure(panic_failure("this run", &panic))),
            (Ok(_), Some(reason)) => Err(stopped(reason, limits)),
            (Ok(Ok(Err(e))), None) => Err(api_failure(&e)),
            (Ok(Err(trap)), None) => Err(describe_trap(&trap, store.data(), limits)),
        };
        // Dropping the store frees every tensor the plugin still held.
        (store.into_data().ctx, result)
    }
}

/// A fresh store for one call into a plugin, with its limits: the memory cap on every memory and
/// table of the instance, and a deadline and cancel switch checked at every epoch tick.
pub(crate) fn limited_store(
    engine: &PluginEngine,
    ctx: RunContext,
    limits: &Limits,
) -> Store<RunState> {
    let mut store = Store::new(&engine.engine, RunState::new(ctx, limits));
    store.limiter(|s| &mut s.memory);
    // The stop signal measures wall-clock time, so a run that spent its time blocked in a host call
    // is stopped at the first check after it returns.
    let stop = store.data().stop.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| match stop.reason() {
        None => Ok(UpdateDeadline::Continue(1)),
        Some(StopReason::Cancelled) => Err(wasmtime::Error::new(Cancelled)),
        Some(StopReason::Deadline) => Err(Trap::Interrupt.into()),
    });
    store
}

fn api_failure(e: &ApiError) -> RunFailure {
    RunFailure(format!("{}: {}", e.op, e.message))
}

fn parse_summary(text: &str) -> Result<serde_json::Value, RunFailure> {
    // Refused before parsing: a parsed value takes several times its text's size, and a summary
    // this long would be refused as summary.json anyway (it only grows when pretty-printed).
    let limit = crate::runner::MAX_SUMMARY_BYTES;
    if text.len() as u64 > limit {
        return Err(RunFailure(format!(
            "the plugin's summary is {} MiB of JSON, over the limit of {} MiB for summary.json; \
             save large results as artifacts",
            text.len() >> 20,
            limit >> 20
        )));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(other) => Ok(serde_json::json!({ "result": other })),
        Err(e) => Err(RunFailure(format!(
            "the plugin's summary is not JSON ({e}); return a JSON object from run()"
        ))),
    }
}

/// Why a cancelled run stopped.
#[derive(Debug)]
pub(crate) struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Why a run that reached its deadline or was cancelled ended.
fn stopped(reason: StopReason, limits: &Limits) -> RunFailure {
    RunFailure(match reason {
        StopReason::Cancelled => "cancelled by the user".into(),
        StopReason::Deadline => format!(
            "the plugin exceeded its time limit of {} s and was stopped (raise [run.limits] time_s)",
            limits.time_s
        ),
    })
}

/// Turns a trap into what the user needs to know: which limit was hit, or where the plugin panicked.
fn describe_trap(e: &wasmtime::Error, state: &RunState, limits: &Limits) -> RunFailure {
    if let Some(asked) = state.memory.hit {
        return RunFailure(format!(
            "the plugin exceeded its memory limit: it asked for {} MiB in all (linear memories and \
             tables), the limit is {} MiB (raise [run.limits] memory_mb)",
            asked >> 20,
            limits.memory_mb
        ));
    }
    if let Some(refused) = count_limit_message(e) {
        return RunFailure(refused);
    }
    if e.downcast_ref::<Cancelled>().is_some() {
        return stopped(StopReason::Cancelled, limits);
    }
    let stderr = state.stderr_text();
    let message = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return stopped(StopReason::Deadline, limits),
        Some(Trap::StackOverflow) => {
            "the plugin overflowed its call stack (runaway recursion?) and was stopped".to_string()
        }
        // A Rust guest keeps its stack in linear memory: runaway recursion walks off its bottom.
        Some(Trap::MemoryOutOfBounds) => "the plugin accessed memory out of bounds (its stack overflowed from runaway recursion, or it has a memory bug) and was stopped".to_string(),
        Some(Trap::UnreachableCodeReached) if stderr.contains("panicked") => {
            format!("the plugin panicked: {}", panic_message(&stderr))
        }
        Some(trap) => format!("the plugin trapped: {trap}"),
        None => format!("the plugin failed: {}", one_line(e)),
    };
    RunFailure(message)
}

/// `panicked at src/lib.rs:3:5: boom` from a Rust guest's stderr.
fn panic_message(stderr: &str) -> String {
    let from = stderr
        .find("panicked at ")
        .map_or(0, |i| i + "panicked at ".len());
    let rest = &stderr[from..];
    let mut lines = rest.lines().filter(|l| !l.trim().is_empty());
    let location = lines.next().unwrap_or("").trim_end_matches(':');
    let message: Vec<&str> = lines
        .take_while(|l| !l.starts_with("note: run with"))
        .collect();
    if message.is_empty() {
        location.to_string()
    } else {
        format!("{} (at {location})", message.join(" "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_oversized_summary_is_refused_before_it_is_parsed() {
        let text = format!("[{}0]", "0,".repeat(9 << 20));
        let e = super::parse_summary(&text).unwrap_err();
        assert!(e.0.contains("over the limit of 16 MiB"), "{e}");
        assert!(super::parse_summary("{\"a\": 1}").is_ok());
    }

    #[test]
    fn panic_messages_read_as_one_line() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:5:\nboom: shapes [2] and [3]\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            super::panic_message(stderr),
            "boom: shapes [2] and [3] (at src/lib.rs:12:5)"
        );
    }
}
