//! Image datasets for vision models: a folder in the torchvision ImageFolder layout (one sub-folder
//! per class), a flat folder with `labels.json` or `labels.csv` (or no labels), a list of image files,
//! or a `.safetensors` file with `pixel_values` `[N, C, H, W]` and optional `labels`.
//!
//! PNG and JPEG are decoded with the `image` crate, converted to RGB, resized and centre-cropped as the
//! model's preprocessor says, and served as pixels in [0, 1] (the model normalises them itself).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use loupe_kernels::{Device, Tensor};

use super::DataError;
use crate::model::Vit;
use crate::model::preprocess::{Preprocessor, Resample, Resize, shortest_edge};

/// File extensions read as images.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The pixels a model takes: channels and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl PixelShape {
    /// What `model` takes.
    pub fn of(model: &Vit) -> Self {
        let c = &model.config;
        PixelShape {
            channels: c.channels,
            height: c.image_size,
            width: c.image_size,
        }
    }

    fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// One batch: the pixels `[n, C, H, W]`, their labels (when the dataset has them) and their names
/// (file names, or `pixel_values[i]` for a tensor file).
#[derive(Debug)]
pub struct ImageBatch {
    pub pixels: Tensor,
    pub labels: Option<Vec<i32>>,
    pub names: Vec<String>,
}

enum Items {
    Files(Vec<(PathBuf, Option<i32>)>),
    Stored {
        pixels: Vec<f32>,
        shape: [usize; 4],
        labels: Option<Vec<i32>>,
    },
}

/// A set of images with optional labels, read in batches.
pub struct ImageSet {
    path: PathBuf,
    items: Items,
    /// Class names by label index, when the layout names them (ImageFolder, string labels).
    pub classes: Vec<String>,
}

impl ImageSet {
    /// Opens a folder (ImageFolder or flat), a single image, or a `.safetensors` file. `model_labels`
    /// (the model's class names) map folder or label names to the model's indices when they all
    /// match; otherwise classes are numbered in sorted order, as torchvision's ImageFolder does.
    pub fn open(path: &Path, model_labels: &[String]) -> Result<Self, DataError> {
        if path.is_dir() {
            return open_folder(path, model_labels);
        }
        if !path.exists() {
            return Err(DataError::file(
                path,
                "not found; give an image, a folder of images or a .safetensors file with pixel_values",
            ));
        }
        if has_extension(path, &["safetensors"]) {
            return open_tensor_file(path);
        }
        Self::from_files(&[path.to_path_buf()])
    }

    /// A flat folder of images labelled by `labels` (a `labels.json` or `labels.csv` kept elsewhere).
    pub fn open_labelled(
        dir: &Path,
        labels: &Path,
        model_labels: &[String],
    ) -> Result<Self, DataError> {
        open_flat(dir, Some(labels), model_labels)
    }

