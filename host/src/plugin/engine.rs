//! The wasmtime engine every plugin runs on, with its linker and deadline ticker.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::Plugin;
use super::cache::{ComponentCache, default_cache_dir};
use super::error::PluginError;
use super::state::RunState;

/// How often the epoch advances: the granularity of run deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Compiles, caches and links plugins. One per process; cheap to share by reference.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<RunState>,
    pub(crate) cache: Option<ComponentCache>,
}

impl PluginEngine {
    /// An engine caching compiled plugins in the default cache directory.
    pub fn new() -> Result<Self, PluginError> {
        Self::with_cache_dir(default_cache_dir())
    }

    /// An engine caching compiled plugins in `cache_dir` (`None`: no cache).
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(engine_error)?;

        // Deadlines are counted in epochs; a background thread advances them while the engine lives.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("loupe-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the deadline thread: {e}")))?;

        let mut linker = Linker::new(&engine);
        // A std guest imports WASI's cli and io interfaces even when it does no I/O. Its context grants
        // nothing (no preopened directories, no network addresses, no environment): see `RunState::new`.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        // Its waits (sleeps, polls) stop with the run, though the epoch deadline cannot reach them.
        super::wasi_wait::add_to_linker(&mut linker).map_err(engine_error)?;
        Plugin::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
            .map_err(engine_error)?;

        let cache = cache_dir.map(|dir| ComponentCache::new(dir, &engine));
        Ok(PluginEngine {
            engine,
            linker,
            cache,
        })
    }
}
