//! Text files turned into fixed-length token sequences, all held as one flat `rows × seq_len` buffer.
//!
//! Sequences are cut once, at load, so every batch of a run (and every rerun after a reset) sees exactly
//! the same token ids, and a file too short for even one sequence fails before the run starts.

use std::path::Path;

use loupe_kernels::{Device, Tensor};
use serde_json::Value;

use super::rows::RowBatches;
use super::{DataError, DatasetInfo, DatasetKind, TextSpec};
use crate::tokenizer::TextTokenizer;

/// The sequences of a text dataset, and where the current run is in them.
///
/// With `pack = true` all documents are tokenized into one stream and cut into consecutive sequences; the
/// final partial sequence is dropped. With `bos = true` each document is preceded by the BOS token in
/// that stream (BOS separates documents) and every sequence starts with BOS followed by the next
/// `seq_len - 1` stream tokens; a BOS that would follow the leading one is skipped, so no sequence starts
/// BOS BOS.
///
/// With `pack = false` each document becomes one sequence: BOS (if `bos`) and the document's first
/// tokens, truncated to `seq_len`. Documents shorter than that are dropped, not padded, so every row is
/// real text; [`TextDataset::dropped_documents`] says how many.
///
/// A document the tokenizer already starts with BOS (a post-processor that adds it, or text that begins
/// with the BOS string) does not get a second one. Documents with no tokens contribute nothing.
#[derive(Debug)]
pub struct TextDataset {
    /// `rows × seq_len` token ids.
    data: RowBatches<u32>,
    dropped: usize,
}

/// How the file is split into documents, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The whole file is one document.
    Txt,
    /// One JSON object per non-empty line; the document is one of its string fields.
    Jsonl,
}

impl Format {
    fn of(path: &Path) -> Result<Self, DataError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("txt") => Ok(Format::Txt),
            Some("jsonl") => Ok(Format::Jsonl),
            other => {
                let found = match other {
                    Some(e) => format!("extension `.{e}`"),
                    None => "no extension".to_string(),
                };
                Err(DataError::spec(
                    path,
                    format!(
                        "unknown text format ({found}); use a .txt file (the whole file is one \
                         document) or a .jsonl file (one JSON object per line)"
                    ),
                ))
            }
        }
    }
}

impl TextDataset {
    /// Reads and tokenizes `spec.path`. `bos`: the BOS token id, `None` if the tokenizer has none (then
    /// `spec.bos = true` is an error).
    pub fn load(
        spec: &TextSpec,
        tokenizer: &TextTokenizer,
        bos: Option<u32>,
    ) -> Result<Self, DataError> {
        let path = spec.path.as_path();
        let format = Format::of(path)?;
        let (bos, pad) = check_spec(spec, tokenizer, bos)?;
        let text = read_text(path)?;

        let limit = spec.max_sequences.unwrap_or(usize::MAX);
        let mut cutter = Cutter::new(spec.seq_len, bos, spec.pack, limit);
        cutter.pad = pad;
        for_each_document(path, format, &spec.field, &text, |line, document| {
            let at = |why: String| match line {
                Some(line) => DataError::line(path, line, why),
                None => DataError::file(path, why),
            };
            let ids = tokenizer
                .encode(document)
                .map_err(|e| at(format!("cannot tokenize: {e}")))?;
            // Batches carry ids as i32; no real vocabulary comes near the limit, but never wrap silently.
            if let Some(id) = ids.iter().find(|&&id| i32::try_from(id).is_err()) {
                return Err(at(format!(
                    "the tokenizer gave id {id}, which does not fit an i32 token id"
                )));
            }
            cutter.push_document(&ids);
            Ok(!cutter.full())
        })?;

        if cutter.rows == 0 {
            return Err(cutter.too_short(path));
        }
        Ok(TextDataset {
            data: RowBatches::new(
                spec.path.clone(),
                DatasetKind::Text,
                cutter.out,
                cutter.rows,
                spec.seq_len,
            ),
            dropped: cutter.dropped,
        })
    }

    pub fn info(&self) -> DatasetInfo {
        self.data.info()
    }

    /// The token ids of sequence `i`, `None` past the end.
    pub fn sequence(&self, i: usize) -> Option<&[u32]> {
        self.data.row(i)
    }

