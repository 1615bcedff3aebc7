//! The plugins in service, by file: what hot loading keeps up to date. Loading a file that fails
//! leaves the version loaded from it before in service (and says so); removing a file takes its
//! plugin out of service. Runs hold an `Arc` of the plugin they started with, so replacing it never
//! touches a run in progress.
//!
//! One name, one file: a plugin whose manifest name is already in service from another file is
//! refused, with both files named. A scan loads files in file-name order, so there the first file
//! in name order keeps the name; afterwards, the file in service keeps it until it is removed (or
//! stops claiming it), and then the refused files are tried again. `loupe run`, `loupe plugins list`
//! and `loupe watch` all resolve names through this registry, so they agree on which file serves.
//!
//! Loading runs plugin code (`manifest()`), which may be slow: [`load_shared`] and [`scan_shared`]
//! load outside the registry's lock and take it only to put the result in service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::engine::PluginEngine;
use super::error::PluginError;
use super::load::{LoadedPlugin, find_plugins};
use crate::text::{MAX_SHOWN_NAME_CHARS, shown, shown_capped};

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
    /// One line for people, plugin text escaped (see [`crate::text`]).
    pub fn describe(&self) -> String {
        let name = |s: &str| shown_capped(s, MAX_SHOWN_NAME_CHARS);
        match self {
            RegistryEvent::Loaded {
                path,
                name: plugin,
                version,
                api_version,
                from_cache,
                load_time,
                replaced,
            } => format!(
                "plugin {} {} (API {}) ready from {} in {:.0} ms{}{}",
                name(plugin),
                name(version),
                name(api_version),
                shown(&path.display().to_string()),
                load_time.as_secs_f64() * 1e3,
                if *from_cache {
                    ", compiled code from the cache"
                } else {
                    ""
                },
                replaced
                    .as_ref()
                    .map(|v| format!(", replacing {}", shown(v)))
                    .unwrap_or_default()
            ),
            RegistryEvent::Failed { error, kept, .. } => match kept {
                Some((plugin, version)) => format!(
                    "{}; {} {} stays in service",
                    shown(error),
                    name(plugin),
                    name(version)
                ),
                None => shown(error),
            },
            RegistryEvent::Removed {
                path,
                name: plugin,
                version,
            } => format!(
                "plugin {} {} removed ({} is gone)",
                name(plugin),
                name(version),
                shown(&path.display().to_string())
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
    /// The name its last load claimed but another file held: tried again once that name is free.
    waiting_for: Option<String>,
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

    /// Loads every `.wasm` file of `dir`, in file-name order; one event per file.
    pub fn scan(&mut self, engine: &PluginEngine, dir: &Path) -> Vec<RegistryEvent> {
        match find_plugins(dir) {
            Ok(files) => files.iter().map(|f| self.load(engine, f)).collect(),
            Err(e) => vec![scan_failed(dir, e)],
        }
    }

    /// (Re)loads `path`: on success its plugin replaces the one loaded from it before; on failure that
    /// one stays in service.
    pub fn load(&mut self, engine: &PluginEngine, path: &Path) -> RegistryEvent {
        let loaded = engine.load(path);
        self.admit(path, loaded)
    }

    /// Puts the outcome of loading `path` in service: a plugin replaces the one loaded from that file
    /// before, unless another file already serves its name (then it is refused, naming both files);
    /// a failure leaves the version before in service.
    pub fn admit(
        &mut self,
        path: &Path,
        loaded: Result<LoadedPlugin, PluginError>,
    ) -> RegistryEvent {
        let holder = match &loaded {
            Ok(plugin) => self.holder_of(&plugin.manifest.name, path),
            Err(_) => None,
        };
        let slot = self.slots.entry(path.to_path_buf()).or_default();
        slot.waiting_for = None;
        let kept = |slot: &Slot| {
            slot.current
                .as_ref()
                .map(|p| (p.manifest.name.clone(), p.manifest.version.clone()))
        };
        let plugin = match (loaded, holder) {
            (Ok(plugin), None) => plugin,
            (Ok(plugin), Some(holder)) => {
                let name = plugin.manifest.name;
                let error = format!(
                    "{}: plugin name `{name}` is already in service from {}; one name, one file: \
                     remove or rename one of them (the file in service keeps the name; at a scan, \
                     the first in file-name order)",
                    path.display(),
                    holder.display()
                );
                slot.last_error = Some(error.clone());
                slot.waiting_for = Some(name);
                return RegistryEvent::Failed {
                    path: path.to_path_buf(),
                    error,
                    kept: kept(slot),
                };
            }
            (Err(e), _) => {
                let error = e.to_string();
                slot.last_error = Some(error.clone());
                return RegistryEvent::Failed {
                    path: path.to_path_buf(),
                    error,
                    kept: kept(slot),
                };
            }
        };
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

    /// The file, other than `path`, whose plugin in service is named `name`.
    fn holder_of(&self, name: &str, path: &Path) -> Option<PathBuf> {
        self.slots
            .iter()
            .find(|(p, s)| {
                p.as_path() != path && s.current.as_ref().is_some_and(|c| c.manifest.name == name)
            })
            .map(|(p, _)| p.clone())
    }

    /// Files refused because another file held the name they claim, where that name is free now:
    /// what to load again so that the registry ends where a fresh scan would.
    pub fn freed(&self) -> Vec<PathBuf> {
        let in_service = |name: &str| {
            self.slots
                .values()
                .any(|s| s.current.as_ref().is_some_and(|c| c.manifest.name == name))
        };
        self.slots
            .iter()
            .filter(|(_, s)| s.waiting_for.as_deref().is_some_and(|n| !in_service(n)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The name `path`'s last load claimed while another file held it.
    pub fn waiting_for(&self, path: &Path) -> Option<&str> {
        self.slots.get(path)?.waiting_for.as_deref()
    }

    /// The plugin in service from the file `path`.
    pub fn at(&self, path: &Path) -> Option<Arc<LoadedPlugin>> {
        self.slots.get(path)?.current.clone()
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

fn scan_failed(dir: &Path, e: PluginError) -> RegistryEvent {
    RegistryEvent::Failed {
        path: dir.to_path_buf(),
        error: e.to_string(),
        kept: None,
    }
}

fn lock(registry: &Mutex<PluginRegistry>) -> MutexGuard<'_, PluginRegistry> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads `path` into a registry others use at the same time: the loading (compiling, running the
/// plugin's `manifest()`) happens outside the lock, which is taken only to put the result in
/// service. Files waiting for a name this frees are loaded again; one event per load.
pub fn load_shared(
    registry: &Mutex<PluginRegistry>,
    engine: &PluginEngine,
    path: &Path,
) -> Vec<RegistryEvent> {
    load_shared_with(registry, path, |p| engine.load(p))
}

/// [`load_shared`] with the loading step given (the tests count on it never seeing the lock held).
fn load_shared_with(
    registry: &Mutex<PluginRegistry>,
    path: &Path,
    load: impl Fn(&Path) -> Result<LoadedPlugin, PluginError>,
) -> Vec<RegistryEvent> {
    let loaded = load(path);
    let event = lock(registry).admit(path, loaded);
    let mut events = vec![event];
    events.extend(retry_freed(registry, &load));
    events
}

/// Takes `path`'s plugin out of a shared registry; files waiting for the name it held are loaded
/// again (outside the lock).
pub fn remove_shared(
    registry: &Mutex<PluginRegistry>,
    engine: &PluginEngine,
    path: &Path,
) -> Vec<RegistryEvent> {
    let removed = lock(registry).remove(path);
    let mut events: Vec<RegistryEvent> = removed.into_iter().collect();
    events.extend(retry_freed(registry, &|p: &Path| engine.load(p)));
    events
}

/// Loads, in file-name order, the files whose claimed name became free, until none is left: each
/// load takes the name, fails for another reason, or claims a name still held. (Files whose new
/// versions swap names with each other could keep freeing names for one another: the number of
/// files bounds the rounds.)
fn retry_freed(
    registry: &Mutex<PluginRegistry>,
    load: &impl Fn(&Path) -> Result<LoadedPlugin, PluginError>,
) -> Vec<RegistryEvent> {
    let mut events = Vec::new();
    let rounds = lock(registry).slots.len();
    for _ in 0..rounds {
        let Some(next) = lock(registry).freed().into_iter().next() else {
            break;
        };
        let loaded = load(&next);
        events.push(lock(registry).admit(&next, loaded));
    }
    events
}

/// [`PluginRegistry::scan`] for a shared registry: each file loaded outside the lock.
pub fn scan_shared(
    registry: &Mutex<PluginRegistry>,
    engine: &PluginEngine,
    dir: &Path,
) -> Vec<RegistryEvent> {
    match find_plugins(dir) {
        Ok(files) => files
            .iter()
            .flat_map(|f| load_shared(registry, engine, f))
            .collect(),
        Err(e) => vec![scan_failed(dir, e)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A load that fails the way a broken file does, after checking whether the lock is free.
    fn failing_load(
        registry: &Mutex<PluginRegistry>,
    ) -> impl Fn(&Path) -> Result<LoadedPlugin, PluginError> + '_ {
        move |path: &Path| {
            assert!(
                registry.try_lock().is_ok(),
                "the registry's lock is held while {} loads",
                path.display()
            );
            Err(PluginError::NotWasm {
                path: path.to_path_buf(),
            })
        }
    }

    #[test]
    fn loading_into_a_shared_registry_never_holds_its_lock() {
        let registry = Mutex::new(PluginRegistry::new());
        let path = Path::new("/plugins/slow.wasm");
        let events = load_shared_with(&registry, path, failing_load(&registry));
        assert!(
            matches!(&events[..], [RegistryEvent::Failed { kept: None, .. }]),
            "{events:?}"
        );
        assert!(lock(&registry).entries()[0].error.is_some());
    }
}
