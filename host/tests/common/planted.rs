//! Planted test data: a small deterministic generator and writers for experiment, activation and
//! dropped files.

use std::path::{Path, PathBuf};

/// A small deterministic generator for planted data (SplitMix64, Box–Muller).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Writes `body` to `dir/name`.
pub fn write_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// Writes `bytes` under a hidden name beside `dest` (`.name.part`), then renames it into place: how
/// files are dropped into watched directories.
pub fn drop_file(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_file_name(format!(
        ".{}.part",
        dest.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// An experiment file's text: one act-stats run named `name` on `model` over `corpus`, reading
/// `blocks.0.mlp.hook_post`.
pub fn act_stats_experiment(name: &str, model: &Path, corpus: &Path) -> String {
    format!(
        r#"
[[run]]
name = "{name}"
plugin = "act-stats"
model = "{}"
data = {{ path = "{}", seq_len = 16 }}
[run.params]
hook = "blocks.0.mlp.hook_post"
batch_size = 8
"#,
        model.display(),
        corpus.display()
    )
}

/// `rows` (row-major, `d` wide) as the f32 `activations` tensor of a `.safetensors` file.
pub fn write_activations(path: &Path, rows: &[f32], d: usize) {
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![rows.len() / d, d],
        &bytes,
    )
    .unwrap();
    safetensors::serialize_to_file([("activations", view)], None, path).unwrap();
}
