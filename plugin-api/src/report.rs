//! Logs, progress, metrics and artifacts: everything lands in the run's directory and event stream.

use crate::bindings::loupe::plugin::report as wit;
use crate::error::{Error, ErrorKind, Result};
use crate::tensor::Tensor;

pub use wit::Level;

pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

pub fn debug(message: &str) {
    wit::log(Level::Debug, message);
}

pub fn info(message: &str) {
    wit::log(Level::Info, message);
}

pub fn warn(message: &str) {
    wit::log(Level::Warn, message);
}

/// `done` of `total` units of `stage`: drives progress bars and ETAs.
pub fn progress(stage: &str, done: u64, total: u64) {
    wit::progress(stage, done, total);
}

/// One point of a metric's series.
pub fn metric(name: &str, step: u64, value: f64) {
    wit::metric(name, step, value);
}

/// Named tensors as one `.safetensors` artifact.
pub fn save_tensors(name: &str, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let raw: Vec<(String, &crate::bindings::loupe::plugin::tensor::Tensor)> =
        tensors.iter().map(|(n, t)| (n.to_string(), &t.0)).collect();
    Ok(wit::save_tensors(name, &raw)?)
}

/// Any serializable value as a `.json` artifact.
pub fn save_json<T: serde::Serialize + ?Sized>(name: &str, value: &T) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            "report.save-json",
            format!("`{name}`: {e}"),
        )
    })?;
    Ok(wit::save_json(name, &text)?)
}

/// A table as a `.csv` artifact.
pub fn save_csv(name: &str, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    Ok(wit::save_csv(name, &header, rows)?)
}

/// An f32 `[h, w]` (grey) or `[h, w, 3]` (RGB) tensor with values in [0, 1] as a `.png` artifact.
pub fn save_png(name: &str, image: &Tensor) -> Result<()> {
    Ok(wit::save_png(name, &image.0)?)
}

/// UTF-8 text as written, as a `.html` (a self-contained page), `.md`, `.txt` or `.svg` artifact.
pub fn save_text(name: &str, text: &str) -> Result<()> {
    Ok(wit::save_text(name, text)?)
}