    /// Unlabelled images, in the order given; folders among them contribute their images, sorted.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, DataError> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                files.extend(images_in(path)?.into_iter().map(|f| (f, None)));
            } else if !path.exists() {
                return Err(DataError::file(path, "not found"));
            } else if !has_extension(path, &IMAGE_EXTENSIONS) {
                return Err(DataError::file(
                    path,
                    "not a PNG or JPEG file (.png, .jpg, .jpeg)",
                ));
            } else {
                files.push((path.clone(), None));
            }
        }
        if files.is_empty() {
            let at = paths.first().map_or(Path::new("."), PathBuf::as_path);
            return Err(DataError::file(at, "no PNG or JPEG images found"));
        }
        Ok(ImageSet {
            path: paths.first().cloned().unwrap_or_default(),
            items: Items::Files(files),
            classes: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        match &self.items {
            Items::Files(f) => f.len(),
            Items::Stored { shape, .. } => shape[0],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every image has a label.
    pub fn labelled(&self) -> bool {
        match &self.items {
            Items::Files(f) => f.iter().all(|(_, l)| l.is_some()),
            Items::Stored { labels, .. } => labels.is_some(),
        }
    }

    /// Images `range` as pixels of shape `want`, prepared with `pre`, on `device`.
    pub fn batch(
        &self,
        range: std::ops::Range<usize>,
        pre: &Preprocessor,
        want: PixelShape,
        device: Device,
    ) -> Result<ImageBatch, DataError> {
        let range = range.start.min(self.len())..range.end.min(self.len());
        let n = range.len();
        let (values, labels, names) = match &self.items {
            Items::Files(files) => {
                let mut values = Vec::with_capacity(n * want.numel());
                let mut labels = Vec::with_capacity(n);
                let mut names = Vec::with_capacity(n);
                for (file, label) in &files[range] {
                    values.extend(load_image(file, pre, want)?);
                    labels.push(*label);
                    names.push(display_name(&self.path, file));
                }
                let labels = labels.into_iter().collect::<Option<Vec<i32>>>();
                (values, labels, names)
            }
            Items::Stored {
                pixels,
                shape,
                labels,
            } => {
                let [_, c, h, w] = *shape;
                if (c, h, w) != (want.channels, want.height, want.width) {
                    return Err(DataError::spec(
                        &self.path,
                        format!(
                            "pixel_values are [N, {c}, {h}, {w}] but the model takes [N, {}, {}, {}]; store them at the model's size",
                            want.channels, want.height, want.width
                        ),
                    ));
                }
                let per = c * h * w;
                let values = pixels[range.start * per..range.end * per].to_vec();
                let labels = labels.as_ref().map(|l| l[range.clone()].to_vec());
                let names = range.map(|i| format!("pixel_values[{i}]")).collect();
                (values, labels, names)
            }
        };
        let pixels =
            Tensor::from_vec_f32(values, [n, want.channels, want.height, want.width], device)
                .map_err(|e| DataError::Engine {
                    path: self.path.clone(),
                    device,
                    source: Box::new(e),
                })?;
        Ok(ImageBatch {
            pixels,
            labels,
            names,
        })
    }
}

/// Decodes `path`, converts it to RGB (or grey for one channel), resizes and crops it as `pre` says,
/// and returns its pixels in [0, 1], channel by channel (`[C, H, W]`).
pub fn load_image(
    path: &Path,
    pre: &Preprocessor,
    want: PixelShape,
) -> Result<Vec<f32>, DataError> {
    let bad = |why: String| DataError::file(path, why);
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, &e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, &e))?;
    let decoded = reader.decode().map_err(|e| {
        bad(format!(
            "cannot decode the image ({e}); loupe reads PNG and JPEG files"
        ))
    })?;
    let image = match want.channels {
        3 => image::DynamicImage::ImageRgb8(decoded.to_rgb8()),
        1 => image::DynamicImage::ImageLuma8(decoded.to_luma8()),
        c => {
            return Err(bad(format!(
                "the model takes {c} channels; images give 1 or 3"
            )));
        }
    };
    let (w0, h0) = (image.width() as usize, image.height() as usize);
    let filter = match pre.resample {
        Resample::Nearest => FilterType::Nearest,
        Resample::Bilinear => FilterType::Triangle,
        Resample::Bicubic => FilterType::CatmullRom,
        Resample::Lanczos => FilterType::Lanczos3,
    };
    let target = match pre.resize {
        None => None,
        Some(Resize::Exact { height, width }) => Some((height, width)),
        Some(Resize::ShortestEdge(edge)) => Some(shortest_edge(h0, w0, edge)),
    };
    let image = match target {
        Some((h, w)) if (h, w) != (h0, w0) => image.resize_exact(w as u32, h as u32, filter),
        _ => image,
    };
    let image = match pre.crop {
        Some((ch, cw)) => {
            let (w1, h1) = (image.width() as usize, image.height() as usize);
            if ch > h1 || cw > w1 {
                return Err(bad(format!(
                    "is {w1}×{h1} after resizing, smaller than the {cw}×{ch} crop"
                )));
            }
            // The centre, rounding the offset down as torchvision's center_crop does.
            image.crop_imm(
                ((w1 - cw) / 2) as u32,
                ((h1 - ch) / 2) as u32,
                cw as u32,
                ch as u32,
            )
        }
        None => image,
    };
    let (w, h) = (image.width() as usize, image.height() as usize);
    if (h, w) != (want.height, want.width) {
        return Err(bad(format!(
            "is {w}×{h} but the model takes {}×{}; without a preprocessor_config.json images must come at the model's size",
            want.width, want.height
        )));
    }
    let raw = image.as_bytes();
    let c = want.channels;
    let mut chw = vec![0f32; c * h * w];
    for (i, px) in raw.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * h * w + i] = f32::from(v) / 255.0;
        }
    }
    Ok(chw)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The images directly in `dir`, sorted by name.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_extension(p, &IMAGE_EXTENSIONS))
        .collect();
    files.sort();
    Ok(files)
}

