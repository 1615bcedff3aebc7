//! A directory dataset: files a plugin reads whole by name (`cfg.json`, `sae_weights.safetensors`).
//!
//! The directory is listed at load, so a wrong path fails before the run starts. A plugin names files,
//! never paths: every name is checked to be a plain file name, and the file it resolves to (symlinks
//! followed) must still lie directly inside the directory.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::safetensors_file::TensorFile;
use super::{DataError, DatasetInfo, DatasetKind, DirectorySpec, quoted_list};

/// The largest file `read-text` returns: text meant for a plugin's memory (configs) is small.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

#[derive(Debug)]
pub struct DirectoryDataset {
    /// As the experiment gave it, for messages.
    path: PathBuf,
    /// Canonical, to check where names resolve to.
    root: PathBuf,
    /// Regular files directly inside, sorted.
    files: Vec<String>,
}

/// Why a file of a directory dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not a plain file name inside the directory.
    #[error("{path}: `{name}` {why}")]
    BadName {
        path: PathBuf,
        name: String,
        why: &'static str,
    },
    #[error("{path}: no file `{name}`; {listing}")]
    NotFound {
        path: PathBuf,
        name: String,
        listing: String,
    },
    #[error("{path}: {size} bytes, over the {} MiB that read-text reads", MAX_TEXT_BYTES >> 20)]
    TooLarge { path: PathBuf, size: u64 },
    /// The file itself: unreadable, not UTF-8, not safetensors.
    #[error(transparent)]
    Data(#[from] DataError),
}

impl DirectoryDataset {
    pub fn load(spec: &DirectorySpec) -> Result<Self, DataError> {
        let path = spec.path.as_path();
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, &e))?;
        if !meta.is_dir() {
            return Err(DataError::file(
                path,
                "is not a directory; a dataset path without .txt, .jsonl or .safetensors names a directory of files",
            ));
        }
        let root = path.canonicalize().map_err(|e| DataError::io(path, &e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(|e| DataError::io(path, &e))? {
            let entry = entry.map_err(|e| DataError::io(path, &e))?;
            // A name a plugin cannot pass back (not UTF-8), or a file it could not read, is not listed.
            if let Some(name) = entry.file_name().to_str()
                && inside(&root, &entry.path()).is_some()
            {
                files.push(name.to_string());
            }
        }
        files.sort_unstable();
        Ok(DirectoryDataset {
            path: spec.path.clone(),
            root,
            files,
        })
    }

    pub fn info(&self) -> DatasetInfo {
        DatasetInfo {
            kind: DatasetKind::Directory,
            rows: self.files.len() as u64,
            width: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The regular files directly inside, sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The error for a batch request: a directory has no rows.
    pub(super) fn no_batches(&self) -> DataError {
        DataError::Batch {
            path: self.path.clone(),
            why: "is a directory dataset and has no batches; read its files with data.list-files, \
                  data.read-text and data.read-tensors"
                .into(),
        }
    }

    /// A UTF-8 file, at most [`MAX_TEXT_BYTES`].
    pub fn read_text(&self, name: &str) -> Result<String, FileError> {
        let path = self.resolve(name)?;
        let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, &e))?;
        let mut bytes = Vec::new();
        // Read one byte past the limit rather than trust the size, which may change under us.
        file.take(MAX_TEXT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::io(&path, &e))?;
        if bytes.len() as u64 > MAX_TEXT_BYTES {
            let size = std::fs::metadata(&path).map_or(bytes.len() as u64, |m| m.len());
            return Err(FileError::TooLarge { path, size });
        }
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            FileError::Data(DataError::file(
                &path,
                format!(
                    "is not UTF-8 text (invalid byte at offset {at}); read .safetensors files with read-tensors"
                ),
            ))
        })
    }

    /// A safetensors file, mapped and its header checked; nothing is converted yet.
    pub(crate) fn open_tensors(&self, name: &str) -> Result<TensorFile, FileError> {
        let path = self.resolve(name)?;
        Ok(TensorFile::open(&path)?)
    }

    /// The file `name` names: a listed plain file name that still resolves inside the directory.
    fn resolve(&self, name: &str) -> Result<PathBuf, FileError> {
        let bad = |why| FileError::BadName {
            path: self.path.clone(),
            name: name.to_string(),
            why,
        };
        let mut parts = Path::new(name).components();
        let plain =
            matches!((parts.next(), parts.next()), (Some(Component::Normal(p)), None) if p == name);
        if name.contains(['/', '\\', '\0']) || !plain {
            return Err(bad(
                "is not a file name: give a name from list-files, without directories",
            ));
        }
        if !self.files.iter().any(|f| f == name) {
            return Err(FileError::NotFound {
                path: self.path.clone(),
                name: name.to_string(),
                listing: if self.files.is_empty() {
                    "the directory holds no files".into()
                } else {
                    let names: Vec<&str> = self.files.iter().map(String::as_str).collect();
                    format!("it holds {}", quoted_list(&names, 20))
                },
            });
        }
        // Checked again here: the file may have been replaced by a link since the listing.
        inside(&self.root, &self.root.join(name))
            .ok_or_else(|| bad("resolves outside the dataset directory or is not a regular file"))
    }
}

