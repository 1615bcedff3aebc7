//! Artifacts a run writes into its directory.
//!
//! Plugins are untrusted: they ask the host to write files by name, and every name is checked
//! ([`ArtifactDir::path_for`]) before anything touches the disk, so a plugin can only ever create files
//! under the run's `artifacts/` directory. Each file appears atomically — its bytes go to a temporary
//! file beside it that is then renamed — so a reader never sees one half-written. A per-directory byte
//! budget bounds how much one run can write.

pub(crate) mod counting;
mod encode;
mod name;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use loupe_kernels::Tensor;

/// The budget [`ArtifactDir::new`] gives a run: 4 GiB.
pub const DEFAULT_BUDGET_BYTES: u64 = 4 << 30;

/// Sizing an encoding counts at least this far, so that a refusal near the budget can say the exact
/// size.
const SIZING_FLOOR: u64 = 1 << 20;

/// The longest artifact name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// The most `/`-separated components an artifact name may have.
pub const MAX_NAME_COMPONENTS: usize = 4;

/// The largest height or width of a PNG artifact, in pixels.
pub const MAX_IMAGE_SIDE: usize = 16384;

/// Every way writing an artifact can fail. Each message is one line that names the artifact (as the plugin
/// gave it, with control characters escaped and very long names shortened) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The name breaks one of the naming rules; `rule` says which.
    #[error("artifact `{name}`: {rule}")]
    InvalidName { name: String, rule: String },
    /// `write_json` was given text that is not one JSON document; `error` is serde_json's message,
    /// with the line and column.
    #[error(
        "artifact `{name}`: not valid JSON ({error}); pass exactly one well-formed JSON document"
    )]
    InvalidJson { name: String, error: String },
    /// A CSV row (0-based index among the data rows, header excluded) has the wrong number of fields.
    #[error(
        "artifact `{name}`: row {row} has {got} fields but the header has {expected}; give every row exactly one field per header column"
    )]
    CsvRowLength {
        name: String,
        row: usize,
        got: usize,
        expected: usize,
    },
    /// A CSV header with no columns.
    #[error("artifact `{name}`: the header has no columns; a csv artifact needs at least one")]
    CsvEmptyHeader { name: String },
    /// The tensor given to `write_png` is not an f32 `[h, w]` or `[h, w, 3]` image of a valid size.
    #[error(
        "artifact `{name}`: cannot write a tensor of dtype {dtype} and shape {shape:?} as a png; pass an f32 tensor [h, w] (grayscale) or [h, w, 3] (RGB) with 1 <= h, w <= {MAX_IMAGE_SIDE} and values in [0, 1]"
    )]
    BadImage {
        name: String,
        dtype: String,
        shape: Vec<usize>,
    },
    /// A problem with the tensors given to `write_tensors` (an empty, duplicate or reserved name).
    #[error("artifact `{name}`: {why}")]
    BadTensors { name: String, why: String },
    /// Writing would take the run past its byte budget. `used` is what the run had written before.
    #[error(
        "artifact `{name}`: writing {bytes} bytes would exceed the run's artifact budget of {budget} bytes ({used} bytes already written); write less"
    )]
    BudgetExceeded {
        name: String,
        bytes: u64,
        budget: u64,
        used: u64,
    },
    /// Encoding the artifact passed the budget left to the run by far (found out while sizing it,
    /// before anything was written, by a count that stopped at `counted` bytes).
    #[error(
        "artifact `{name}`: as encoded it is more than {counted} bytes, past the {left} bytes left of the run's artifact budget of {budget} bytes; write less"
    )]
    OverBudget {
        name: String,
        counted: u64,
        left: u64,
        budget: u64,
    },
    /// A tensor's values could not be read back from its device.
    #[error(
        "artifact `{name}`: cannot read the tensor data back from its device ({error}); check the tensor is valid"
    )]
    TensorRead { name: String, error: String },
    /// The file system refused. `path` is the file or directory involved (kept out of the message, which
    /// plugins see, but there for the host to log).
    #[error(
        "artifact `{name}`: cannot write it ({error}); check that the run directory is writable, has free space, and that no other artifact's name is a directory or file in the way"
    )]
    Io {
        name: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// Encoding or serialization failed (PNG or safetensors); `why` is the encoder's message.
    #[error("artifact `{name}`: cannot encode it: {why}")]
    Encode { name: String, why: String },
}

/// The kinds of file a plugin may write, each with the extensions its names may end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// `.safetensors`
    Tensors,
    /// `.json`
    Json,
    /// `.csv`
    Csv,
    /// `.png`
    Png,
    /// `.html`, `.md`, `.txt`, `.svg`: text written as given.
    Text,
}

