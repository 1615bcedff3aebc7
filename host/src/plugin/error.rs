//! Why a plugin file could not be loaded. Every message starts with the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{}: {why}", path.display())]
    Io { path: PathBuf, why: String },
    #[error("{}: not a WebAssembly file (it does not start with the `\\0asm` magic); plugins are .wasm components built for wasm32-wasip2", path.display())]
    NotWasm { path: PathBuf },
    #[error("{}: a core WebAssembly module, not a component; build the plugin with `cargo build --target wasm32-wasip2` (scripts/build-plugins.sh does)", path.display())]
    CoreModule { path: PathBuf },
    #[error("{}: malformed component: {why}", path.display())]
    Malformed { path: PathBuf, why: String },
    #[error("{}: built for loupe:plugin@{found}, but this loupe speaks loupe:plugin@{host}; rebuild the plugin against loupe-plugin-api {host}", path.display())]
    IncompatibleApi {
        path: PathBuf,
        found: String,
        host: &'static str,
    },
    #[error("{}: not a loupe plugin: {why}", path.display())]
    NotAPlugin { path: PathBuf, why: String },
    #[error("{}: bad manifest: {why}", path.display())]
    Manifest { path: PathBuf, why: String },
    #[error("plugin engine: {0}")]
    Engine(String),
}
