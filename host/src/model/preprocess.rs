//! `preprocessor_config.json` of a Hugging Face image model: how an image becomes the model's input.
//!
//! loupe splits it in two. The geometry (resize, centre crop) is applied when an image is loaded,
//! giving pixels in [0, 1]; the rescale and the mean/std normalisation are the first step of the
//! model's forward pass ([`Preprocessor::normalization`]), so gradients are in [0, 1] pixel space.

use std::path::Path;

use serde::Deserialize;

use super::{ModelError, VitConfig};

/// The resampling filter of a resize (PIL's codes in `resample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

impl Resample {
    fn from_pil(code: u32) -> Result<Self, String> {
        match code {
            0 => Ok(Resample::Nearest),
            1 => Ok(Resample::Lanczos),
            2 => Ok(Resample::Bilinear),
            3 => Ok(Resample::Bicubic),
            other => Err(format!(
                "`resample` {other} is not supported: use 0 (nearest), 1 (lanczos), 2 (bilinear) or 3 (bicubic)"
            )),
        }
    }
}

/// The size an image is resized to before any crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Exactly `height × width`.
    Exact { height: usize, width: usize },
    /// The shorter side to this length, keeping the aspect ratio.
    ShortestEdge(usize),
}

/// How images become pixels for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    pub resize: Option<Resize>,
    pub resample: Resample,
    /// Centre crop to `(height, width)`.
    pub crop: Option<(usize, usize)>,
    /// What Hugging Face multiplies 8-bit values by before normalising (`rescale_factor`, or 1).
    pub rescale_factor: f32,
    /// Per-channel `(mean, std)`, when `do_normalize`.
    pub mean_std: Option<(Vec<f32>, Vec<f32>)>,
    /// Whether the settings came from a `preprocessor_config.json` (otherwise: resize to the model's
    /// size, no normalisation).
    pub from_file: bool,
}

impl Preprocessor {
    /// With no `preprocessor_config.json`: resize to the model's image size, pixels fed as they are.
    pub fn plain(size: usize) -> Self {
        Preprocessor {
            resize: Some(Resize::Exact {
                height: size,
                width: size,
            }),
            resample: Resample::Bilinear,
            crop: None,
            rescale_factor: 1.0 / 255.0,
            mean_std: None,
            from_file: false,
        }
    }

    /// Reads `dir/preprocessor_config.json` if it exists, checked against the model's image size.
    pub fn load(dir: &Path, config: &VitConfig) -> Result<Self, ModelError> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::plain(config.image_size));
        }
        super::read_json_file(&path, |text| Self::from_json(text, config))
    }

    pub fn from_json(text: &str, config: &VitConfig) -> Result<Self, String> {
        let raw: RawPreprocessor =
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let resize = match (raw.do_resize.unwrap_or(true), raw.size) {
            (false, _) => None,
            (true, None) => Some(Resize::Exact {
                height: config.image_size,
                width: config.image_size,
            }),
            (true, Some(size)) => Some(size.resize()?),
        };
        let crop = match (raw.do_center_crop.unwrap_or(false), raw.crop_size) {
            (false, _) => None,
            (
                true,
                Some(RawSize {
                    height: Some(h),
                    width: Some(w),
                    ..
                }),
            ) => Some((h, w)),
            (true, _) => {
                return Err(
                    "`do_center_crop` is set but `crop_size` has no height and width".into(),
                );
            }
        };
        let rescale_factor = match raw.do_rescale.unwrap_or(true) {
            true => raw.rescale_factor.unwrap_or(1.0 / 255.0),
            false => 1.0,
        };
        let channels = config.channels;
        let mean_std = match raw.do_normalize.unwrap_or(true) {
            false => None,
            true => {
                let (mean, std) = (
                    raw.image_mean.unwrap_or_else(|| vec![0.5; channels]),
                    raw.image_std.unwrap_or_else(|| vec![0.5; channels]),
                );
                for (key, v) in [("image_mean", &mean), ("image_std", &std)] {
                    if v.len() != channels {
                        return Err(format!(
                            "`{key}` has {} values but the model has {channels} channels",
                            v.len()
                        ));
                    }
                }
                if std.iter().any(|&s| s <= 0.0) {
                    return Err("`image_std` must be positive".into());
                }
                Some((mean, std))
            }
        };
        let pre = Preprocessor {
            resize,
            resample: Resample::from_pil(raw.resample.unwrap_or(2))?,
            crop,
            rescale_factor,
            mean_std,
            from_file: true,
        };
        let made = match (pre.crop, pre.resize) {
            (Some(crop), _) => Some(crop),
            (None, Some(Resize::Exact { height, width })) => Some((height, width)),
            (None, Some(Resize::ShortestEdge(_))) => {
                return Err("`size.shortest_edge` without a centre crop gives images of any aspect ratio; set `do_center_crop` and `crop_size`".into());
            }
            // Images must then come at the model's size; checked as each is loaded.
            (None, None) => None,
        };
        let size = config.image_size;
        if let Some((h, w)) = made.filter(|&hw| hw != (size, size)) {
            return Err(format!(
                "the preprocessor makes {h}×{w} images but config.json's image_size is {size}"
            ));
        }
        Ok(pre)
    }

    /// The normalisation as `x · scale + shift` per channel, for `x` in [0, 1]: Hugging Face
    /// normalises `(u8 · rescale_factor − mean) / std` and `u8 = 255 · x`. `None` when it is the
    /// identity.
    pub fn normalization(&self, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let gain = 255.0 * self.rescale_factor;
        let (mean, std) = match &self.mean_std {
            Some((m, s)) => (m.clone(), s.clone()),
            None if (gain - 1.0).abs() < 1e-6 => return None,
            None => (vec![0.0; channels], vec![1.0; channels]),
        };
        let scale = std.iter().map(|s| gain / s).collect();
        let shift = mean.iter().zip(&std).map(|(m, s)| -m / s).collect();
        Some((scale, shift))
    }
}

