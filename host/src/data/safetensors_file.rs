//! Reading a safetensors file into engine tensors: floats widened to f32, integers narrowed to i32.
//!
//! The file is mapped, not read, so its header can be checked (and the run's quota asked) before any
//! tensor is made.

use std::fs::File;
use std::path::{Path, PathBuf};

use loupe_kernels::{Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::DataError;

/// A mapped safetensors file whose header has been checked.
pub(crate) struct TensorFile {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, &e))?;
        let meta = file.metadata().map_err(|e| DataError::io(path, &e))?;
        if meta.is_dir() {
            return Err(DataError::file(
                path,
                "is a directory; expected a .safetensors file",
            ));
        }
        // Mapping an empty file fails on some systems; say what is wrong instead.
        if meta.len() == 0 {
            return Err(DataError::file(
                path,
                "is empty; expected a .safetensors file",
            ));
        }
        // SAFETY: the map is only read; the file is not expected to change while loupe reads it (the
        // same assumption the model weights loader makes).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| DataError::file(path, format!("cannot map: {e}")))?;
        let file = TensorFile {
            path: path.to_path_buf(),
            map,
        };
        file.parsed()?;
        Ok(file)
    }

    /// The file's tensors (a header parse: cheap).
    pub fn parsed(&self) -> Result<SafeTensors<'_>, DataError> {
        SafeTensors::deserialize(&self.map).map_err(|e| {
            DataError::file(
                &self.path,
                format!("not a valid safetensors file ({e}); it may be truncated or corrupt"),
            )
        })
    }

    /// How many tensors the file holds, and their elements in all.
    pub fn size(&self) -> Result<(usize, u64), DataError> {
        let tensors = self.parsed()?;
        let elements = tensors
            .iter()
            .map(|(_, v)| v.shape().iter().product::<usize>() as u64)
            .sum();
        Ok((tensors.len(), elements))
    }

    /// Every tensor, sorted by name, on `device`: floats as f32, integers as i32.
    pub fn read_all(&self, device: Device) -> Result<Vec<(String, Tensor)>, DataError> {
        let tensors = self.parsed()?;
        let mut names = tensors.names();
        names.sort_unstable();
        names
            .into_iter()
            .map(|name| {
                let view = tensors
                    .tensor(name)
                    .map_err(|e| DataError::file(&self.path, format!("tensor `{name}`: {e}")))?;
                Ok((name.to_string(), self.to_tensor(name, &view, device)?))
            })
            .collect()
    }

    fn to_tensor(
        &self,
        name: &str,
        view: &TensorView,
        device: Device,
    ) -> Result<Tensor, DataError> {
        let shape = view.shape().to_vec();
        let made = if let Some(values) = floats(view.dtype(), view.data()) {
            Tensor::from_vec_f32(values, shape, device)
        } else {
            let values = integers(view.dtype(), view.data())
                .ok_or_else(|| {
                    DataError::file(
                        &self.path,
                        format!(
                            "tensor `{name}` has dtype {:?}; loupe reads F32, F16, BF16, F64 and integer tensors",
                            view.dtype()
                        ),
                    )
                })?
                .map_err(|(index, value)| {
                    DataError::file(
                        &self.path,
                        format!(
                            "tensor `{name}` ({:?}) holds {value} at element {index}, outside the s32 range loupe reads integers into",
                            view.dtype()
                        ),
                    )
                })?;
            Tensor::from_vec_i32(values, shape, device)
        };
        made.map_err(|source| DataError::Engine {
            path: self.path.clone(),
            device,
            source: Box::new(source),
        })
    }
}

/// Little-endian float elements widened to f32; `None` for a dtype that is not F32, F16, BF16 or F64.
pub(crate) fn floats(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => chunks(bytes, f32::from_le_bytes),
        Dtype::F16 => chunks(bytes, |b| half::f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => chunks(bytes, |b| half::bf16::from_le_bytes(b).to_f32()),
        Dtype::F64 => chunks(bytes, |b| f64::from_le_bytes(b) as f32),
        _ => return None,
    })
}

/// Little-endian integer elements as i32; `None` for a dtype that is not an integer, `Err((index,
/// value))` for the first element outside i32's range.
fn integers(dtype: Dtype, bytes: &[u8]) -> Option<Result<Vec<i32>, (usize, i128)>> {
    Some(match dtype {
        Dtype::I8 => narrow(bytes, i8::from_le_bytes),
        Dtype::U8 => narrow(bytes, u8::from_le_bytes),
        Dtype::I16 => narrow(bytes, i16::from_le_bytes),
        Dtype::U16 => narrow(bytes, u16::from_le_bytes),
        Dtype::I32 => Ok(chunks(bytes, i32::from_le_bytes)),
        Dtype::U32 => narrow(bytes, u32::from_le_bytes),
        Dtype::I64 => narrow(bytes, i64::from_le_bytes),
        Dtype::U64 => narrow(bytes, u64::from_le_bytes),
        _ => return None,
    })
}

fn narrow<const N: usize, W: Into<i128>>(
    bytes: &[u8],
    decode: impl Fn([u8; N]) -> W,
) -> Result<Vec<i32>, (usize, i128)> {
    bytes
        .chunks_exact(N)
        .enumerate()
        .map(|(i, b)| {
            let w: i128 = decode(b.try_into().expect("chunks_exact yields N bytes")).into();
            i32::try_from(w).map_err(|_| (i, w))
        })
        .collect()
}

/// Decodes `N`-byte elements (unaligned: the map gives no alignment guarantee).
fn chunks<const N: usize, T>(bytes: &[u8], decode: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|b| decode(b.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}
