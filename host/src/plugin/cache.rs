//! Compiled plugins cached on disk, so a plugin is compiled once per build of loupe, not per load.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept: `components/` under loupe's cache directory
/// (`$LOUPE_CACHE_DIR`, else `$XDG_CACHE_HOME/loupe`, else `~/.cache/loupe`).
pub fn default_cache_dir() -> Option<PathBuf> {
    loupe_kernels::cuda::cache_base_dir().map(|base| base.join("components"))
}

pub struct ComponentCache {
    dir: PathBuf,
    /// Distinguishes compilers and settings: a cached artifact only loads into an identical engine.
    engine_key: u64,
}

impl ComponentCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        // `DefaultHasher` may change between Rust releases; then a new build of loupe simply misses the
        // cache once and recompiles. Entries are never evicted: one per plugin file and build.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: hasher.finish(),
        }
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{:016x}.cwasm", self.engine_key))
    }

    /// The compiled component for this source hash, if cached and loadable.
    pub fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry(sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `put` below, from `Component::serialize` of this same engine
        // configuration (the engine key is in its name), into loupe's own cache directory. wasmtime
        // checks the header and compatibility hash again and fails cleanly on a mismatch; a cache
        // directory rewritten by someone else is as trusted as the loupe binary itself.
        unsafe { Component::deserialize_file(engine, &path) }.ok()
    }

    /// Stores a compiled component; failures only cost a recompile next time, so they are ignored.
    pub fn put(&self, sha256: &str, component: &Component) {
        let Ok(bytes) = component.serialize() else {
            return;
        };
        let path = self.entry(sha256);
        let _ = write_atomically(&self.dir, &path, &bytes);
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