/// A file's name relative to the dataset's root, for reports.
fn display_name(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

fn open_folder(dir: &Path, model_labels: &[String]) -> Result<ImageSet, DataError> {
    let mut class_dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    class_dirs.sort();
    let flat = images_in(dir)?;
    let for_labels = |names: &[String]| class_indices(names, model_labels);
    if !class_dirs.is_empty() && flat.is_empty() {
        // ImageFolder: one sub-folder per class.
        let names: Vec<String> = class_dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let index = for_labels(&names);
        let mut files = Vec::new();
        for (class_dir, label) in class_dirs.iter().zip(&index) {
            files.extend(images_in(class_dir)?.into_iter().map(|f| (f, Some(*label))));
        }
        if files.is_empty() {
            return Err(DataError::file(
                dir,
                "its class folders hold no PNG or JPEG images",
            ));
        }
        return Ok(ImageSet {
            path: dir.to_path_buf(),
            items: Items::Files(files),
            classes: names,
        });
    }
    let beside = ["labels.json", "labels.csv"]
        .map(|f| dir.join(f))
        .into_iter()
        .find(|f| f.exists());
    open_flat(dir, beside.as_deref(), model_labels)
}

/// The images directly in `dir`, labelled by `labels_file` (JSON or CSV) if given.
fn open_flat(
    dir: &Path,
    labels_file: Option<&Path>,
    model_labels: &[String],
) -> Result<ImageSet, DataError> {
    let flat = images_in(dir)?;
    if flat.is_empty() {
        return Err(DataError::file(
            dir,
            "no PNG or JPEG images found (an ImageFolder has one sub-folder of images per class)",
        ));
    }
    let (labels, classes) = match labels_file {
        None => (BTreeMap::new(), Vec::new()),
        Some(f) if has_extension(f, &["json"]) => read_labels_json(f, model_labels)?,
        Some(f) if has_extension(f, &["csv"]) => read_labels_csv(f, model_labels)?,
        Some(f) => {
            return Err(DataError::file(f, "labels must be a .json or .csv file"));
        }
    };
    let list = labels_file
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let labelled = labels_file.is_some();
    let mut files = Vec::with_capacity(flat.len());
    for file in flat {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let label = labels.get(&name).copied();
        if labelled && label.is_none() {
            return Err(DataError::file(
                &file,
                format!("has no entry in {list}; label every image or move it out"),
            ));
        }
        files.push((file, label));
    }
    Ok(ImageSet {
        path: dir.to_path_buf(),
        items: Items::Files(files),
        classes,
    })
}

/// Label indices for class `names`: the model's indices when every name is one of its labels,
/// else the sorted order (torchvision's rule).
fn class_indices(names: &[String], model_labels: &[String]) -> Vec<i32> {
    let by_model: Option<Vec<i32>> = names
        .iter()
        .map(|n| model_labels.iter().position(|l| l == n).map(|i| i as i32))
        .collect();
    by_model.unwrap_or_else(|| {
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        names
            .iter()
            .map(|n| sorted.iter().position(|s| *s == n).unwrap_or(0) as i32)
            .collect()
    })
}

/// A label as written: a class index, or a class name.
enum RawLabel {
    Index(i64),
    Name(String),
}

/// File name → label index, and the class names when the labels are names.
fn resolve_labels(
    path: &Path,
    raw: Vec<(String, RawLabel)>,
    model_labels: &[String],
) -> Result<(BTreeMap<String, i32>, Vec<String>), DataError> {
    let mut names: Vec<String> = raw
        .iter()
        .filter_map(|(_, l)| match l {
            RawLabel::Name(n) => Some(n.clone()),
            RawLabel::Index(_) => None,
        })
        .collect();
    names.sort();
    names.dedup();
    let index = class_indices(&names, model_labels);
    let mut out = BTreeMap::new();
    for (file, label) in raw {
        let i = match label {
            RawLabel::Index(i) => i32::try_from(i).ok().filter(|&i| i >= 0).ok_or_else(|| {
                DataError::file(
                    path,
                    format!("`{file}` has label {i}; labels are class indices from 0"),
                )
            })?,
            RawLabel::Name(n) => index[names.iter().position(|x| *x == n).unwrap_or(0)],
        };
        out.insert(file, i);
    }
    Ok((out, names))
}

fn read_labels_json(
    path: &Path,
    model_labels: &[String],
) -> Result<(BTreeMap<String, i32>, Vec<String>), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, &e))?;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
        DataError::file(path, format!("expected {{\"file.png\": label, ...}}: {e}"))
    })?;
    let raw = map
        .into_iter()
        .map(|(file, v)| match v {
            serde_json::Value::Number(n) if n.as_i64().is_some() => {
                Ok((file, RawLabel::Index(n.as_i64().unwrap_or(-1))))
            }
            serde_json::Value::String(s) => Ok((file, RawLabel::Name(s))),
            other => Err(DataError::file(
                path,
                format!("`{file}` has label {other}; give a class index or a class name"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    resolve_labels(path, raw, model_labels)
}

/// `file,label` lines; a first line `file,label` (any names) without a numeric label is a header.
fn read_labels_csv(
    path: &Path,
    model_labels: &[String],
) -> Result<(BTreeMap<String, i32>, Vec<String>), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, &e))?;
    let mut raw = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (file, label) = line
            .split_once(',')
            .ok_or_else(|| DataError::line(path, n + 1, "expected `file,label`"))?;
        let (file, label) = (file.trim().to_string(), label.trim());
        let is_header = n == 0
            && label.parse::<i64>().is_err()
            && !has_extension(Path::new(&file), &IMAGE_EXTENSIONS);
        if is_header {
            continue;
        }
        let label = match label.parse::<i64>() {
            Ok(i) => RawLabel::Index(i),
            Err(_) => RawLabel::Name(label.to_string()),
        };
        raw.push((file, label));
    }
    resolve_labels(path, raw, model_labels)
}