    /// With `pack = false`: documents dropped because they were shorter than one sequence (counting only
    /// documents read before `max_sequences` was reached). Always 0 when packing.
    pub fn dropped_documents(&self) -> usize {
        self.dropped
    }

    pub fn path(&self) -> &Path {
        self.data.path()
    }

    /// The next `rows` sequences as i32 `[n, seq_len]` on `device`; see [`super::Dataset::next_batch`].
    pub fn next_batch(&mut self, rows: usize, device: Device) -> Result<Option<Tensor>, DataError> {
        self.data.next_batch(rows, device, |tokens, shape, device| {
            // Every id was checked to fit an i32 at load.
            let ids = tokens.iter().map(|&id| id as i32).collect();
            Tensor::from_vec_i32(ids, shape, device)
        })
    }

    /// Back to the first sequence.
    pub fn reset(&mut self) {
        self.data.reset();
    }
}

/// Rejects settings that cannot produce a sequence, before the file is read; gives the ids to start
/// sequences with (BOS) and to pad them with.
fn check_spec(
    spec: &TextSpec,
    tokenizer: &TextTokenizer,
    bos: Option<u32>,
) -> Result<(Option<u32>, Option<u32>), DataError> {
    let path = spec.path.as_path();
    let min = if spec.bos { 2 } else { 1 };
    if spec.seq_len < min {
        let why = if spec.bos {
            format!(
                "seq_len = {} leaves no room for text after the BOS token; set seq_len >= 2 (or bos = false)",
                spec.seq_len
            )
        } else {
            "seq_len = 0; set seq_len >= 1".to_string()
        };
        return Err(DataError::spec(path, why));
    }
    if u32::try_from(spec.seq_len).is_err() {
        return Err(DataError::spec(
            path,
            format!(
                "seq_len = {} is too large; set seq_len <= {}",
                spec.seq_len,
                u32::MAX
            ),
        ));
    }
    if spec.max_sequences == Some(0) {
        return Err(DataError::spec(
            path,
            "max_sequences = 0 selects no sequences; remove it or set it to at least 1",
        ));
    }
    if spec.pad && spec.pack {
        return Err(DataError::spec(
            path,
            "pad = true applies to pack = false (packed sequences are never short); remove pad or set pack = false",
        ));
    }
    if !spec.bos && !spec.pad {
        return Ok((None, None));
    }
    let Some(id) = bos else {
        return Err(DataError::spec(
            path,
            if spec.bos {
                "the model's tokenizer has no BOS token; set bos = false"
            } else {
                "the model's tokenizer has no BOS token to pad with; set pad = false"
            },
        ));
    };
    let vocab = tokenizer.vocab_size();
    if id as usize >= vocab || i32::try_from(id).is_err() {
        return Err(DataError::spec(
            path,
            format!(
                "BOS token id {id} is outside the tokenizer's vocabulary of {vocab}; set bos = false or use the model's tokenizer"
            ),
        ));
    }
    Ok((spec.bos.then_some(id), spec.pad.then_some(id)))
}

/// The file as UTF-8 text without a byte-order mark; an empty (or all-whitespace) file is an error.
fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, &e))?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        DataError::line(path, line, "not valid UTF-8; save the file as UTF-8")
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if text.trim().is_empty() {
        return Err(DataError::file(
            path,
            "is empty; a text dataset needs at least one document",
        ));
    }
    Ok(text)
}