impl ArtifactKind {
    /// The extensions a name of this kind may end with, with their dots; the first is the usual one.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ArtifactKind::Tensors => &[".safetensors"],
            ArtifactKind::Json => &[".json"],
            ArtifactKind::Csv => &[".csv"],
            ArtifactKind::Png => &[".png"],
            ArtifactKind::Text => &[".html", ".md", ".txt", ".svg"],
        }
    }

    /// The usual extension, with its dot: `.json`.
    pub fn extension(self) -> &'static str {
        self.extensions()[0]
    }

    /// The word messages use for the kind: `json`, `csv`, `png`, `safetensors`, `text`.
    pub fn label(self) -> &'static str {
        match self {
            ArtifactKind::Text => "text",
            other => &other.extension()[1..],
        }
    }
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where a plugin's artifacts go: `<run dir>/artifacts`. The directory (and any subdirectories a name
/// asks for) is created lazily, on the first write that needs it. Writers take `&self` and may be
/// called from several threads.
#[derive(Debug)]
pub struct ArtifactDir {
    root: PathBuf,
    budget: u64,
    used: AtomicU64,
}

/// Numbers temporary files so that concurrent writes of one name in this process never share one.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArtifactDir {
    /// `root` is the artifacts directory itself; the budget is [`DEFAULT_BUDGET_BYTES`].
    pub fn new(root: PathBuf) -> Self {
        Self::with_budget(root, DEFAULT_BUDGET_BYTES)
    }

    /// `root` is the artifacts directory itself; all writes together may put at most `max_bytes` bytes
    /// on disk (an overwrite of a name counts again).
    pub fn with_budget(root: PathBuf, max_bytes: u64) -> Self {
        ArtifactDir {
            root,
            budget: max_bytes,
            used: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The most bytes this directory's writes may add up to.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The bytes written so far (successful writes only).
    pub fn bytes_written(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Validates an untrusted artifact name and returns the path it maps to under [`root`](Self::root).
    ///
    /// A name is relative and `/`-separated, at most [`MAX_NAME_LEN`] bytes and [`MAX_NAME_COMPONENTS`]
    /// components long; each component is non-empty, uses only `A-Z a-z 0-9 . _ -`, and does not start
    /// with `.` (so no `.`, `..` or hidden files, and the file name has a non-empty stem); the name ends
    /// with the kind's extension. Nothing is touched on disk.
    pub fn path_for(&self, name: &str, kind: ArtifactKind) -> Result<PathBuf, ArtifactError> {
        let components = name::validate(name, kind).map_err(|rule| ArtifactError::InvalidName {
            name: shown(name),
            rule,
        })?;
        let mut path = self.root.clone();
        path.extend(components);
        Ok(path)
    }

    /// Writes `json` (which must parse as one JSON document) pretty-printed, with a final newline.
    /// Its size as encoded is charged to the budget before anything is written, and the text is
    /// never expanded in memory: it is checked in place and encoded straight to the file.
    pub fn write_json(&self, name: &str, json: &str) -> Result<u64, ArtifactError> {
        let path = self.path_for(name, ArtifactKind::Json)?;
        encode::check_json(name, json)?;
        let size = self.sized(name, |w| encode::pretty_json(json, w))?;
        self.write_atomic_with(name, &path, size, |w| encode::pretty_json(json, w))
    }

    /// Writes a CSV file: the header, then each row, as RFC 4180 records ending in CRLF. A field that
    /// contains `,`, `"`, CR or LF is quoted, with its quotes doubled (a lone empty field is written `""`
    /// so the record is not an empty line). Every row must have `header.len()` fields.
    pub fn write_csv(
        &self,
        name: &str,
        header: &[String],
        rows: &[Vec<String>],
    ) -> Result<u64, ArtifactError> {
        let path = self.path_for(name, ArtifactKind::Csv)?;
        encode::check_csv(name, header, rows)?;
        let size = self.sized(name, |w| encode::csv(header, rows, w))?;
        self.write_atomic_with(name, &path, size, |w| encode::csv(header, rows, w))
    }

    /// Writes UTF-8 text as given (an HTML page, Markdown).
    pub fn write_text(&self, name: &str, text: &str) -> Result<u64, ArtifactError> {
        let path = self.path_for(name, ArtifactKind::Text)?;
        self.write_atomic(name, &path, text.as_bytes())
    }

    /// Writes an f32 tensor `[h, w]` (grayscale) or `[h, w, 3]` (RGB) as an 8-bit PNG: values are
    /// clamped to [0, 1] (NaN becomes 0) and scaled to 0..=255 with rounding.
    pub fn write_png(&self, name: &str, image: &Tensor) -> Result<u64, ArtifactError> {
        let path = self.path_for(name, ArtifactKind::Png)?;
        let bytes = encode::png(name, image)?;
        self.write_atomic(name, &path, &bytes)
    }

    /// Writes named f32/i32 tensors as one safetensors file, laid out as
    /// [`write_safetensors`](crate::tensor_file::write_safetensors) lays it out. Tensor names must be
    /// non-empty, unique, and not `__metadata__` (the format reserves it). The file's exact size is
    /// charged first; the data is then streamed one tensor at a time, never buffered whole.
    pub fn write_tensors(
        &self,
        name: &str,
        tensors: &[(String, Tensor)],
    ) -> Result<u64, ArtifactError> {
        let path = self.path_for(name, ArtifactKind::Tensors)?;
        let layout = encode::tensors_layout(name, tensors)?;
        self.write_atomic_with(name, &path, layout.size(), |w| {
            encode::tensors(&layout, tensors, w)
        })
    }

    /// The size `encode` writes, found by encoding into a counter. The count stops once it passes
    /// what is left of the budget (or [`SIZING_FLOOR`], if more), so sizing a request too big costs
    /// no more work than the budget; below that, the size is exact and the charge refuses it.
    fn sized(
        &self,
        name: &str,
        encode: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64, ArtifactError> {
        let left = self.budget.saturating_sub(self.bytes_written());
        let counted = left.max(SIZING_FLOOR);
        match counting::encoded_size(counted, encode) {
            Ok(Some(size)) => Ok(size),
            Ok(None) => Err(ArtifactError::OverBudget {
                name: shown(name),
                counted,
                left,
                budget: self.budget,
            }),
            Err(e) => Err(ArtifactError::Encode {
                name: shown(name),
                why: one_line(&e.to_string()),
            }),
        }
    }

    /// Charges `bytes` to the budget, or fails without charging anything.
    fn reserve(&self, name: &str, bytes: u64) -> Result<(), ArtifactError> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.budget)
            })
            .map(|_| ())
            .map_err(|used| ArtifactError::BudgetExceeded {
                name: shown(name),
                bytes,
                budget: self.budget,
                used,
            })
    }

    /// Gives back a reservation whose write failed.
    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }

    fn create_parent(&self, name: &str, path: &Path) -> Result<(), ArtifactError> {
        let parent = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|error| ArtifactError::Io {
            name: shown(name),
            path: parent.to_path_buf(),
            error,
        })
    }

    /// Charges the budget, then writes `bytes` atomically (see [`write_atomic_with`](Self::write_atomic_with)).
    fn write_atomic(&self, name: &str, path: &Path, bytes: &[u8]) -> Result<u64, ArtifactError> {
        self.write_atomic_with(name, path, bytes.len() as u64, |w| w.write_all(bytes))
    }

    /// Charges `size` bytes to the budget, then has `write` write them to
    /// `<dir>/.<file name>.tmp-<pid>-<counter>` (created fresh, never through an existing file),
    /// syncs it, and renames it onto `path`. A writer that would go past `size` is stopped. On
    /// failure the temporary file is removed and the charge given back.
    fn write_atomic_with(
        &self,
        name: &str,
        path: &Path,
        size: u64,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64, ArtifactError> {
        self.reserve(name, size)?;
        let result = self
            .create_parent(name, path)
            .and_then(|()| write_via_temp(path, size, write))
            .map_err(|e| match e {
                ArtifactError::Io { path, error, .. } => io_failure(name, path, error),
                other => other,
            });
        match result {
            Ok(()) => Ok(size),
            Err(e) => {
                self.release(size);
                Err(e)
            }
        }
    }
}