fn open_tensor_file(path: &Path) -> Result<ImageSet, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, &e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| DataError::file(path, format!("not a safetensors file: {e}")))?;
    let pixels = st.tensor("pixel_values").map_err(|_| {
        DataError::file(
            path,
            "has no tensor `pixel_values`; store the images as pixel_values [N, C, H, W]",
        )
    })?;
    let shape: [usize; 4] = pixels.shape().try_into().map_err(|_| {
        DataError::file(
            path,
            format!(
                "pixel_values is {:?}; it must be [N, C, H, W]",
                pixels.shape()
            ),
        )
    })?;
    if pixels.dtype() != safetensors::Dtype::F32 {
        return Err(DataError::file(
            path,
            format!("pixel_values is {:?}; store f32 in [0, 1]", pixels.dtype()),
        ));
    }
    let values: Vec<f32> = pixels
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.iter().any(|v| !v.is_finite()) || lo < 0.0 || hi > 1.0 {
        return Err(DataError::file(
            path,
            format!(
                "pixel_values range over [{lo}, {hi}]; store raw pixels in [0, 1] (the model normalises them itself)"
            ),
        ));
    }
    let labels = match st.tensor("labels") {
        Err(_) => None,
        Ok(l) => {
            let ints: Vec<i64> = match l.dtype() {
                safetensors::Dtype::I32 => l
                    .data()
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect(),
                safetensors::Dtype::I64 => l
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
                    .collect(),
                other => {
                    return Err(DataError::file(
                        path,
                        format!("labels is {other:?}; store i32 or i64 class indices"),
                    ));
                }
            };
            if ints.len() != shape[0] {
                return Err(DataError::file(
                    path,
                    format!("{} labels for {} images", ints.len(), shape[0]),
                ));
            }
            Some(ints.into_iter().map(|v| v as i32).collect())
        }
    };
    Ok(ImageSet {
        path: path.to_path_buf(),
        items: Items::Stored {
            pixels: values,
            shape,
            labels,
        },
        classes: Vec::new(),
    })
}

/// An image dataset in an experiment file: `data = { path = "digits/", kind = "images" }`, with
/// `labels = "labels.json"` for a flat folder whose labels file lives elsewhere.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub path: PathBuf,
    #[serde(default)]
    pub labels: Option<PathBuf>,
}

