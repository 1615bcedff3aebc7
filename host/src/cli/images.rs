//! The image input of `grad` and `classify`: image files, folders, or a tensor file of pixels.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use loupe_kernels::Device;

use crate::data::images::{ImageBatch, ImageSet, PixelShape};
use crate::model::Vit;

#[derive(Args)]
pub struct ImageInput {
    /// Images for a vision model: PNG or JPEG files, or one folder (an ImageFolder with a sub-folder
    /// per class, or flat with an optional labels.json / labels.csv). Resized and cropped as the
    /// model's preprocessor_config.json says.
    #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "pixels")]
    pub images: Vec<PathBuf>,
    /// A safetensors file with `pixel_values` f32 [N, C, H, W] in [0, 1] at the model's size, and
    /// optional `labels`.
    #[arg(long, value_name = "FILE.safetensors")]
    pub pixels: Option<PathBuf>,
    /// With --images FOLDER: a labels.json or labels.csv kept outside the folder.
    #[arg(long, value_name = "FILE", requires = "images")]
    pub labels_file: Option<PathBuf>,
}

impl ImageInput {
    pub fn given(&self) -> bool {
        !self.images.is_empty() || self.pixels.is_some()
    }

    /// Every image given, as one batch of pixels prepared for `model`.
    pub fn load(&self, model: &Vit, device: Device) -> Result<ImageBatch> {
        let (set, shape) = self.open(model)?;
        Ok(set.batch(0..set.len(), &model.preprocessor, shape, device)?)
    }

    /// The images given, and the pixel shape `model` takes.
    pub fn open(&self, model: &Vit) -> Result<(ImageSet, PixelShape)> {
        let labels = &model.config.labels;
        let set = match (&self.pixels, self.images.as_slice(), &self.labels_file) {
            (Some(file), _, _) => ImageSet::open(file, labels)?,
            (None, [dir], Some(list)) => ImageSet::open_labelled(dir, list, labels)?,
            (None, _, Some(_)) => bail!("--labels-file goes with exactly one --images FOLDER"),
            (None, [one], None) if one.is_dir() => ImageSet::open(one, labels)?,
            (None, paths, None) => ImageSet::from_files(paths)?,
        };
        Ok((set, PixelShape::of(model)))
    }
}
