//! Safetensors checkpoints, single-file or sharded, read tensor by tensor straight into f32 buffers.
//!
//! Only the header is parsed up front; each tensor's bytes are read with positioned reads into the
//! buffer that becomes the tensor, so loading never holds a second copy of the weights (no mapping of
//! the whole file stays resident).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use loupe_kernels::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::ModelError;

/// Where one tensor lives on disk.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    file: usize,
    dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// The tensors of a checkpoint under canonical names: the `transformer.` prefix of
/// `GPT2LMHeadModel.save_pretrained` is dropped so both HF layouts read alike.
pub struct WeightStore {
    files: Vec<(PathBuf, File)>,
    tensors: BTreeMap<String, StoredTensor>,
}

const PREFIX: &str = "transformer.";

impl WeightStore {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut store = WeightStore {
            files: Vec::new(),
            tensors: BTreeMap::new(),
        };
        if single.exists() {
            store.add_file(&single)?;
        } else if index.exists() {
            for shard in shard_files(&index)? {
                store.add_file(&dir.join(shard))?;
            }
        } else {
            return Err(ModelError::Weights {
                path: single,
                why: "not found (nor model.safetensors.index.json); the directory needs safetensors weights".into(),
            });
        }
        Ok(store)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ModelError> {
        let bad = |why: String| ModelError::Weights {
            path: path.to_path_buf(),
            why,
        };
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read only to parse and validate the header, and dropped before returning;
        // the file is not expected to change while loupe loads it.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(format!("cannot map: {e}")))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| {
            bad(format!(
                "not a valid safetensors file ({e}); it may be truncated or corrupt"
            ))
        })?;
        let data_start = 8 + header_len as u64;
        let file_index = self.files.len();
        for (name, info) in metadata.tensors() {
            let canonical = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
            let (s, e) = info.data_offsets;
            self.tensors.insert(
                canonical,
                StoredTensor {
                    file: file_index,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + s as u64,
                    end: data_start + e as u64,
                },
            );
        }
        drop(map);
        self.files.push((path.to_path_buf(), file));
        Ok(())
    }

    /// Canonical names and shapes of every stored tensor.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors
            .iter()
            .map(|(n, t)| (n.as_str(), t.shape.as_slice()))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Reads tensor `name`, which must have shape `expected`, as f32 on `device`.
    pub fn load(
        &self,
        name: &str,
        expected: &[usize],
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let stored = self.tensors.get(name).ok_or_else(|| ModelError::Weights {
            path: self.first_path(),
            why: format!("tensor `{name}` is missing (looked for `{name}` and `{PREFIX}{name}`)"),
        })?;
        let (path, file) = &self.files[stored.file];
        let bad = |why: String| ModelError::Weights {
            path: path.clone(),
            why,
        };
        if stored.shape != expected {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, but config.json implies {expected:?}",
                stored.shape
            )));
        }
        let numel: usize = expected.iter().product();
        let len = (stored.end - stored.start) as usize;
        let data = match stored.dtype {
            Dtype::F32 => {
                let mut values = vec![0f32; numel];
                file.read_exact_at(bytemuck::cast_slice_mut(&mut values), stored.start)
                    .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
                if cfg!(target_endian = "big") {
                    values
                        .iter_mut()
                        .for_each(|v| *v = f32::from_bits(v.to_bits().swap_bytes()));
                }
                values
            }
            Dtype::F16 => read_half(file, stored.start, len, numel, |b| {
                half::f16::from_le_bytes(b).to_f32()
            })
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?,
            Dtype::BF16 => read_half(file, stored.start, len, numel, |b| {
                half::bf16::from_le_bytes(b).to_f32()
            })
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?,
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {other:?}; loupe reads F32, F16 and BF16 weights"
                )));
            }
        };
        Tensor::from_vec_f32(data, expected, device).map_err(|source| ModelError::Engine {
            context: format!("loading `{name}` from {}", path.display()),
            source,
        })
    }

    fn first_path(&self) -> PathBuf {
        self.files
            .first()
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }
}

/// Reads 2-byte floats in 1 MiB chunks and widens them to f32.
fn read_half(
    file: &File,
    start: u64,
    len: usize,
    numel: usize,
    widen: impl Fn([u8; 2]) -> f32,
) -> std::io::Result<Vec<f32>> {
    const CHUNK: usize = 1 << 20;
    debug_assert_eq!(len, numel * 2);
    let mut out = Vec::with_capacity(numel);
    let mut buf = vec![0u8; CHUNK.min(len)];
    let mut offset = 0;
    while offset < len {
        let n = CHUNK.min(len - offset);
        file.read_exact_at(&mut buf[..n], start + offset as u64)?;
        out.extend(buf[..n].chunks_exact(2).map(|b| widen([b[0], b[1]])));
        offset += n;
    }
    Ok(out)
}

/// The distinct shard files named by a `model.safetensors.index.json`.
fn shard_files(index: &Path) -> Result<Vec<String>, ModelError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::Weights {
        path: index.to_path_buf(),
        why: format!("malformed index ({e}); expected {{\"weight_map\": {{tensor: file}}}}"),
    })?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if let Some(bad) = files.iter().find(|f| f.contains('/') || f.contains("..")) {
        return Err(ModelError::Weights {
            path: index.to_path_buf(),
            why: format!("shard `{bad}` must be a file name inside the model directory"),
        });
    }
    Ok(files)
}