/// `(height, width)` with the shorter side scaled to `edge`, rounding the other as PIL does.
pub fn shortest_edge(height: usize, width: usize, edge: usize) -> (usize, usize) {
    if height <= width {
        (edge, (width * edge) / height.max(1))
    } else {
        ((height * edge) / width.max(1), edge)
    }
}

#[derive(Deserialize)]
struct RawPreprocessor {
    do_resize: Option<bool>,
    size: Option<RawSize>,
    resample: Option<u32>,
    do_center_crop: Option<bool>,
    crop_size: Option<RawSize>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f32>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct RawSize {
    height: Option<usize>,
    width: Option<usize>,
    shortest_edge: Option<usize>,
}

impl RawSize {
    fn resize(self) -> Result<Resize, String> {
        match self {
            RawSize {
                height: Some(height),
                width: Some(width),
                ..
            } => Ok(Resize::Exact { height, width }),
            RawSize {
                shortest_edge: Some(edge),
                ..
            } => Ok(Resize::ShortestEdge(edge)),
            _ => Err("`size` needs `height` and `width`, or `shortest_edge`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vit32() -> VitConfig {
        VitConfig::from_json(
            r#"{"architectures":["ViTForImageClassification"],"model_type":"vit","hidden_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"image_size":32,
            "patch_size":8,"num_labels":2}"#,
        )
        .unwrap()
    }

    #[test]
    fn deit_processor_resizes_crops_and_normalises() {
        let text = r#"{"crop_size":{"height":32,"width":32},"do_center_crop":true,"do_normalize":true,
            "do_rescale":true,"do_resize":true,"image_mean":[0.485,0.456,0.406],
            "image_std":[0.229,0.224,0.225],"resample":3,"rescale_factor":0.00392156862745098,
            "size":{"height":36,"width":36}}"#;
        let p = Preprocessor::from_json(text, &vit32()).unwrap();
        assert_eq!(
            p.resize,
            Some(Resize::Exact {
                height: 36,
                width: 36
            })
        );
        assert_eq!(p.resample, Resample::Bicubic);
        let (scale, shift) = p.normalization(3).unwrap();
        // x = 1 maps to (1 − mean) / std.
        assert!((scale[0] + shift[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    }

    #[test]
    fn no_normalisation_is_the_identity() {
        assert_eq!(Preprocessor::plain(32).normalization(3), None);
        let text = r#"{"do_normalize":false,"size":{"height":32,"width":32}}"#;
        assert_eq!(
            Preprocessor::from_json(text, &vit32())
                .unwrap()
                .normalization(3),
            None
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let wrong_size = r#"{"size":{"height":64,"width":64}}"#;
        let err = Preprocessor::from_json(wrong_size, &vit32()).unwrap_err();
        assert!(err.contains("image_size is 32"), "{err}");
        let mean = r#"{"image_mean":[0.5],"image_std":[0.5,0.5,0.5]}"#;
        assert!(
            Preprocessor::from_json(mean, &vit32())
                .unwrap_err()
                .contains("image_mean")
        );
        let resample = r#"{"resample":4}"#;
        assert!(
            Preprocessor::from_json(resample, &vit32())
                .unwrap_err()
                .contains("resample")
        );
    }
}
