//! Cached activations: the 2-D `activations` tensor of a safetensors file, widened to f32 in memory.
//!
//! The whole tensor is read at load, so a truncated or mislabelled file fails before a run starts and
//! batches are plain copies. The file is mapped only while it is read; nothing stays mapped afterwards.

use std::fs::File;
use std::path::Path;

use loupe_kernels::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::rows::RowBatches;
use super::{ActivationSpec, DataError, DatasetInfo, DatasetKind};

/// The tensor a cached-activation file must hold.
const NAME: &str = "activations";

/// `rows × width` activations in f32, and where the current run is in them.
#[derive(Debug)]
pub struct ActivationDataset {
    data: RowBatches<f32>,
}

impl ActivationDataset {
    /// Reads the `activations` tensor of `spec.path` (2-D; F32, F16 or BF16).
    pub fn load(spec: &ActivationSpec) -> Result<Self, DataError> {
        let path = spec.path.as_path();
        let file = File::open(path).map_err(|e| DataError::io(path, &e))?;
        let meta = file.metadata().map_err(|e| DataError::io(path, &e))?;
        if meta.is_dir() {
            return Err(DataError::file(
                path,
                "is a directory; expected a .safetensors file with a 2-D tensor named `activations`",
            ));
        }
        if meta.len() == 0 {
            return Err(DataError::file(
                path,
                "is empty; expected a .safetensors file with a 2-D tensor named `activations`",
            ));
        }
        // SAFETY: the map is only read, and dropped before returning; the file is not expected to change
        // while loupe loads it (the same assumption the model weights loader makes).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| DataError::file(path, format!("cannot map: {e}")))?;
        let tensors = SafeTensors::deserialize(&map).map_err(|e| {
            DataError::file(
                path,
                format!("not a valid safetensors file ({e}); it may be truncated or corrupt"),
            )
        })?;
        let view = tensors
            .tensor(NAME)
            .map_err(|_| DataError::file(path, missing(tensors.names())))?;

        let shape = view.shape();
        let &[rows, width] = shape else {
            return Err(DataError::file(
                path,
                format!(
                    "tensor `{NAME}` has shape {shape:?} ({}-D); it must be 2-D [rows, d]: reshape it to [-1, d] before saving",
                    shape.len()
                ),
            ));
        };
        if rows == 0 || width == 0 {
            return Err(DataError::file(
                path,
                format!(
                    "tensor `{NAME}` has shape {shape:?}; it needs at least one row and one column"
                ),
            ));
        }
        if u32::try_from(width).is_err() {
            return Err(DataError::file(
                path,
                format!(
                    "tensor `{NAME}` is {width} wide; loupe reads at most {} columns",
                    u32::MAX
                ),
            ));
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(DataError::file(
                    path,
                    format!(
                        "tensor `{NAME}` has dtype {other:?}; loupe reads F32, F16 or BF16 activations"
                    ),
                ));
            }
        };
        drop(map);
        Ok(ActivationDataset {
            data: RowBatches::new(
                spec.path.clone(),
                DatasetKind::Activations,
                values,
                rows,
                width,
            ),
        })
    }

    pub fn info(&self) -> DatasetInfo {
        self.data.info()
    }

    /// The values of row `i`, `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.data.row(i)
    }

    pub fn path(&self) -> &Path {
        self.data.path()
    }

    /// The next `rows` rows as f32 `[n, d]` on `device`; see [`super::Dataset::next_batch`].
    pub fn next_batch(&mut self, rows: usize, device: Device) -> Result<Option<Tensor>, DataError> {
        self.data.next_batch(rows, device, |values, shape, device| {
            Tensor::from_vec_f32(values.to_vec(), shape, device)
        })
    }

    /// Back to the first row.
    pub fn reset(&mut self) {
        self.data.reset();
    }
}

