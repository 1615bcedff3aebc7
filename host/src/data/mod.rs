//! Datasets an experiment declares: text turned into fixed-length token sequences, activations cached
//! in a safetensors file, or a directory of files a plugin reads whole (a saved SAE).
//!
//! Text and activations are loaded whole into memory up front, so every problem with the file (missing,
//! malformed, too short) is reported before a run starts, and batches are then served in order without
//! I/O. A run reads one [`Dataset`] front to back with [`Dataset::next_batch`]; [`Dataset::reset`] starts
//! it over. A directory is listed at load; its files are read when the plugin asks for them.

mod activations;
mod directory;
pub mod images;
mod rows;
mod safetensors_file;
mod text;

use std::fmt;
use std::path::{Path, PathBuf};

use loupe_kernels::{Device, Tensor};

pub use activations::ActivationDataset;
pub use directory::{DirectoryDataset, FileError, MAX_TEXT_BYTES};
pub use text::TextDataset;

/// How a text dataset is turned into fixed-length token sequences.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// A `.txt` file (the whole file is one document) or a `.jsonl` file (one JSON object per line).
    pub path: PathBuf,
    /// Tokens per sequence, BOS included.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Start every sequence with the BOS token (and separate packed documents with it).
    #[serde(default = "yes")]
    pub bos: bool,
    /// Pack documents back to back (true) or make one sequence per document, truncated (false).
    #[serde(default = "yes")]
    pub pack: bool,
    /// With `pack = false`: pad documents shorter than a sequence at the end with the BOS token (as
    /// TransformerLens pads GPT-2) instead of dropping them. Padding after the text leaves its
    /// activations exactly as without padding (attention is causal); plugins drop the BOS positions.
    #[serde(default)]
    pub pad: bool,
    /// jsonl: the key holding each document's text.
    #[serde(default = "default_field")]
    pub field: String,
    /// Stop after this many sequences (the rest of the file is not tokenized).
    #[serde(default)]
    pub max_sequences: Option<usize>,
}

impl TextSpec {
    /// A spec for `path` with every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TextSpec {
            path: path.into(),
            seq_len: default_seq_len(),
            bos: true,
            pack: true,
            pad: false,
            field: default_field(),
            max_sequences: None,
        }
    }
}

fn default_seq_len() -> usize {
    128
}

fn yes() -> bool {
    true
}

fn default_field() -> String {
    "text".to_string()
}

/// Cached activations: a `.safetensors` file with a 2-D `[rows, d]` tensor, named `activations` unless
/// `tensor` says otherwise.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActivationSpec {
    pub path: PathBuf,
    /// The tensor of the file to read.
    #[serde(default = "default_tensor")]
    pub tensor: String,
}

impl ActivationSpec {
    /// A spec reading the `activations` tensor of `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ActivationSpec {
            path: path.into(),
            tensor: default_tensor(),
        }
    }
}

fn default_tensor() -> String {
    activations::DEFAULT_TENSOR.to_string()
}

/// A directory whose files a plugin reads whole (a saved SAE: `cfg.json`, `sae_weights.safetensors`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    Text,
    Activations,
    Directory,
    Images,
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetKind::Text => "text",
            DatasetKind::Activations => "activations",
            DatasetKind::Directory => "directory",
            DatasetKind::Images => "images",
        })
    }
}

/// What a plugin is told about its dataset before the first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetInfo {
    pub kind: DatasetKind,
    /// Sequences (text), activation rows, or files (directory).
    pub rows: u64,
    /// Tokens per sequence (text), activation width `d`, or 0 (directory).
    pub width: u32,
}

/// Why a dataset could not be loaded or served. Every message is one line that starts with the file
/// (and, for a jsonl line, its line number) and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file as a whole: missing, unreadable, of the wrong format, or too small.
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    /// One line of the file (1-based).
    #[error("{path}:{line}: {why}")]
    Line {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// A setting of the spec that cannot work with this file or model.
    #[error("{path}: {why}")]
    Spec { path: PathBuf, why: String },
    /// A batch request that cannot be served.
    #[error("{path}: {why}")]
    Batch { path: PathBuf, why: String },
    /// The tensor engine refused the batch (boxed: the engine's error is large and rare here).
    #[error("{path}: cannot place a batch on {device}: {source}")]
    Engine {
        path: PathBuf,
        device: Device,
        source: Box<loupe_kernels::Error>,
    },
}

