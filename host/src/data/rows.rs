//! Row-major `rows × width` data handed out in order, in batches: what text and activation datasets
//! share.

use std::path::{Path, PathBuf};

use loupe_kernels::{Device, Tensor};

use super::{DataError, DatasetInfo, DatasetKind};

#[derive(Debug)]
pub(crate) struct RowBatches<T> {
    path: PathBuf,
    kind: DatasetKind,
    values: Vec<T>,
    rows: usize,
    width: usize,
    cursor: usize,
}

impl<T: Copy> RowBatches<T> {
    /// `values` holds `rows × width` entries, row-major.
    pub fn new(
        path: PathBuf,
        kind: DatasetKind,
        values: Vec<T>,
        rows: usize,
        width: usize,
    ) -> Self {
        debug_assert_eq!(values.len(), rows * width);
        RowBatches {
            path,
            kind,
            values,
            rows,
            width,
            cursor: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> DatasetInfo {
        DatasetInfo {
            kind: self.kind,
            rows: self.rows as u64,
            // Checked at load to fit.
            width: u32::try_from(self.width).unwrap_or(u32::MAX),
        }
    }

    /// Row `i`, `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[T]> {
        if i >= self.rows {
            return None;
        }
        self.values.get(i * self.width..(i + 1) * self.width)
    }

    /// The next `rows` rows (fewer at the end) made into a `[n, width]` tensor by `make`; `Ok(None)` once
    /// every row was handed out. The position only moves once the tensor is made, so a batch the
    /// device refuses loses no rows.
    pub fn next_batch(
        &mut self,
        rows: usize,
        device: Device,
        make: impl FnOnce(&[T], [usize; 2], Device) -> loupe_kernels::Result<Tensor>,
    ) -> Result<Option<Tensor>, DataError> {
        if rows == 0 {
            return Err(DataError::Batch {
                path: self.path.clone(),
                why: "a batch of 0 rows was requested; ask for at least 1".into(),
            });
        }
        if self.cursor >= self.rows {
            return Ok(None);
        }
        let end = self.cursor + rows.min(self.rows - self.cursor);
        let slice = &self.values[self.cursor * self.width..end * self.width];
        let batch = make(slice, [end - self.cursor, self.width], device).map_err(|source| {
            DataError::Engine {
                path: self.path.clone(),
                device,
                source: Box::new(source),
            }
        })?;
        self.cursor = end;
        Ok(Some(batch))
    }

    /// Back to the first row.
    pub fn reset(&mut self) {
        self.cursor = 0;
    }
}
