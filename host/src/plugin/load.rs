//! Loading a plugin file: is it a component, does it speak our API version, is its manifest sound.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::PluginPre;
use super::contain::{contained, panic_failure};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::execute::limited_store;
use super::limits::{Limits, count_limit_message};
use super::manifest::PluginManifest;
use super::state::{RunContext, RunState};
use super::version::{HOST_API_VERSION, compatible};

/// The interface every plugin exports.
const METHOD_EXPORT: &str = "loupe:plugin/method";

/// A validated plugin, compiled and linked, ready to run any number of times.
pub struct LoadedPlugin {
    pub path: PathBuf,
    /// Of the `.wasm` file: recorded with every run so results can be traced to the exact plugin.
    pub sha256: String,
    /// The `loupe:plugin` version it was built against.
    pub api_version: String,
    pub manifest: PluginManifest,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// Reading, compiling (or fetching from the cache), linking and reading the manifest.
    pub load_time: Duration,
    pub(crate) pre: PluginPre<RunState>,
}

/// `.wasm` files in `dir`, sorted by name.
pub fn find_plugins(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PluginError::Io {
        path: dir.to_path_buf(),
        why: match e.kind() {
            std::io::ErrorKind::NotFound => {
                "plugin directory not found; build the plugins with scripts/build-plugins.sh or pass --plugins DIR".into()
            }
            _ => format!("cannot list: {e}"),
        },
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer fields of a core module (version 1, layer 0).
const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(PluginError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    if bytes[4..8] == CORE_MODULE {
        return Err(PluginError::CoreModule {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The `loupe:plugin` version a component was built for, from the names of what it imports and exports.
fn api_version_of(
    path: &Path,
    engine: &wasmtime::Engine,
    c: &Component,
) -> Result<String, PluginError> {
    let ty = c.component_type();
    let export = ty
        .exports(engine)
        .map(|(name, _)| name)
        .find(|name| name.starts_with(METHOD_EXPORT));
    let Some(export) = export else {
        return Err(PluginError::NotAPlugin {
            path: path.to_path_buf(),
            why: format!(
                "it does not export `{METHOD_EXPORT}`; write it with loupe-plugin-api and export_plugin!"
            ),
        });
    };
    let version = export
        .strip_prefix(METHOD_EXPORT)
        .and_then(|rest| rest.strip_prefix('@'))
        .unwrap_or("unversioned");
    if !compatible(HOST_API_VERSION, version) {
        return Err(PluginError::IncompatibleApi {
            path: path.to_path_buf(),
            found: version.to_string(),
            host: HOST_API_VERSION,
        });
    }
    // Imports must agree with the export: a component mixing API versions was not built by the SDK.
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("loupe:plugin/") {
            let v = rest.split_once('@').map_or("unversioned", |(_, v)| v);
            if !compatible(HOST_API_VERSION, v) {
                return Err(PluginError::IncompatibleApi {
                    path: path.to_path_buf(),
                    found: v.to_string(),
                    host: HOST_API_VERSION,
                });
            }
        }
    }
    Ok(version.to_string())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Limits for calling `manifest()`: it should return at once.
fn manifest_limits() -> Limits {
    Limits {
        memory_mb: 256,
        time_s: 5.0,
        tensor_mb: 0,
        stop_grace_s: 0.0,
    }
}

impl PluginEngine {
    /// Reads, validates, compiles (or fetches from the cache) and links a plugin, and reads its manifest.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, PluginError> {
        let start = Instant::now();
        let bytes = std::fs::read(path).map_err(|e| PluginError::Io {
            path: path.to_path_buf(),
            why: match e.kind() {
                std::io::ErrorKind::NotFound => "plugin file not found".into(),
                _ => format!("cannot read: {e}"),
            },
        })?;
        check_header(path, &bytes)?;
        let sha256 = sha256_hex(&bytes);

        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.engine, &sha256));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                let c =
                    Component::new(&self.engine, &bytes).map_err(|e| PluginError::Malformed {
                        path: path.to_path_buf(),
                        why: one_line(&e),
                    })?;
                if let Some(cache) = &self.cache {
                    cache.put(&sha256, &c);
                }
                c
            }
        };

        let api_version = api_version_of(path, &self.engine, &component)?;
        let not_a_plugin = |why: String| PluginError::NotAPlugin {
            path: path.to_path_buf(),
            why,
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            not_a_plugin(format!(
                "it needs an import this host does not provide ({})",
                one_line(&e)
            ))
        })?;
        let pre = PluginPre::new(instance_pre).map_err(|e| not_a_plugin(one_line(&e)))?;

        let raw = self
            .call_manifest(&pre)
            .map_err(|why| PluginError::Manifest {
                path: path.to_path_buf(),
                why,
            })?;
        let manifest = PluginManifest::from_wit(raw).map_err(|why| PluginError::Manifest {
            path: path.to_path_buf(),
            why,
        })?;
        if manifest.api_version != api_version {
            return Err(PluginError::Manifest {
                path: path.to_path_buf(),
                why: format!(
                    "it says api-version {} but was built against loupe:plugin@{api_version}",
                    manifest.api_version
                ),
            });
        }
        Ok(LoadedPlugin {
            path: path.to_path_buf(),
            sha256,
            api_version,
            manifest,
            from_cache,
            load_time: start.elapsed(),
            pre,
        })
    }

    /// Instantiates the plugin in a throwaway store, with tight limits, and asks for its manifest.
    /// A sleeping or spinning manifest is stopped at the limit's deadline; a host call that panics
    /// fails this load alone.
    fn call_manifest(
        &self,
        pre: &PluginPre<RunState>,
    ) -> Result<super::bindings::exports::loupe::plugin::method::PluginManifest, String> {
        let limits = manifest_limits();
        let mut store = limited_store(self, RunContext::inert(), &limits);
        let called = contained(|| {
            let instance = pre
                .instantiate(&mut store)
                .map_err(|e| format!("instantiating it failed: {}", refusal(&e)))?;
            instance
                .loupe_plugin_method()
                .call_manifest(&mut store)
                .map_err(|e| format!("manifest() failed: {}", refusal(&e)))
        });
        match (called, store.data().stop.reason()) {
            (Err(panic), _) => Err(panic_failure("this load", &panic)),
            (Ok(Err(_)), Some(reason)) => Err(format!(
                "manifest() did not return within {} s ({reason}); it must return at once, without \
                 sleeping or heavy work",
                limits.time_s
            )),
            (Ok(result), _) => result,
        }
    }
}

/// Why instantiating or calling a plugin failed: a count limit in its own words, else the error.
fn refusal(e: &wasmtime::Error) -> String {
    count_limit_message(e).unwrap_or_else(|| one_line(e))
}

/// A wasmtime error's cause chain on one line.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