/// An I/O failure while writing an artifact, sorted: a tensor that could not be read back, an
/// encoder that wrote more than was charged (a bug), or the file system.
fn io_failure(name: &str, path: PathBuf, error: std::io::Error) -> ArtifactError {
    if let Some(read) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<encode::TensorReadFailed>())
    {
        return ArtifactError::TensorRead {
            name: shown(name),
            error: read.0.clone(),
        };
    }
    if counting::is_over_limit(&error) {
        return ArtifactError::Encode {
            name: shown(name),
            why: "the encoder wrote more than the size it was charged for".into(),
        };
    }
    ArtifactError::Io {
        name: shown(name),
        path,
        error,
    }
}

fn write_via_temp(
    path: &Path,
    size: u64,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), ArtifactError> {
    let io = |path: &Path, error| ArtifactError::Io {
        name: String::new(),
        path: path.to_path_buf(),
        error,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    let mut out = counting::Limited::new(BufWriter::new(file), size);
    let written = write(&mut out)
        .and_then(|()| out.flush())
        .and_then(|()| {
            out.into_inner()
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        })
        .map_err(|e| io(&tmp, e));
    let result = written.and_then(|()| fs::rename(&tmp, path).map_err(|e| io(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A name as error messages show it: control and non-ASCII characters escaped, at most 80 characters.
fn shown(name: &str) -> String {
    const MAX: usize = 80;
    let mut escaped = String::new();
    for c in name.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            escaped.push(c);
        } else {
            escaped.extend(c.escape_default());
        }
    }
    if escaped.chars().count() <= MAX {
        escaped
    } else {
        let head: String = escaped.chars().take(MAX).collect();
        format!("{head}... ({} bytes)", name.len())
    }
}

/// Keeps an error message on one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
