//! Cached activations: a 2-D tensor of a safetensors file (`activations` unless the spec names
//! another), widened to f32 in memory.
//!
//! The whole tensor is read at load, so a truncated or mislabelled file fails before a run starts and
//! batches are plain copies. The file is mapped only while it is read; nothing stays mapped afterwards.

use std::path::Path;

use loupe_kernels::{Device, Tensor};

use super::rows::RowBatches;
use super::safetensors_file::{TensorFile, floats};
use super::{ActivationSpec, DataError, DatasetInfo, DatasetKind, quoted_list};

/// The tensor read when the spec names none.
pub(crate) const DEFAULT_TENSOR: &str = "activations";

/// `rows × width` activations in f32, and where the current run is in them.
#[derive(Debug)]
pub struct ActivationDataset {
    data: RowBatches<f32>,
}

impl ActivationDataset {
    /// Reads the tensor `spec.tensor` of `spec.path` (2-D; F32, F16, BF16 or F64).
    pub fn load(spec: &ActivationSpec) -> Result<Self, DataError> {
        let path = spec.path.as_path();
        let name = spec.tensor.as_str();
        let file = TensorFile::open(path)?;
        let tensors = file.parsed()?;
        let view = tensors
            .tensor(name)
            .map_err(|_| DataError::file(path, missing(name, tensors.names())))?;

        let shape = view.shape();
        let &[rows, width] = shape else {
            return Err(DataError::file(
                path,
                format!(
                    "tensor `{name}` has shape {shape:?} ({}-D); it must be 2-D [rows, d]: reshape it to [-1, d] before saving",
                    shape.len()
                ),
            ));
        };
        if rows == 0 || width == 0 {
            return Err(DataError::file(
                path,
                format!(
                    "tensor `{name}` has shape {shape:?}; it needs at least one row and one column"
                ),
            ));
        }
        if u32::try_from(width).is_err() {
            return Err(DataError::file(
                path,
                format!(
                    "tensor `{name}` is {width} wide; loupe reads at most {} columns",
                    u32::MAX
                ),
            ));
        }
        let values = floats(view.dtype(), view.data()).ok_or_else(|| {
            DataError::file(
                path,
                format!(
                    "tensor `{name}` has dtype {:?}; loupe reads F32, F16, BF16 or F64 activations",
                    view.dtype()
                ),
            )
        })?;
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

/// Why the file has no tensor `name`: the tensors it does hold, so a user can tell whether they passed
/// the wrong file or saved the tensor under another name.
fn missing(name: &str, mut names: Vec<&str>) -> String {
    if names.is_empty() {
        return format!("holds no tensors; expected a 2-D tensor named `{name}`");
    }
    names.sort_unstable();
    format!(
        "has no tensor named `{name}` (it holds {}); name the 2-D [rows, d] tensor to read with the dataset's `tensor = \"...\"`",
        quoted_list(&names, 10)
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
    use safetensors::Dtype;
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
        write(
            dir,
            name,
            vec![(DEFAULT_TENSOR, Dtype::F32, shape.to_vec(), bytes)],
        )
    }

    fn load(path: PathBuf) -> Result<ActivationDataset, DataError> {
        ActivationDataset::load(&ActivationSpec::new(path))
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
                (DEFAULT_TENSOR, Dtype::F16, vec![2, 3], f16),
                ("other", Dtype::F32, vec![1], vec![0; 4]),
            ],
        );
        let ds = load(path).unwrap();
        assert_eq!((ds.info().rows, ds.info().width), (2, 3));
        assert_eq!(all_values(&ds), values);

        let path = write(
            dir.path(),
            "b.safetensors",
            vec![(DEFAULT_TENSOR, Dtype::BF16, vec![3, 2], bf16)],
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
    fn the_spec_names_which_tensor_to_read() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<u8> = [1.5f64, -2.0, 0.25, 8.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let path = write(
            dir.path(),
            "ref.safetensors",
            vec![
                ("x", Dtype::F64, vec![2, 2], x),
                ("y", Dtype::F32, vec![3], vec![0; 12]),
            ],
        );
        let spec = ActivationSpec {
            tensor: "x".into(),
            ..ActivationSpec::new(path.clone())
        };
        let ds = ActivationDataset::load(&spec).unwrap();
        assert_eq!((ds.info().rows, ds.info().width), (2, 2));
        assert_eq!(all_values(&ds), [1.5, -2.0, 0.25, 8.0]);

        let spec = ActivationSpec {
            tensor: "z".into(),
            ..ActivationSpec::new(path.clone())
        };
        let err = ActivationDataset::load(&spec).unwrap_err().to_string();
        assert!(
            err.contains("ref.safetensors: has no tensor named `z` (it holds `x`, `y`)")
                && err.contains("tensor = "),
            "{err}"
        );
        // The default name is not mentioned when another was asked for.
        assert!(!err.contains("activations"), "{err}");
        let spec = ActivationSpec {
            tensor: "y".into(),
            ..ActivationSpec::new(path)
        };
        let err = ActivationDataset::load(&spec).unwrap_err().to_string();
        assert!(err.contains("tensor `y` has shape [3] (1-D)"), "{err}");
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
            vec![(DEFAULT_TENSOR, Dtype::I32, vec![2, 2], vec![0; 16])],
        );
        let err = error(path);
        assert!(
            err.contains("dtype I32") && err.contains("F32, F16, BF16 or F64"),
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