/// An image dataset being read in batches by one run, prepared for the run's model.
pub struct ImageDataset {
    set: ImageSet,
    preprocessor: Preprocessor,
    shape: PixelShape,
    next: usize,
}

impl ImageDataset {
    /// Opens `spec` for a model taking `shape` pixels prepared by `preprocessor` and naming
    /// `model_labels` classes.
    pub fn load(
        spec: &ImageSpec,
        preprocessor: &Preprocessor,
        shape: PixelShape,
        model_labels: &[String],
    ) -> Result<Self, DataError> {
        let set = match &spec.labels {
            Some(list) => ImageSet::open_labelled(&spec.path, list, model_labels)?,
            None => ImageSet::open(&spec.path, model_labels)?,
        };
        Ok(ImageDataset {
            set,
            preprocessor: preprocessor.clone(),
            shape,
            next: 0,
        })
    }

    pub fn set(&self) -> &ImageSet {
        &self.set
    }

    pub fn info(&self) -> super::DatasetInfo {
        super::DatasetInfo {
            kind: super::DatasetKind::Images,
            rows: self.set.len() as u64,
            width: 0,
        }
    }

    /// Bytes of a batch of `count` images.
    pub fn batch_bytes(&self, count: usize) -> u64 {
        (count.min(self.set.len() - self.next.min(self.set.len())) * self.shape.numel() * 4) as u64
    }

    /// The next `count` images, or `None` once exhausted. `count == 0` is an error.
    pub fn next_images(
        &mut self,
        count: usize,
        device: Device,
    ) -> Result<Option<ImageBatch>, DataError> {
        if count == 0 {
            return Err(DataError::Batch {
                path: self.set.path.clone(),
                why: "a batch of 0 images never makes progress; ask for at least 1".into(),
            });
        }
        if self.next >= self.set.len() {
            return Ok(None);
        }
        let end = (self.next + count).min(self.set.len());
        let batch = self
            .set
            .batch(self.next..end, &self.preprocessor, self.shape, device)?;
        self.next = end;
        Ok(Some(batch))
    }

