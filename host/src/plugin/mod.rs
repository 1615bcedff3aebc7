//! The plugin runtime: WebAssembly components (wasmtime) implementing analysis methods against the
//! `loupe:plugin` API, each run in a fresh, limited instance.
//!
//! - [`PluginEngine`] owns the compiler, the linker with every host interface, the epoch ticker that
//!   enforces deadlines, and the on-disk cache of compiled plugins.
//! - [`PluginEngine::load`] validates a `.wasm` file (a component, an API version this host speaks, a
//!   sound manifest) and prepares it for instantiation; [`LoadedPlugin::run`] runs it once.
//! - [`PluginRegistry`] keeps the plugins of a watched directory in service across reloads.
//! - The `host_*` modules implement the API; [`state`] is what an instance's store holds.

mod bindings;
mod cache;
mod contain;
mod engine;
mod error;
mod execute;
mod host_data;
mod host_model;
mod host_report;
mod host_tensor;
#[cfg(test)]
mod host_tensor_fuzz;
mod limits;
mod load;
mod manifest;
mod registry;
mod state;
mod version;
mod wasi_wait;

pub use cache::default_cache_dir;
pub use engine::PluginEngine;
pub use error::PluginError;
pub use execute::RunFailure;
pub use limits::Limits;
pub use load::{LoadedPlugin, find_plugins};
pub use manifest::{ParamSpec, ParamType, PluginManifest};
pub use registry::{
    PluginEntry, PluginRegistry, RegistryEvent, load_shared, remove_shared, scan_shared,
};
pub use state::{CancelFlag, RunContext, RunState};
pub use version::{HOST_API_VERSION, compatible};
