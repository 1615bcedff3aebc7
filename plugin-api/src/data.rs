//! The datasets the run declares in its experiment file.

use crate::bindings::loupe::plugin::data as wit;
use crate::error::{Error, ErrorKind, Result};
use crate::tensor::Tensor;

pub use wit::{DatasetInfo, DatasetKind, ImageDatasetInfo};

/// Every dataset of the run (`default` is the one given as `data = ...`), image datasets aside.
pub fn datasets() -> Vec<DatasetInfo> {
    wit::datasets()
}

/// Every image dataset of the run (`kind = "images"`).
pub fn image_datasets() -> Vec<ImageDatasetInfo> {
    wit::image_datasets()
}

/// A dataset read in order, in batches.
pub struct Dataset {
    info: DatasetInfo,
}

impl Dataset {
    /// The dataset the experiment declared under `name`.
    pub fn open(name: &str) -> Result<Dataset> {
        let all = wit::datasets();
        let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
        match all.into_iter().find(|d| d.name == name) {
            Some(info) => Ok(Dataset { info }),
            None => Err(Error::new(
                ErrorKind::NotFound,
                "data.open",
                if names.is_empty() {
                    format!(
                        "no dataset `{name}`: the run declares none; add `data = \"corpus.txt\"` to its [[run]]"
                    )
                } else {
                    format!(
                        "no dataset `{name}`; the run declares: {}",
                        names.join(", ")
                    )
                },
            )),
        }
    }

    pub fn info(&self) -> &DatasetInfo {
        &self.info
    }

    /// Rows in the whole dataset (sequences or activation rows).
    pub fn rows(&self) -> usize {
        self.info.rows as usize
    }

    /// Sequence length (text) or activation width.
    pub fn width(&self) -> usize {
        self.info.width as usize
    }

    /// The next `rows` rows (fewer at the end), or `None` once exhausted: i32 `[n, seq_len]` for text,
    /// f32 `[n, width]` for activations.
    pub fn next_batch(&self, rows: usize) -> Result<Option<Tensor>> {
        let rows = u32::try_from(rows).unwrap_or(u32::MAX);
        Ok(wit::next_batch(&self.info.name, rows)?.map(Tensor))
    }

    /// Back to the first row.
    pub fn reset(&self) -> Result<()> {
        Ok(wit::reset(&self.info.name)?)
    }

    /// The remaining batches, in order.
    pub fn batches(&self, rows: usize) -> impl Iterator<Item = Result<Tensor>> + '_ {
        std::iter::from_fn(move || self.next_batch(rows).transpose())
    }
}

/// A directory the run declares as a dataset (`sae = "saved/sae"`), read file by file.
pub struct Directory {
    name: String,
}

impl Directory {
    /// The directory dataset the experiment declared under `name`.
    pub fn open(name: &str) -> Result<Directory> {
        let info = Dataset::open(name)?.info;
        if info.kind != DatasetKind::Directory {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "data.open",
                format!(
                    "dataset `{name}` is {:?}, not a directory; declare it with the path of a directory",
                    info.kind
                ),
            ));
        }
        Ok(Directory { name: info.name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its files' names, sorted.
    pub fn files(&self) -> Result<Vec<String>> {
        Ok(wit::list_files(&self.name)?)
    }

    /// A UTF-8 file, whole.
    pub fn read_text(&self, file: &str) -> Result<String> {
        Ok(wit::read_text(&self.name, file)?)
    }

    /// Every tensor of a `.safetensors` file, by name, on the host's device.
    pub fn read_tensors(&self, file: &str) -> Result<Vec<(String, Tensor)>> {
        Ok(wit::read_tensors(&self.name, file)?
            .into_iter()
            .map(|(n, t)| (n, Tensor(t)))
            .collect())
    }
}

/// A batch of images, prepared for the run's model.
pub struct ImageBatch {
    /// f32 `[n, channels, height, width]` in [0, 1].
    pub pixels: Tensor,
    /// Class indices, when the dataset has labels.
    pub labels: Option<Vec<i32>>,
    /// File names relative to the dataset's folder, or `pixel_values[i]`.
    pub names: Vec<String>,
}

/// An image dataset the run declares (`data = { path = "digits/", kind = "images" }`), read in order.
pub struct Images {
    info: ImageDatasetInfo,
}

impl Images {
    /// The image dataset the experiment declared under `name`.
    pub fn open(name: &str) -> Result<Images> {
        let all = wit::image_datasets();
        let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
        match all.into_iter().find(|d| d.name == name) {
            Some(info) => Ok(Images { info }),
            None => Err(Error::new(
                ErrorKind::NotFound,
                "data.open",
                if names.is_empty() {
                    format!(
                        "no image dataset `{name}`: the run declares none; add `data = {{ path = \"images/\", kind = \"images\" }}` to its [[run]]"
                    )
                } else {
                    format!(
                        "no image dataset `{name}`; the run declares: {}",
                        names.join(", ")
                    )
                },
            )),
        }
    }

    pub fn info(&self) -> &ImageDatasetInfo {
        &self.info
    }

    /// Images in the whole dataset.
    pub fn len(&self) -> usize {
        self.info.images as usize
    }

    pub fn is_empty(&self) -> bool {
        self.info.images == 0
    }

    /// The next `count` images (fewer at the end), or `None` once exhausted.
    pub fn next_batch(&self, count: usize) -> Result<Option<ImageBatch>> {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        Ok(
            wit::next_images(&self.info.name, count)?.map(|b| ImageBatch {
                pixels: Tensor(b.pixels),
                labels: b.labels,
                names: b.names,
            }),
        )
    }

    /// Back to the first image.
    pub fn reset(&self) -> Result<()> {
        Ok(wit::reset(&self.info.name)?)
    }

    /// The remaining batches, in order.
    pub fn batches(&self, count: usize) -> impl Iterator<Item = Result<ImageBatch>> + '_ {
        std::iter::from_fn(move || self.next_batch(count).transpose())
    }
}
