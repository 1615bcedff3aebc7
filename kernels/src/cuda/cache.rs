//! Where compiled kernels (PTX) are kept between runs.

use std::path::PathBuf;

/// loupe's cache directory: `$LOUPE_CACHE_DIR`, else `$XDG_CACHE_HOME/loupe`, else `~/.cache/loupe`.
/// Compiled kernels and compiled plugins each keep a directory under it.
pub fn cache_base_dir() -> Option<PathBuf> {
    std::env::var_os("LOUPE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("loupe")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/loupe")))
}

/// `kernels/` under [`cache_base_dir`].
pub fn kernel_cache_dir() -> Option<PathBuf> {
    cache_base_dir().map(|base| base.join("kernels"))
}