impl DataError {
    fn file(path: &Path, why: impl Into<String>) -> Self {
        DataError::File {
            path: path.to_path_buf(),
            why: one_line(why.into()),
        }
    }

    fn line(path: &Path, line: usize, why: impl Into<String>) -> Self {
        DataError::Line {
            path: path.to_path_buf(),
            line,
            why: one_line(why.into()),
        }
    }

    fn spec(path: &Path, why: impl Into<String>) -> Self {
        DataError::Spec {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }

    /// Reading the file failed; a missing file gets its own hint because it is by far the usual case.
    fn io(path: &Path, e: &std::io::Error) -> Self {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "not found; check the dataset path in the experiment".to_string()
            }
            _ => format!("cannot read: {e}"),
        };
        DataError::file(path, why)
    }
}

/// `names` quoted and comma-separated, the first `shown` of them and a count of the rest.
fn quoted_list(names: &[&str], shown: usize) -> String {
    let mut listed: Vec<String> = names.iter().take(shown).map(|n| format!("`{n}`")).collect();
    if names.len() > shown {
        listed.push(format!("and {} more", names.len() - shown));
    }
    listed.join(", ")
}

/// Messages quoted from other libraries (JSON parser, tokenizer) must not break the one-line rule.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    }
}

/// A dataset being read in batches, in order, by one run.
pub enum Dataset {
    Text(TextDataset),
    Activations(ActivationDataset),
    Directory(DirectoryDataset),
    Images(images::ImageDataset),
}

impl Dataset {
    pub fn info(&self) -> DatasetInfo {
        match self {
            Dataset::Text(d) => d.info(),
            Dataset::Activations(d) => d.info(),
            Dataset::Directory(d) => d.info(),
            Dataset::Images(d) => d.info(),
        }
    }

    /// The next `rows` rows as a tensor on `device`: i32 `[n, seq_len]` token ids for text, f32 `[n, d]`
    /// for activations; n = min(rows, remaining); `Ok(None)` when exhausted. `rows == 0` is an error
    /// (it would never make progress), and so is a directory, which has no rows.
    pub fn next_batch(&mut self, rows: usize, device: Device) -> Result<Option<Tensor>, DataError> {
        match self {
            Dataset::Text(d) => d.next_batch(rows, device),
            Dataset::Activations(d) => d.next_batch(rows, device),
            Dataset::Directory(d) => Err(d.no_batches()),
            Dataset::Images(d) => Err(DataError::Batch {
                path: d.set().path().to_path_buf(),
                why: "an image dataset is read with data.next-images (the SDK's Images), not next-batch".into(),
            }),
        }
    }

    /// Back to the first row; an error for a directory, which has no rows.
    pub fn reset(&mut self) -> Result<(), DataError> {
        match self {
            Dataset::Text(d) => d.reset(),
            Dataset::Activations(d) => d.reset(),
            Dataset::Directory(d) => return Err(d.no_batches()),
            Dataset::Images(d) => d.reset(),
        }
        Ok(())
    }

