//! Writing named tensors to a safetensors file, atomically (temp file, then rename).

use std::path::Path;

use anyhow::{Context, Result};
use loupe_kernels::{DType, Tensor};
use safetensors::{Dtype, tensor::TensorView};

/// Writes `tensors` (read back from their devices) to `path` as f32/i32 safetensors. A reader never
/// sees a half-written file: the data goes to a temporary file beside `path` that is then renamed.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dtype, bytes): (Dtype, Vec<u8>) = match t.dtype() {
            DType::F32 => (
                Dtype::F32,
                t.to_vec_f32()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            DType::I32 => (
                Dtype::I32,
                t.to_vec_i32()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        buffers.push((name.clone(), dtype, t.dims().to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), bytes)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    // Serialised here and written with `fs::write`, which creates the file under the user's umask
    // (`serialize_to_file` makes it readable by its owner alone).
    let result = safetensors::serialize(views, None)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| std::fs::write(&tmp, bytes).map_err(anyhow::Error::from))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}
