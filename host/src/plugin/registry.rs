//! The plugins in service, by file: what hot loading keeps up to date. Loading a file that fails
//! leaves the version loaded from it before in service (and says so); removing a file takes its
//! plugin out of service. Runs hold an `Arc` of the plugin they started with, so replacing it never
//! touches a run in progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::engine::PluginEngine;
use super::load::{LoadedPlugin, find_plugins};

/// What one change to the plugin directory did.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryEvent {
    /// A plugin is (now) in service from `path`; `replaced` names the version it took over from.
    Loaded {
        path: PathBuf,
        name: String,
        version: String,
        api_version: String,
        from_cache: bool,
        load_time: Duration,
        replaced: Option<String>,
    },
    /// `path` could not be loaded; `kept` is the version still in service from it, if any.
    Failed {
        path: PathBuf,
        error: String,
        kept: Option<(String, String)>,
    },
    /// `path` is gone, and with it the plugin it held.
    Removed {
        path: PathBuf,
        name: String,
        version: String,
    },
}

impl RegistryEvent {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            RegistryEvent::Loaded {
                path,
                name,
                version,
                api_version,
                from_cache,
                load_time,
                replaced,
            } => format!(
                "plugin {name} {version} (API {api_version}) ready from {} in {:.0} ms{}{}",
                path.display(),
                load_time.as_secs_f64() * 1e3,
                if *from_cache {
                    ", compiled code from the cache"
                } else {
                    ""
                },
                replaced
                    .as_ref()
                    .map(|v| format!(", replacing {v}"))
                    .unwrap_or_default()
            ),
            RegistryEvent::Failed { error, kept, .. } => match kept {
                Some((name, version)) => {
                    format!("{error}; {name} {version} stays in service")
                }
                None => error.clone(),
            },
            RegistryEvent::Removed {
                path,
                name,
                version,
            } => format!(
                "plugin {name} {version} removed ({} is gone)",
                path.display()
            ),
        }
    }

    /// The event as a JSON object, for `--json` output.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            RegistryEvent::Loaded {
                path,
                name,
                version,
                api_version,
                from_cache,
                load_time,
                replaced,
            } => serde_json::json!({
                "event": "plugin-loaded", "path": path, "name": name, "version": version,
                "api_version": api_version, "from_cache": from_cache,
                "load_ms": load_time.as_secs_f64() * 1e3, "replaced": replaced,
            }),
            RegistryEvent::Failed { path, error, kept } => serde_json::json!({
                "event": "plugin-failed", "path": path, "error": error,
                "kept": kept.as_ref().map(|(n, v)| format!("{n} {v}")),
            }),
            RegistryEvent::Removed {
                path,
                name,
                version,
            } => serde_json::json!({
                "event": "plugin-removed", "path": path, "name": name, "version": version,
            }),
        }
    }
}

/// One plugin file's state.
#[derive(Default)]
struct Slot {
    current: Option<Arc<LoadedPlugin>>,
    last_error: Option<String>,
}

/// A plugin file's state, for listings.
pub struct PluginEntry {
    pub path: PathBuf,
    pub plugin: Option<Arc<LoadedPlugin>>,
    /// The last load's error when it failed (the plugin above, if any, is the version before).
    pub error: Option<String>,
}

#[derive(Default)]
pub struct PluginRegistry {
    slots: BTreeMap<PathBuf, Slot>,
}

impl PluginRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every `.wasm` file of `dir`; one event per file.
    pub fn scan(&mut self, engine: &PluginEngine, dir: &Path) -> Vec<RegistryEvent> {
        match find_plugins(dir) {
            Ok(files) => files.iter().map(|f| self.load(engine, f)).collect(),
            Err(e) => vec![RegistryEvent::Failed {
                path: dir.to_path_buf(),
                error: e.to_string(),
                kept: None,
            }],
        }
    }

    /// (Re)loads `path`: on success its plugin replaces the one loaded from it before; on failure that
    /// one stays in service.
    pub fn load(&mut self, engine: &PluginEngine, path: &Path) -> RegistryEvent {
        let slot = self.slots.entry(path.to_path_buf()).or_default();
        match engine.load(path) {
            Ok(plugin) => {
                let replaced = slot
                    .current
                    .as_ref()
                    .map(|p| format!("{} {}", p.manifest.name, p.manifest.version));
                let event = RegistryEvent::Loaded {
                    path: path.to_path_buf(),
                    name: plugin.manifest.name.clone(),
                    version: plugin.manifest.version.clone(),
                    api_version: plugin.api_version.clone(),
                    from_cache: plugin.from_cache,
                    load_time: plugin.load_time,
                    replaced,
                };
                slot.current = Some(Arc::new(plugin));
                slot.last_error = None;
                event
            }
            Err(e) => {
                let error = e.to_string();
                slot.last_error = Some(error.clone());
                let kept = slot
                    .current
                    .as_ref()
                    .map(|p| (p.manifest.name.clone(), p.manifest.version.clone()));
                RegistryEvent::Failed {
                    path: path.to_path_buf(),
                    error,
                    kept,
                }
            }
        }
    }

    /// Takes the plugin of a removed file out of service; `None` when none was loaded from it.
    pub fn remove(&mut self, path: &Path) -> Option<RegistryEvent> {
        let slot = self.slots.remove(path)?;
        let plugin = slot.current?;
        Some(RegistryEvent::Removed {
            path: path.to_path_buf(),
            name: plugin.manifest.name.clone(),
            version: plugin.manifest.version.clone(),
        })
    }

    /// The plugin in service under `name`: its manifest name, or its file's stem.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let plugins = || {
            self.slots
                .iter()
                .filter_map(|(p, s)| Some((p, s.current.as_ref()?)))
        };
        plugins()
            .find(|(_, p)| p.manifest.name == name)
            .or_else(|| plugins().find(|(path, _)| path.file_stem().is_some_and(|s| s == name)))
            .map(|(_, p)| p.clone())
    }

    /// The names of the plugins in service, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .slots
            .values()
            .filter_map(|s| Some(s.current.as_ref()?.manifest.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every plugin file seen, with its plugin and last error.
    pub fn entries(&self) -> Vec<PluginEntry> {
        self.slots
            .iter()
            .map(|(path, slot)| PluginEntry {
                path: path.clone(),
                plugin: slot.current.clone(),
                error: slot.last_error.clone(),
            })
            .collect()
    }
}