/// `path` with symlinks resolved, if it is a regular file directly inside `root` (canonical).
fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    (real.parent() == Some(root) && real.is_file()).then_some(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(dir: &Path) -> DirectoryDataset {
        DirectoryDataset::load(&DirectorySpec {
            path: dir.to_path_buf(),
        })
        .unwrap()
    }

    #[test]
    fn lists_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cfg.json"), "{}").unwrap();
        std::fs::write(dir.path().join("a.bin"), [0u8; 3]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/inner.txt"), "x").unwrap();
        let ds = dataset(dir.path());
        assert_eq!(ds.files(), ["a.bin", "cfg.json"]);
        assert_eq!(
            ds.info(),
            DatasetInfo {
                kind: DatasetKind::Directory,
                rows: 2,
                width: 0
            }
        );
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = DirectoryDataset::load(&DirectorySpec { path: missing })
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope: not found"), "{err}");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = DirectoryDataset::load(&DirectorySpec { path: file })
            .unwrap_err()
            .to_string();
        assert!(err.contains("f: is not a directory"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn reads_text_and_refuses_what_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cfg.json"), "{\"d_sae\": 8}").unwrap();
        std::fs::write(dir.path().join("bin"), [0xffu8, 0xfe, 0x00]).unwrap();
        let ds = dataset(dir.path());
        assert_eq!(ds.read_text("cfg.json").unwrap(), "{\"d_sae\": 8}");
        let err = ds.read_text("bin").unwrap_err();
        assert!(matches!(err, FileError::Data(_)), "{err}");
        assert!(err.to_string().contains("bin: is not UTF-8 text"), "{err}");

        let err = ds.read_text("weights.json").unwrap_err();
        assert!(matches!(err, FileError::NotFound { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("no file `weights.json`; it holds `bin`, `cfg.json`"),
            "{err}"
        );
        for name in ["../cfg.json", "/etc/passwd", "sub/x", "a\\b", "..", ".", ""] {
            let err = ds.read_text(name).unwrap_err();
            assert!(matches!(err, FileError::BadName { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn text_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::fs::File::create(dir.path().join("big.txt")).unwrap();
        big.set_len(MAX_TEXT_BYTES + 1).unwrap();
        let ds = dataset(dir.path());
        let err = ds.read_text("big.txt").unwrap_err();
        assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("16 MiB"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_directory_are_not_followed() {
        let outer = tempfile::tempdir().unwrap();
        let secret = outer.path().join("secret.txt");
        std::fs::write(&secret, "secret").unwrap();
        let dir = outer.path().join("sae");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cfg.json"), "{}").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(dir.join("cfg.json"), dir.join("alias.json")).unwrap();
        let ds = dataset(&dir);
        // A link inside the directory is a file like any other; one leading out is not listed.
        assert_eq!(ds.files(), ["alias.json", "cfg.json"]);
        assert_eq!(ds.read_text("alias.json").unwrap(), "{}");
        assert!(matches!(
            ds.read_text("escape.txt"),
            Err(FileError::NotFound { .. })
        ));
        // Swapped for a link after the listing: still refused.
        std::fs::remove_file(dir.join("cfg.json")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("cfg.json")).unwrap();
        let err = ds.read_text("cfg.json").unwrap_err();
        assert!(matches!(err, FileError::BadName { .. }), "{err}");
        assert!(
            err.to_string().contains("outside the dataset directory"),
            "{err}"
        );
    }
}