/// Calls `f(line, document)` for each document in order (`line` is 1-based, jsonl only) until it returns
/// `Ok(false)` or an error.
fn for_each_document(
    path: &Path,
    format: Format,
    field: &str,
    text: &str,
    mut f: impl FnMut(Option<usize>, &str) -> Result<bool, DataError>,
) -> Result<(), DataError> {
    match format {
        Format::Txt => {
            f(None, text)?;
        }
        Format::Jsonl => {
            for (i, line) in text.split('\n').enumerate() {
                let number = i + 1;
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(line).map_err(|e| {
                    // serde's own position counts lines within this one line; only the column helps.
                    let full = e.to_string();
                    let at = format!(" at line {} column {}", e.line(), e.column());
                    let why = full.strip_suffix(&at).unwrap_or(&full);
                    DataError::line(
                        path,
                        number,
                        format!(
                            "not valid JSON at column {} ({why}); each line must be one JSON object",
                            e.column()
                        ),
                    )
                })?;
                let document = document_text(&value, field)
                    .map_err(|why| DataError::line(path, number, why))?;
                if !f(Some(number), document)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The text under `field` of one jsonl line, or why there is none.
fn document_text<'a>(value: &'a Value, field: &str) -> Result<&'a str, String> {
    let fix = "set field = \"...\" to the key holding the text";
    let Value::Object(object) = value else {
        return Err(format!(
            "expected a JSON object, found {}; each line must be one object like {{\"{field}\": \"...\"}}",
            kind(value)
        ));
    };
    match object.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "no string field \"{field}\" (it is {}); {fix}",
            kind(other)
        )),
        None => {
            const SHOWN: usize = 8;
            let mut keys: Vec<String> = object
                .keys()
                .take(SHOWN)
                .map(|k| format!("\"{k}\""))
                .collect();
            if object.len() > SHOWN {
                keys.push(format!("and {} more", object.len() - SHOWN));
            }
            let has = if keys.is_empty() {
                "the object is empty".to_string()
            } else {
                format!("the object has {}", keys.join(", "))
            };
            Err(format!("no string field \"{field}\" ({has}); {fix}"))
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Cuts documents into sequences as they arrive, so `max_sequences` stops tokenization early and the
/// token stream is never held twice.
struct Cutter {
    seq_len: usize,
    bos: Option<u32>,
    pack: bool,
    /// With `pack = false`: the id short documents are padded with (`None`: they are dropped).
    pad: Option<u32>,
    limit: usize,
    out: Vec<u32>,
    /// The sequence being filled (packing only).
    current: Vec<u32>,
    rows: usize,
    dropped: usize,
    documents: usize,
    /// Tokens the tokenizer gave, over all documents read.
    tokens_seen: u64,
    longest: usize,
}

impl Cutter {
    fn new(seq_len: usize, bos: Option<u32>, pack: bool, limit: usize) -> Self {
        Cutter {
            seq_len,
            bos,
            pack,
            pad: None,
            limit,
            out: Vec::new(),
            current: Vec::with_capacity(if pack { seq_len } else { 0 }),
            rows: 0,
            dropped: 0,
            documents: 0,
            tokens_seen: 0,
            longest: 0,
        }
    }

    fn full(&self) -> bool {
        self.rows >= self.limit
    }

    fn push_document(&mut self, ids: &[u32]) {
        if self.full() {
            return;
        }
        self.documents += 1;
        self.tokens_seen += ids.len() as u64;
        // The BOS this document is to start with may already be there.
        let ids = match (self.bos, ids.first()) {
            (Some(bos), Some(&first)) if first == bos => &ids[1..],
            _ => ids,
        };
        self.longest = self.longest.max(ids.len());
        if self.pack {
            if ids.is_empty() {
                return;
            }
            if let Some(bos) = self.bos {
                self.push_packed(bos);
            }
            for &id in ids {
                if self.full() {
                    return;
                }
                self.push_packed(id);
            }
        } else {
            let text_len = self.seq_len - usize::from(self.bos.is_some());
            if ids.len() < text_len && (self.pad.is_none() || ids.is_empty()) {
                self.dropped += 1;
                return;
            }
            let kept = ids.len().min(text_len);
            self.out.extend(self.bos);
            self.out.extend_from_slice(&ids[..kept]);
            if let Some(pad) = self.pad {
                self.out.extend(std::iter::repeat_n(pad, text_len - kept));
            }
            self.rows += 1;
        }
    }

    /// Appends one stream token to the sequence being filled, starting it with BOS when `bos` is set.
    fn push_packed(&mut self, id: u32) {
        if let Some(bos) = self.bos {
            if self.current.is_empty() {
                self.current.push(bos);
            }
            if id == bos && self.current.len() == 1 {
                return;
            }
        }
        self.current.push(id);
        if self.current.len() == self.seq_len {
            self.out.extend_from_slice(&self.current);
            self.current.clear();
            self.rows += 1;
        }
    }

    /// Why no sequence came out of the file.
    fn too_short(&self, path: &Path) -> DataError {
        let with_bos = match self.bos {
            Some(_) => format!(" (BOS + {} tokens)", self.seq_len - 1),
            None => String::new(),
        };
        let why = if self.pack {
            format!(
                "has {} tokens, fewer than one sequence of {}{with_bos}; lower seq_len or add text",
                self.tokens_seen, self.seq_len
            )
        } else if self.documents == 1 {
            format!(
                "its only document has {} tokens, fewer than one sequence of {}{with_bos}, and with \
                 pack = false shorter documents are dropped; lower seq_len or set pack = true",
                self.longest, self.seq_len
            )
        } else {
            format!(
                "none of its {} documents fills a sequence of {}{with_bos}; the longest has {} \
                 tokens, and with pack = false shorter documents are dropped; lower seq_len or set \
                 pack = true",
                self.documents, self.seq_len, self.longest
            )
        };
        DataError::file(path, why)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{BOS, tokenizer, write};
    use super::*;
    use std::path::PathBuf;

    fn spec(path: PathBuf, seq_len: usize, bos: bool, pack: bool) -> TextSpec {
        TextSpec {
            seq_len,
            bos,
            pack,
            ..TextSpec::new(path)
        }
    }

    fn rows(ds: &TextDataset) -> Vec<Vec<u32>> {
        (0..ds.info().rows as usize)
            .map(|i| ds.sequence(i).unwrap().to_vec())
            .collect()
    }

    fn load(dir: &Path, spec: &TextSpec) -> Result<TextDataset, DataError> {
        TextDataset::load(spec, &tokenizer(dir), Some(BOS))
    }

    fn error(dir: &Path, spec: &TextSpec) -> String {
        let msg = load(dir, spec).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "not one line: {msg}");
        msg
    }

    const THREE_DOCS: &str =
        "{\"text\": \"a b c\"}\n{\"text\": \"d e f g h\"}\n{\"text\": \"i j\"}\n";

    #[test]
    fn packs_with_bos_separating_documents() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.jsonl", THREE_DOCS);
        // Stream: 0 1 2 3 | 0 4 5 6 7 8 | 0 9 10. The BOS before doc 2 falls on a sequence start and is
        // not repeated; the one before doc 3 ends a sequence; [0 9 10] is partial and dropped.
        let ds = load(dir.path(), &spec(path, 4, true, true)).unwrap();
        assert_eq!(
            rows(&ds),
            vec![vec![0, 1, 2, 3], vec![0, 4, 5, 6], vec![0, 7, 8, 0]]
        );
        assert_eq!(
            ds.info(),
            DatasetInfo {
                kind: DatasetKind::Text,
                rows: 3,
                width: 4
            }
        );
        assert_eq!(ds.dropped_documents(), 0);
        assert_eq!(ds.sequence(3), None);
    }

    #[test]
    fn packs_without_bos_as_plain_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.jsonl", THREE_DOCS);
        let ds = load(dir.path(), &spec(path.clone(), 4, false, true)).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
        let ds = load(dir.path(), &spec(path, 5, false, true)).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10]]);
    }

    #[test]
    fn no_sequence_starts_bos_bos() {
        let dir = tempfile::tempdir().unwrap();
        // The second document starts with the BOS string itself: it must not get a second BOS either.
        let docs = "{\"text\": \"a b c\"}\n{\"text\": \"<|endoftext|> d e f\"}\n{\"text\": \"g\"}\n\
                    {\"text\": \"h i j k l m n o p\"}\n{\"text\": \"q\"}\n{\"text\": \"r s t\"}\n";
        let path = write(dir.path(), "c.jsonl", docs);
        let ds = load(dir.path(), &spec(path.clone(), 4, true, true)).unwrap();
        assert_eq!(rows(&ds)[..2], [vec![0, 1, 2, 3], vec![0, 4, 5, 6]]);
        for seq_len in 2..9 {
            let ds = load(dir.path(), &spec(path.clone(), seq_len, true, true)).unwrap();
            for row in rows(&ds) {
                assert_eq!(row[0], BOS, "seq_len {seq_len}: {row:?}");
                assert_ne!(row[1], BOS, "seq_len {seq_len}: {row:?}");
                assert!(
                    row.windows(2).all(|w| w != [BOS, BOS]),
                    "seq_len {seq_len}: {row:?}"
                );
            }
        }
    }

    #[test]
    fn txt_is_one_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.txt", "a b\nc d\n\ne f g");
        let ds = load(dir.path(), &spec(path.clone(), 3, true, true)).unwrap();
        assert_eq!(rows(&ds), vec![vec![0, 1, 2], vec![0, 3, 4], vec![0, 5, 6]]);
        let ds = load(dir.path(), &spec(path, 3, true, false)).unwrap();
        assert_eq!(rows(&ds), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn one_document_per_sequence_truncates_and_drops_short_ones() {
        let dir = tempfile::tempdir().unwrap();
        let docs = "{\"text\": \"a b c d e\"}\n{\"text\": \"f g\"}\n{\"text\": \"h i j\"}\n{\"text\": \"\"}\n";
        let path = write(dir.path(), "c.jsonl", docs);
        let ds = load(dir.path(), &spec(path.clone(), 4, true, false)).unwrap();
        assert_eq!(rows(&ds), vec![vec![0, 1, 2, 3], vec![0, 8, 9, 10]]);
        assert_eq!(ds.dropped_documents(), 2);
        let ds = load(dir.path(), &spec(path.clone(), 3, false, false)).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2, 3], vec![8, 9, 10]]);
        assert_eq!(ds.dropped_documents(), 2);
        let ds = load(dir.path(), &spec(path.clone(), 2, false, false)).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2], vec![6, 7], vec![8, 9]]);
        assert_eq!(ds.dropped_documents(), 1);

        let err = error(dir.path(), &spec(path, 7, true, false));
        assert!(err.contains("c.jsonl: none of its 4 documents"), "{err}");
        assert!(
            err.contains("longest has 5 tokens") && err.contains("pack = true"),
            "{err}"
        );
    }

    #[test]
    fn pad_fills_short_documents_with_bos_after_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let docs = "{\"text\": \"a b c d e\"}\n{\"text\": \"f g\"}\n{\"text\": \"\"}\n";
        let path = write(dir.path(), "c.jsonl", docs);
        let padded = |bos| TextSpec {
            pad: true,
            ..spec(path.clone(), 4, bos, false)
        };
        let ds = load(dir.path(), &padded(true)).unwrap();
        assert_eq!(rows(&ds), vec![vec![0, 1, 2, 3], vec![0, 6, 7, 0]]);
        // An empty document has nothing to pad.
        assert_eq!(ds.dropped_documents(), 1);
        let ds = load(dir.path(), &padded(false)).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2, 3, 4], vec![6, 7, 0, 0]]);

        let err = error(
            dir.path(),
            &TextSpec {
                pad: true,
                ..spec(path.clone(), 4, true, true)
            },
        );
        assert!(err.contains("pad = true applies to pack = false"), "{err}");
        let err = TextDataset::load(&padded(false), &tokenizer(dir.path()), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no BOS token to pad with; set pad = false"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_field_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let docs = "{\"id\": 1, \"body\": \"a b\"}\n\n{\"body\": \"c d\"}\n";
        let path = write(dir.path(), "c.jsonl", docs);
        let ds = load(
            dir.path(),
            &TextSpec {
                field: "body".into(),
                ..spec(path.clone(), 2, false, true)
            },
        )
        .unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2], vec![3, 4]]);

        // The default field is missing: the error names the line, the key and the keys present.
        let err = error(dir.path(), &spec(path, 2, false, true));
        assert!(
            err.contains("c.jsonl:1: no string field \"text\"")
                && err.contains("\"id\"")
                && err.contains("\"body\"")
                && err.contains("set field = \"...\" to the key holding the text"),
            "{err}"
        );

        let path = write(
            dir.path(),
            "m.jsonl",
            "{\"text\": \"a\"}\n\n{\"text\": 5}\n",
        );
        let err = error(dir.path(), &spec(path, 2, false, true));
        assert!(
            err.contains("m.jsonl:3: no string field \"text\" (it is a number)"),
            "{err}"
        );

        let path = write(
            dir.path(),
            "b.jsonl",
            "{\"text\": \"a\"}\n{\"text\": \"b\"\n",
        );
        let err = error(dir.path(), &spec(path, 2, false, true));
        assert!(err.contains("b.jsonl:2: not valid JSON at column"), "{err}");
        assert!(!err.contains("line 1"), "{err}");

        let path = write(dir.path(), "r.jsonl", "\n\n[\"a b\"]\n");
        let err = error(dir.path(), &spec(path, 2, false, true));
        assert!(
            err.contains("r.jsonl:3: expected a JSON object, found an array"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_tolerates_crlf_and_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "w.jsonl",
            "\u{feff}{\"text\": \"a b\"}\r\n\r\n{\"text\": \"c d\"}\r\n",
        );
        let ds = load(dir.path(), &spec(path, 2, false, true)).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2], vec![3, 4]]);
    }

    #[test]
    fn max_sequences_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.txt", "a b c d e f g h i j");
        let capped = |s: TextSpec| TextSpec {
            max_sequences: Some(3),
            ..s
        };
        let ds = load(dir.path(), &capped(spec(path.clone(), 2, false, true))).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2], vec![3, 4], vec![5, 6]]);
        let ds = load(dir.path(), &capped(spec(path, 2, true, true))).unwrap();
        assert_eq!(rows(&ds), vec![vec![0, 1], vec![0, 2], vec![0, 3]]);

        let docs = "{\"text\": \"a b\"}\n{\"text\": \"c\"}\n{\"text\": \"d e\"}\n{\"text\": \"f g\"}\n{\"text\": oops}\n";
        let path = write(dir.path(), "c.jsonl", docs);
        let spec = TextSpec {
            max_sequences: Some(2),
            ..spec(path, 2, false, false)
        };
        // The malformed last line is never read: loading stops once two sequences exist.
        let ds = load(dir.path(), &spec).unwrap();
        assert_eq!(rows(&ds), vec![vec![1, 2], vec![4, 5]]);
        assert_eq!(ds.dropped_documents(), 1);
    }

    #[test]
    fn too_little_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "s.txt", "a b c");
        let err = error(dir.path(), &TextSpec::new(path.clone()));
        assert!(
            err.contains("s.txt: has 3 tokens, fewer than one sequence of 128")
                && err.contains("lower seq_len or add text"),
            "{err}"
        );
        let err = error(dir.path(), &spec(path, 4, false, true));
        assert!(
            err.contains("has 3 tokens, fewer than one sequence of 4;"),
            "{err}"
        );
    }

    #[test]
    fn file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = error(dir.path(), &TextSpec::new(dir.path().join("nope.txt")));
        assert!(err.contains("nope.txt: not found"), "{err}");

        let path = write(dir.path(), "c.csv", "a b c");
        let err = error(dir.path(), &TextSpec::new(path));
        assert!(
            err.contains("c.csv: unknown text format (extension `.csv`)")
                && err.contains(".txt")
                && err.contains(".jsonl"),
            "{err}"
        );

        for (name, contents) in [("e.txt", ""), ("w.txt", " \n\t\n"), ("e.jsonl", "\n\n")] {
            let path = write(dir.path(), name, contents);
            let err = error(dir.path(), &TextSpec::new(path));
            assert!(err.contains(&format!("{name}: is empty")), "{err}");
        }

        let path = dir.path().join("u.txt");
        std::fs::write(&path, b"a b\nc \xff d").unwrap();
        let err = error(dir.path(), &TextSpec::new(path));
        assert!(err.contains("u.txt:2: not valid UTF-8"), "{err}");
    }

    #[test]
    fn spec_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.txt", "a b c d e f g h i j");
        let err = error(dir.path(), &spec(path.clone(), 1, true, true));
        assert!(
            err.contains("t.txt: seq_len = 1") && err.contains("bos = false"),
            "{err}"
        );
        let err = error(dir.path(), &spec(path.clone(), 0, false, true));
        assert!(err.contains("seq_len = 0"), "{err}");
        let ds = load(dir.path(), &spec(path.clone(), 1, false, true)).unwrap();
        assert_eq!(ds.info().rows, 10);

        let err = error(
            dir.path(),
            &TextSpec {
                max_sequences: Some(0),
                ..TextSpec::new(path.clone())
            },
        );
        assert!(err.contains("max_sequences = 0"), "{err}");

        let tok = tokenizer(dir.path());
        let err = TextDataset::load(&spec(path.clone(), 4, true, true), &tok, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: the model's tokenizer has no BOS token; set bos = false",
                path.display()
            )
        );
        let ds = TextDataset::load(&spec(path.clone(), 4, false, true), &tok, None).unwrap();
        assert_eq!(ds.info().rows, 2);

        let err = TextDataset::load(&spec(path, 4, true, true), &tok, Some(1000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BOS token id 1000 is outside"), "{err}");
    }
}
