//! Turning what a plugin hands over into the bytes of a file, in memory, so the size is known before
//! anything is written.

use loupe_kernels::{DType, Tensor};
use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use super::{ArtifactError, MAX_IMAGE_SIDE, one_line, shown};

/// Parses `json` and re-renders it pretty-printed, with a final newline.
pub(super) fn json(name: &str, json: &str) -> Result<Vec<u8>, ArtifactError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ArtifactError::InvalidJson {
            name: shown(name),
            error: e.to_string(),
        })?;
    let mut bytes = serde_json::to_vec_pretty(&value).map_err(|e| ArtifactError::Encode {
        name: shown(name),
        why: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// RFC 4180: records end in CRLF; a field containing `,`, `"`, CR or LF is quoted with its quotes doubled.
pub(super) fn csv(
    name: &str,
    header: &[String],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, ArtifactError> {
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
    let mut out = String::new();
    for record in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        if let [only] = record
            && only.is_empty()
        {
            // A record of one empty field would otherwise be an empty line, which readers skip.
            out.push_str("\"\"");
        } else {
            for (i, field) in record.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_csv_field(&mut out, field);
            }
        }
        out.push_str("\r\n");
    }
    Ok(out.into_bytes())
}

fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
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

/// Checks the tensor names and returns the exact size of the safetensors file
/// [`write_safetensors`](crate::tensor_file::write_safetensors) will write for `tensors`: 8 bytes of
/// header length, the JSON header padded to a multiple of 8, then the data.
pub(super) fn safetensors_size(
    name: &str,
    tensors: &[(String, Tensor)],
) -> Result<u64, ArtifactError> {
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
    let mut infos: Vec<(&str, Dtype, &[usize], usize)> = tensors
        .iter()
        .map(|(n, t)| {
            let dtype = match t.dtype() {
                DType::F32 => Dtype::F32,
                DType::I32 => Dtype::I32,
            };
            let len = t.dims().iter().product::<usize>() * t.dtype().size_in_bytes();
            (n.as_str(), dtype, t.dims(), len)
        })
        .collect();
    infos.sort_by(|l, r| r.1.cmp(&l.1).then(l.0.cmp(r.0)));
    let mut offset = 0;
    let mut header = Vec::with_capacity(infos.len());
    for (n, dtype, shape, len) in infos {
        header.push((
            n.to_string(),
            TensorInfo {
                dtype,
                shape: shape.to_vec(),
                data_offsets: (offset, offset + len),
            },
        ));
        offset += len;
    }
    let encode = |why: String| ArtifactError::Encode {
        name: shown(name),
        why,
    };
    let metadata = Metadata::new(None, header).map_err(|e| encode(e.to_string()))?;
    let header_len = serde_json::to_string(&metadata)
        .map_err(|e| encode(e.to_string()))?
        .len()
        .next_multiple_of(8);
    Ok((8 + header_len + offset) as u64)
}
