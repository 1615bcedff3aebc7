//! Default paths that do not depend on the directory a command is started from.

use std::path::{Path, PathBuf};

/// Where plugins are built to, under a checkout of loupe.
pub const PLUGINS_SUBDIR: &str = "plugins/dist";

/// The plugin directory when no `--plugins` (or `LOUPE_PLUGINS`) is given: `plugins/dist` in the
/// nearest folder at or above `near` (the experiment file's folder, or the watched one) that has one,
/// else in the checkout this binary was built in (`…/target/release/loupe`, symbolic links followed),
/// else `plugins/dist` under the current directory — so `loupe run examples/x.toml` finds the
/// plugins wherever it is started.
pub fn default_plugins_dir(near: Option<&Path>) -> PathBuf {
    let install = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok());
    find_plugins_dir(near, install.as_deref()).unwrap_or_else(|| PathBuf::from(PLUGINS_SUBDIR))
}

/// The search behind [`default_plugins_dir`], with the binary's path given.
fn find_plugins_dir(near: Option<&Path>, exe: Option<&Path>) -> Option<PathBuf> {
    let near = near.map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
    let from_near = near.iter().flat_map(|dir| dir.ancestors());
    let from_exe = exe
        .and_then(Path::parent)
        .into_iter()
        .flat_map(Path::ancestors);
    from_near
        .chain(from_exe)
        .map(|dir| dir.join(PLUGINS_SUBDIR))
        .find(|dir| dir.is_dir())
}

/// The folder an experiment file lives in (for relative lookups); `.` for a bare file name.
pub fn folder_of(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_found_above_the_experiment_then_beside_the_binary() {
        let root = tempfile::tempdir().unwrap();
        let checkout = root.path().join("checkout");
        std::fs::create_dir_all(checkout.join("plugins/dist")).unwrap();
        std::fs::create_dir_all(checkout.join("examples/deep")).unwrap();
        std::fs::create_dir_all(checkout.join("target/release")).unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let want = checkout.join("plugins/dist").canonicalize().unwrap();

        // Above the experiment file, however deep.
        let found = find_plugins_dir(Some(&checkout.join("examples/deep")), None).unwrap();
        assert_eq!(found.canonicalize().unwrap(), want);
        // An experiment elsewhere: beside the binary built in the checkout.
        let exe = checkout.join("target/release/loupe");
        let found = find_plugins_dir(Some(&elsewhere), Some(&exe)).unwrap();
        assert_eq!(found.canonicalize().unwrap(), want);
        // Nowhere: none, and the caller falls back to the current directory.
        assert_eq!(find_plugins_dir(Some(&elsewhere), None), None);
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_folder() {
        assert_eq!(folder_of(Path::new("exp.toml")), Path::new("."));
        assert_eq!(folder_of(Path::new("a/exp.toml")), Path::new("a"));
    }
}
