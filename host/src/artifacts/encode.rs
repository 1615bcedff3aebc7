//! Turning what a plugin hands over into the bytes of a file. JSON, CSV and safetensors are encoded
//! straight into a writer — once into a counter to learn the size, once into the file — so that a
//! request is never expanded in memory; a PNG is small enough (its sides are bounded) to be encoded
//! in memory.

use std::io::{self, Write};

use loupe_kernels::{DType, Tensor};
use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use super::{ArtifactError, MAX_IMAGE_SIDE, one_line, shown};

/// Bytes gathered before they go to the writer: the encoders below write a byte or a few at a time.
const CHUNK: usize = 64 * 1024;

/// Collects small writes into [`CHUNK`]-sized ones.
struct Chunked<'w> {
    out: &'w mut dyn Write,
    buf: Vec<u8>,
}

impl<'w> Chunked<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        Chunked {
            out,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > CHUNK {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        if bytes.len() > CHUNK {
            return self.out.write_all(bytes);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Checks that `json` is exactly one JSON document, without building it in memory.
pub(super) fn check_json(name: &str, json: &str) -> Result<(), ArtifactError> {
    serde_json::from_str::<serde::de::IgnoredAny>(json)
        .map(|_| ())
        .map_err(|e| ArtifactError::InvalidJson {
            name: shown(name),
            error: e.to_string(),
        })
}

/// Writes `json` (checked by [`check_json`]) pretty-printed as serde_json prints it — two-space
/// indents, `": "` after keys, empty containers as `{}` and `[]` — keeping its keys, numbers and
/// escapes as the plugin wrote them, and a final newline.
pub(super) fn pretty_json(json: &str, out: &mut dyn Write) -> io::Result<()> {
    let b = json.as_bytes();
    let mut w = Chunked::new(out);
    let mut depth = 0usize;
    let newline = |w: &mut Chunked, depth: usize| -> io::Result<()> {
        w.put(b"\n")?;
        for _ in 0..depth {
            w.put(b"  ")?;
        }
        Ok(())
    };
    let next_token = |from: usize| {
        (from..b.len())
            .find(|&j| !matches!(b[j], b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(b.len())
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                w.put(&b[i..end])?;
                i = end;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let next = next_token(i + 1);
                if b.get(next) == Some(&close) {
                    w.put(&[c, close])?;
                    i = next + 1;
                } else {
                    depth += 1;
                    w.put(&[c])?;
                    newline(&mut w, depth)?;
                    i += 1;
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut w, depth)?;
                w.put(&[c])?;
                i += 1;
            }
            b',' => {
                w.put(b",")?;
                newline(&mut w, depth)?;
                i += 1;
            }
            b':' => {
                w.put(b": ")?;
                i += 1;
            }
            _ => {
                // A number or a literal: copied up to the next structural character or space.
                let end = (i..b.len())
                    .find(|&j| {
                        matches!(
                            b[j],
                            b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\n' | b'\r'
                        )
                    })
                    .unwrap_or(b.len());
                w.put(&b[i..end.max(i + 1)])?;
                i = end.max(i + 1);
            }
        }
    }
    w.put(b"\n")?;
    w.finish()
}

/// Checks a CSV table's shape: a header with columns, every row as wide as it.
pub(super) fn check_csv(
    name: &str,
    header: &[String],
    rows: &[Vec<String>],
) -> Result<(), ArtifactError> {
    if header.is_empty() {
        return Err(ArtifactError::CsvEmptyHeader { name: shown(name) });
    }
    if let Some((row, fields)) = rows
        .iter()
        .enumerate()
        .find(|(_, fields)| fields.len() != header.len())
    {
        return Err(ArtifactError::CsvRowLength {
            name: shown(name),
            row,
            got: fields.len(),
            expected: header.len(),
        });
    }
    Ok(())
}

/// RFC 4180: records end in CRLF; a field containing `,`, `"`, CR or LF is quoted with its quotes
/// doubled. The table must have passed [`check_csv`].
pub(super) fn csv(header: &[String], rows: &[Vec<String>], out: &mut dyn Write) -> io::Result<()> {
    let mut w = Chunked::new(out);
    for record in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        if let [only] = record
            && only.is_empty()
        {
            // A record of one empty field would otherwise be an empty line, which readers skip.
            w.put(b"\"\"")?;
        } else {
            for (i, field) in record.iter().enumerate() {
                if i > 0 {
                    w.put(b",")?;
                }
                csv_field(&mut w, field)?;
            }
        }
        w.put(b"\r\n")?;
    }
    w.finish()
}

fn csv_field(w: &mut Chunked, field: &str) -> io::Result<()> {
    if !field.contains([',', '"', '\r', '\n']) {
        return w.put(field.as_bytes());
    }
    w.put(b"\"")?;
    for (i, part) in field.split('"').enumerate() {
        if i > 0 {
            w.put(b"\"\"")?;
        }
        w.put(part.as_bytes())?;
    }
    w.put(b"\"")
}

/// An f32 `[h, w]` or `[h, w, 3]` tensor as an 8-bit grayscale or RGB PNG.
pub(super) fn png(name: &str, image: &Tensor) -> Result<Vec<u8>, ArtifactError> {
    use image::{ExtendedColorType, ImageEncoder, codecs::png::PngEncoder};

    let dims = image.dims();
    let color = match dims {
        [_, _] => Some(ExtendedColorType::L8),
        [_, _, 3] => Some(ExtendedColorType::Rgb8),
        _ => None,
    };
    let side_ok = |d: usize| (1..=MAX_IMAGE_SIDE).contains(&d);
    let (Some(color), DType::F32, true) = (
        color,
        image.dtype(),
        dims.len() >= 2 && side_ok(dims[0]) && side_ok(dims[1]),
    ) else {
        return Err(ArtifactError::BadImage {
            name: shown(name),
            dtype: image.dtype().to_string(),
            shape: dims.to_vec(),
        });
    };
    let (height, width) = (dims[0] as u32, dims[1] as u32);
    let values = image.to_vec_f32().map_err(|e| ArtifactError::TensorRead {
        name: shown(name),
        error: one_line(&e.to_string()),
    })?;
    let pixels: Vec<u8> = values.into_iter().map(to_u8).collect();
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(&pixels, width, height, color)
        .map_err(|e| ArtifactError::Encode {
            name: shown(name),
            why: one_line(&e.to_string()),
        })?;
    Ok(bytes)
}

/// [0, 1] to 0..=255, rounding; out-of-range values clamp and NaN becomes 0.
fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// How a safetensors file of some tensors is laid out: its header (length-prefixed JSON, padded to a
/// multiple of 8 as the safetensors crate pads it) and the order the tensors' data follows in.
pub(super) struct TensorsLayout {
    header: Vec<u8>,
    /// Indices into the tensors, in data order.
    order: Vec<usize>,
    data_bytes: u64,
}

impl TensorsLayout {
    /// The file's exact size.
    pub(super) fn size(&self) -> u64 {
        8 + self.header.len() as u64 + self.data_bytes
    }
}

/// Checks the tensor names and lays the file out as
/// [`write_safetensors`](crate::tensor_file::write_safetensors) would: 8 bytes of header length, the
/// JSON header padded to a multiple of 8, then the data.
pub(super) fn tensors_layout(
    name: &str,
    tensors: &[(String, Tensor)],
) -> Result<TensorsLayout, ArtifactError> {
    let bad = |why: String| ArtifactError::BadTensors {
        name: shown(name),
        why,
    };
    let mut seen = std::collections::HashSet::new();
    for (index, (tensor, _)) in tensors.iter().enumerate() {
        if tensor.is_empty() {
            return Err(bad(format!(
                "tensor {index} has an empty name; give every tensor a name"
            )));
        }
        if tensor == "__metadata__" {
            return Err(bad(
                "the tensor name `__metadata__` is reserved by the safetensors format; rename it"
                    .into(),
            ));
        }
        if !seen.insert(tensor.as_str()) {
            return Err(bad(format!(
                "the tensor name `{}` appears more than once; give every tensor a unique name",
                shown(tensor)
            )));
        }
    }
    // The same order safetensors lays the data out in: by dtype, widest alignment first, then by name.
    let dtype = |t: &Tensor| match t.dtype() {
        DType::F32 => Dtype::F32,
        DType::I32 => Dtype::I32,
    };
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&l, &r| {
        dtype(&tensors[r].1)
            .cmp(&dtype(&tensors[l].1))
            .then(tensors[l].0.cmp(&tensors[r].0))
    });
    let mut offset = 0usize;
    let mut header = Vec::with_capacity(order.len());
    for &i in &order {
        let (n, t) = &tensors[i];
        let len = t.size_in_bytes();
        let end = offset
            .checked_add(len)
            .ok_or_else(|| bad("the tensors are too large together for one file".into()))?;
        header.push((
            n.clone(),
            TensorInfo {
                dtype: dtype(t),
                shape: t.dims().to_vec(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let encode = |why: String| ArtifactError::Encode {
        name: shown(name),
        why,
    };
    let metadata = Metadata::new(None, header).map_err(|e| encode(e.to_string()))?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| encode(e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok(TensorsLayout {
        header,
        order,
        data_bytes: offset as u64,
    })
}

/// Why streaming a tensor's data failed: reading it back from its device.
#[derive(Debug)]
pub(super) struct TensorReadFailed(pub String);

impl std::fmt::Display for TensorReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TensorReadFailed {}

/// Writes the safetensors file `layout` describes, one tensor's data at a time (little-endian, as
/// the format stores it), so that at most one tensor's copy is in memory.
pub(super) fn tensors(
    layout: &TensorsLayout,
    tensors: &[(String, Tensor)],
    out: &mut dyn Write,
) -> io::Result<()> {
    let read_failed =
        |e: loupe_kernels::Error| io::Error::other(TensorReadFailed(one_line(&e.to_string())));
    out.write_all(&(layout.header.len() as u64).to_le_bytes())?;
    out.write_all(&layout.header)?;
    let mut w = Chunked::new(out);
    for &i in &layout.order {
        let t = &tensors[i].1;
        match t.dtype() {
            DType::F32 => {
                for v in t.to_vec_f32().map_err(read_failed)? {
                    w.put(&v.to_le_bytes())?;
                }
            }
            DType::I32 => {
                for v in t.to_vec_i32().map_err(read_failed)? {
                    w.put(&v.to_le_bytes())?;
                }
            }
        }
    }
    w.finish()
}