    /// The file the rows come from, or the directory.
    pub fn path(&self) -> &Path {
        match self {
            Dataset::Text(d) => d.path(),
            Dataset::Activations(d) => d.path(),
            Dataset::Directory(d) => d.path(),
            Dataset::Images(d) => d.set().path(),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use crate::tokenizer::TextTokenizer;

    /// The words of the test vocabulary; word `i` has id `i + 1`, `<|endoftext|>` is 0 and `[UNK]` is 27.
    pub const WORDS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    pub const BOS: u32 = 0;

    /// A word-level tokenizer (whitespace split) over `WORDS`, written into `dir`.
    pub fn tokenizer(dir: &Path) -> TextTokenizer {
        let mut vocab = serde_json::Map::new();
        vocab.insert("<|endoftext|>".into(), 0.into());
        for (i, w) in WORDS.iter().enumerate() {
            vocab.insert((*w).into(), (i + 1).into());
        }
        vocab.insert("[UNK]".into(), (WORDS.len() + 1).into());
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [{
                "id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
        });
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json.to_string()).expect("write tokenizer.json");
        TextTokenizer::load(&path).expect("load test tokenizer")
    }

    pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{BOS, tokenizer, write};
    use super::*;
    use loupe_kernels::DType;

    fn text_dataset(dir: &Path, seq_len: usize) -> Dataset {
        let tok = tokenizer(dir);
        // 10 tokens, no BOS: five sequences of 2.
        let path = write(dir, "d.txt", "a b c d e f g h i j");
        let spec = TextSpec {
            seq_len,
            bos: false,
            ..TextSpec::new(path)
        };
        Dataset::Text(TextDataset::load(&spec, &tok, Some(BOS)).unwrap())
    }

    #[test]
    fn spec_defaults_and_unknown_fields() {
        let spec: TextSpec = serde_json::from_str(r#"{"path": "c.jsonl"}"#).unwrap();
        assert_eq!(spec, TextSpec::new("c.jsonl"));
        assert_eq!(spec.seq_len, 128);
        assert!(spec.bos && spec.pack);
        assert_eq!(spec.field, "text");
        assert_eq!(spec.max_sequences, None);
        let err = serde_json::from_str::<TextSpec>(r#"{"path": "c.txt", "seqlen": 4}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("seqlen"), "{err}");
        assert!(serde_json::from_str::<ActivationSpec>(r#"{"path": "a", "x": 1}"#).is_err());
    }

    #[test]
    fn text_batches_remainder_exhaustion_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = text_dataset(dir.path(), 2);
        assert_eq!(
            ds.info(),
            DatasetInfo {
                kind: DatasetKind::Text,
                rows: 5,
                width: 2
            }
        );
        let b = ds.next_batch(2, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.dims(), &[2, 2]);
        assert_eq!(b.dtype(), DType::I32);
        assert_eq!(b.to_vec_i32().unwrap(), vec![1, 2, 3, 4]);
        let b = ds.next_batch(2, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.to_vec_i32().unwrap(), vec![5, 6, 7, 8]);
        let b = ds.next_batch(2, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.dims(), &[1, 2]);
        assert_eq!(b.to_vec_i32().unwrap(), vec![9, 10]);
        assert!(ds.next_batch(2, Device::Cpu).unwrap().is_none());
        assert!(ds.next_batch(2, Device::Cpu).unwrap().is_none());
        ds.reset().unwrap();
        let b = ds.next_batch(100, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.dims(), &[5, 2]);
        assert_eq!(b.to_vec_i32().unwrap(), (1..=10).collect::<Vec<i32>>());
        assert!(ds.next_batch(1, Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn zero_rows_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = text_dataset(dir.path(), 2);
        let err = ds.next_batch(0, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("d.txt") && err.contains("0 rows"), "{err}");
        assert!(!err.contains('\n'));
        // The failed request did not move the cursor.
        let b = ds.next_batch(1, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.to_vec_i32().unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_batch_the_device_refuses_loses_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = text_dataset(dir.path(), 2);
        // Builds without a CUDA backend refuse the device; builds with one may serve the batch.
        if let Err(err) = ds.next_batch(2, Device::Cuda(0)) {
            let msg = err.to_string();
            assert!(
                msg.contains("d.txt: cannot place a batch on cuda:0"),
                "{msg}"
            );
            let b = ds.next_batch(1, Device::Cpu).unwrap().unwrap();
            assert_eq!(b.to_vec_i32().unwrap(), vec![1, 2]);
        }
    }

    #[test]
    fn activation_batches() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let path = activations::tests::write_f32(dir.path(), "acts.safetensors", &values, &[5, 3]);
        let mut ds =
            Dataset::Activations(ActivationDataset::load(&ActivationSpec::new(path)).unwrap());
        assert_eq!(
            ds.info(),
            DatasetInfo {
                kind: DatasetKind::Activations,
                rows: 5,
                width: 3
            }
        );
        let b = ds.next_batch(3, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.dims(), &[3, 3]);
        assert_eq!(b.dtype(), DType::F32);
        assert_eq!(b.to_vec_f32().unwrap(), values[..9]);
        let b = ds.next_batch(3, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.dims(), &[2, 3]);
        assert_eq!(b.to_vec_f32().unwrap(), values[9..]);
        assert!(ds.next_batch(3, Device::Cpu).unwrap().is_none());
        let err = ds.next_batch(0, Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("acts.safetensors"), "{err}");
        ds.reset().unwrap();
        let b = ds.next_batch(5, Device::Cpu).unwrap().unwrap();
        assert_eq!(b.to_vec_f32().unwrap(), values);
    }

    #[test]
    fn one_line_joins_foreign_messages() {
        assert_eq!(one_line("a\n  b\r\nc".into()), "a b c");
        assert_eq!(one_line("plain".into()), "plain");
    }
}