/// Why the file is not a cached-activation file: the tensors it does hold, so a user can tell whether
/// they passed the wrong file or saved the tensor under another name.
fn missing(mut names: Vec<&str>) -> String {
    const SHOWN: usize = 10;
    if names.is_empty() {
        return format!("holds no tensors; expected a 2-D tensor named `{NAME}`");
    }
    names.sort_unstable();
    let count = names.len();
    let mut listed: Vec<String> = names
        .into_iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect();
    if count > SHOWN {
        listed.push(format!("and {} more", count - SHOWN));
    }
    format!(
        "has no tensor named `{NAME}` (it holds {}); save the activations as a 2-D [rows, d] tensor named `{NAME}`",
        listed.join(", ")
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::path::PathBuf;

    fn all_values(ds: &ActivationDataset) -> Vec<f32> {
        (0..ds.info().rows as usize)
            .flat_map(|i| ds.row(i).unwrap().to_vec())
            .collect()
    }
    use safetensors::tensor::TensorView;

    /// Writes `tensors` (name, dtype, shape, little-endian bytes) to `dir/name`.
    pub(crate) fn write(
        dir: &Path,
        name: &str,
        tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>,
    ) -> PathBuf {
        let path = dir.join(name);
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, dtype, shape, bytes)| {
                (
                    n.to_string(),
                    TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &path).unwrap();
        path
    }

    pub(crate) fn write_f32(dir: &Path, name: &str, values: &[f32], shape: &[usize]) -> PathBuf {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        write(dir, name, vec![(NAME, Dtype::F32, shape.to_vec(), bytes)])
    }

    fn load(path: PathBuf) -> Result<ActivationDataset, DataError> {
        ActivationDataset::load(&ActivationSpec { path })
    }

    fn error(path: PathBuf) -> String {
        let msg = load(path).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "not one line: {msg}");
        msg
    }

    #[test]
    fn f32_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..12).map(|v| v as f32 * 0.37 - 1.5).collect();
        let path = write_f32(dir.path(), "a.safetensors", &values, &[4, 3]);
        let ds = load(path).unwrap();
        assert_eq!(
            ds.info(),
            DatasetInfo {
                kind: DatasetKind::Activations,
                rows: 4,
                width: 3
            }
        );
        assert_eq!(all_values(&ds), values);
        assert_eq!(ds.row(1), Some(&values[3..6]));
        assert_eq!(ds.row(4), None);
    }

    #[test]
    fn f16_and_bf16_are_widened() {
        let dir = tempfile::tempdir().unwrap();
        // Exactly representable in both half formats.
        let values = [0.5f32, -2.0, 1024.0, 0.0, -0.125, 3.0];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let path = write(
            dir.path(),
            "h.safetensors",
            vec![
                (NAME, Dtype::F16, vec![2, 3], f16),
                ("other", Dtype::F32, vec![1], vec![0; 4]),
            ],
        );
        let ds = load(path).unwrap();
        assert_eq!((ds.info().rows, ds.info().width), (2, 3));
        assert_eq!(all_values(&ds), values);

        let path = write(
            dir.path(),
            "b.safetensors",
            vec![(NAME, Dtype::BF16, vec![3, 2], bf16)],
        );
        let ds = load(path).unwrap();
        assert_eq!((ds.info().rows, ds.info().width), (3, 2));
        assert_eq!(all_values(&ds), values);
    }

    #[test]
    fn missing_activations_lists_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "t.safetensors",
            vec![
                ("logits", Dtype::F32, vec![1, 2], vec![0; 8]),
                ("input_ids", Dtype::I32, vec![1, 1], vec![0; 4]),
            ],
        );
        let err = error(path);
        assert!(
            err.contains("t.safetensors: has no tensor named `activations`")
                && err.contains("(it holds `input_ids`, `logits`)"),
            "{err}"
        );
    }

    #[test]
    fn wrong_rank_dtype_or_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_f32(dir.path(), "3d.safetensors", &[0.0; 8], &[2, 2, 2]);
        let err = error(path);
        assert!(
            err.contains("3d.safetensors: tensor `activations` has shape [2, 2, 2] (3-D)")
                && err.contains("2-D"),
            "{err}"
        );
        let path = write_f32(dir.path(), "1d.safetensors", &[0.0; 4], &[4]);
        assert!(error(path).contains("(1-D)"));

        let path = write(
            dir.path(),
            "i.safetensors",
            vec![(NAME, Dtype::I32, vec![2, 2], vec![0; 16])],
        );
        let err = error(path);
        assert!(
            err.contains("dtype I32") && err.contains("F32, F16 or BF16"),
            "{err}"
        );

        let path = write_f32(dir.path(), "z.safetensors", &[], &[0, 4]);
        let err = error(path);
        assert!(err.contains("at least one row"), "{err}");
    }

    #[test]
    fn broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = error(dir.path().join("none.safetensors"));
        assert!(err.contains("none.safetensors: not found"), "{err}");

        let empty = dir.path().join("e.safetensors");
        std::fs::write(&empty, b"").unwrap();
        assert!(error(empty).contains("e.safetensors: is empty"));

        let path = write_f32(dir.path(), "cut.safetensors", &[1.0; 12], &[4, 3]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = error(path);
        assert!(
            err.contains("cut.safetensors: not a valid safetensors file")
                && err.contains("truncated"),
            "{err}"
        );

        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"this is not a safetensors file at all").unwrap();
        assert!(error(junk).contains("not a valid safetensors file"));

        assert!(error(dir.path().to_path_buf()).contains("is a directory"));
    }
}