    pub fn reset(&mut self) {
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGB: PixelShape = PixelShape {
        channels: 3,
        height: 4,
        width: 4,
    };

    /// A `w × h` PNG whose red channel is the pixel index and green is `label`.
    fn write_png(path: &Path, w: u32, h: u32, label: u8) {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(y * w + x) as u8, label, 255]));
        img.save(path).unwrap();
    }

    #[test]
    fn image_folder_numbers_classes_in_sorted_order_or_by_the_model() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("dog", 2), ("cat", 1)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..n {
                write_png(&dir.path().join(class).join(format!("{i}.png")), 4, 4, 7);
            }
        }
        let set = ImageSet::open(dir.path(), &[]).unwrap();
        assert_eq!(set.classes, ["cat", "dog"]);
        let batch = set
            .batch(0..3, &Preprocessor::plain(4), RGB, Device::Cpu)
            .unwrap();
        assert_eq!(batch.labels, Some(vec![0, 1, 1]));
        assert_eq!(batch.names[0], "cat/0.png");
        assert_eq!(batch.pixels.dims(), [3, 3, 4, 4]);
        let px = batch.pixels.to_vec_f32().unwrap();
        // Channel-major: red ramps with the pixel index, green is 7, blue 255.
        assert_eq!(px[5], 5.0 / 255.0);
        assert_eq!(px[16 + 5], 7.0 / 255.0);
        assert_eq!(px[32], 1.0);
        // A model that names the classes decides their indices.
        let by_model = ImageSet::open(dir.path(), &["dog".into(), "cat".into()]).unwrap();
        let batch = by_model
            .batch(0..3, &Preprocessor::plain(4), RGB, Device::Cpu)
            .unwrap();
        assert_eq!(batch.labels, Some(vec![1, 0, 0]));
    }

    #[test]
    fn flat_folders_take_labels_json_or_csv() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "b.png"] {
            write_png(&dir.path().join(name), 4, 4, 0);
        }
        let unlabelled = ImageSet::open(dir.path(), &[]).unwrap();
        assert!(!unlabelled.labelled());
        std::fs::write(
            dir.path().join("labels.csv"),
            "file,label\na.png,3\nb.png,1\n",
        )
        .unwrap();
        let csv = ImageSet::open(dir.path(), &[]).unwrap();
        let b = csv
            .batch(0..2, &Preprocessor::plain(4), RGB, Device::Cpu)
            .unwrap();
        assert_eq!(b.labels, Some(vec![3, 1]));
        std::fs::write(
            dir.path().join("labels.json"),
            r#"{"a.png": "zebra", "b.png": "ant"}"#,
        )
        .unwrap();
        let json = ImageSet::open(dir.path(), &[]).unwrap();
        let b = json
            .batch(0..2, &Preprocessor::plain(4), RGB, Device::Cpu)
            .unwrap();
        assert_eq!(b.labels, Some(vec![1, 0]));
        assert_eq!(json.classes, ["ant", "zebra"]);
        std::fs::write(dir.path().join("labels.json"), r#"{"a.png": 0}"#).unwrap();
        let err = ImageSet::open(dir.path(), &[]).err().unwrap().to_string();
        assert!(
            err.contains("b.png") && err.contains("labels.json"),
            "{err}"
        );
    }

    #[test]
    fn images_are_resized_and_centre_cropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wide.png");
        write_png(&file, 8, 6, 0);
        let pre = Preprocessor {
            resize: Some(Resize::ShortestEdge(4)),
            resample: Resample::Nearest,
            crop: Some((4, 4)),
            ..Preprocessor::plain(4)
        };
        // 8×6 → 5×4 (shortest edge 4) → centre 4×4.
        let px = load_image(&file, &pre, RGB).unwrap();
        assert_eq!(px.len(), 48);
        let too_big = PixelShape {
            height: 8,
            width: 8,
            ..RGB
        };
        let err = load_image(
            &file,
            &Preprocessor {
                resize: None,
                crop: None,
                ..pre
            },
            too_big,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("wide.png") && err.contains("8×6"), "{err}");
    }

    #[test]
    fn bad_images_are_one_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        write_png(&good, 4, 4, 0);
        let bytes = std::fs::read(&good).unwrap();
        let truncated = dir.path().join("truncated.png");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let garbage = dir.path().join("garbage.jpg");
        std::fs::write(&garbage, b"not an image at all").unwrap();
        for file in [&truncated, &garbage] {
            let err = load_image(file, &Preprocessor::plain(4), RGB)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&file.display().to_string()), "{err}");
            assert!(err.contains("cannot decode"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hi").unwrap();
        let err = ImageSet::from_files(std::slice::from_ref(&text))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("notes.txt") && err.contains("PNG or JPEG"),
            "{err}"
        );
    }

    #[test]
    fn tensor_files_must_hold_pixels_in_the_unit_range() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, values: Vec<f32>, labels: Option<Vec<i32>>| {
            let path = dir.path().join(name);
            let px: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let lb: Vec<u8> = labels
                .iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let mut tensors = vec![(
                "pixel_values".to_string(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![1, 3, 4, 4],
                    &px,
                )
                .unwrap(),
            )];
            if let Some(l) = &labels {
                tensors.push((
                    "labels".to_string(),
                    safetensors::tensor::TensorView::new(
                        safetensors::Dtype::I32,
                        vec![l.len()],
                        &lb,
                    )
                    .unwrap(),
                ));
            }
            safetensors::serialize_to_file(tensors, None, &path).unwrap();
            path
        };
        let ok = write("ok.safetensors", vec![0.5; 48], Some(vec![2]));
        let set = ImageSet::open(&ok, &[]).unwrap();
        let b = set
            .batch(0..1, &Preprocessor::plain(4), RGB, Device::Cpu)
            .unwrap();
        assert_eq!(b.labels, Some(vec![2]));
        assert_eq!(b.names, ["pixel_values[0]"]);
        let normalised = write("norm.safetensors", vec![-1.5; 48], None);
        let err = ImageSet::open(&normalised, &[]).err().unwrap().to_string();
        assert!(
            err.contains("[0, 1]") && err.contains("norm.safetensors"),
            "{err}"
        );
        let wrong_size = PixelShape {
            height: 8,
            width: 8,
            ..RGB
        };
        let err = set
            .batch(0..1, &Preprocessor::plain(8), wrong_size, Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model takes [N, 3, 8, 8]"), "{err}");
    }
}
