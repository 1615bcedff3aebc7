//! Helpers shared by the host's integration tests.
#![allow(dead_code)]

pub mod planted;
pub mod plugins;
pub mod reference;

use std::collections::BTreeMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

/// `../shared/fixtures` beside the checkout (or `$LOUPE_FIXTURES`). The fixtures are the ground truth,
/// so their absence fails the test rather than skipping it.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("LOUPE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    assert!(
        dir.join("gpt2-ref").is_dir(),
        "reference fixtures not found at {}; set LOUPE_FIXTURES to the shared/fixtures directory",
        dir.display()
    );
    dir
}

/// A tensor read from a safetensors file, widened to f64-free plain vectors.
#[derive(Debug, Clone)]
pub struct Stored {
    pub shape: Vec<usize>,
    pub f32s: Vec<f32>,
    pub i32s: Vec<i32>,
}

pub fn read_safetensors(path: &std::path::Path) -> BTreeMap<String, Stored> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let (f32s, i32s) = match view.dtype() {
                Dtype::F32 => (
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                    vec![],
                ),
                Dtype::I32 => (
                    vec![],
                    data.chunks_exact(4)
                        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => (
                    vec![],
                    data.chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as i32)
                        .collect(),
                ),
                Dtype::U8 => (vec![], data.iter().map(|&b| i32::from(b)).collect()),
                other => panic!("unexpected dtype {other:?} for {name}"),
            };
            (
                name,
                Stored {
                    shape: view.shape().to_vec(),
                    f32s,
                    i32s,
                },
            )
        })
        .collect()
}

/// Largest violation of `|a - e| <= tol * max(1, |e|)`, as (index, actual, expected), if any.
pub fn worst_mismatch(actual: &[f32], expected: &[f32], tol: f32) -> Option<(usize, f32, f32)> {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    actual
        .iter()
        .zip(expected)
        .enumerate()
        // Written so that a NaN on either side counts as a mismatch.
        .filter(|(_, (a, e))| !(*a - *e).abs().le(&(tol * e.abs().max(1.0))))
        .max_by(|x, y| (x.1.0 - x.1.1).abs().total_cmp(&(y.1.0 - y.1.1).abs()))
        .map(|(i, (a, e))| (i, *a, *e))
}

/// Relative tolerance on gradients against PyTorch, with a floor at 1 % of the tensor's largest entry
/// so that entries near zero are judged on the tensor's scale.
pub const GRAD_TOL: f32 = 1e-3;

/// The worst gradient entry outside [`GRAD_TOL`], as (index, actual, expected).
pub fn grad_mismatch(actual: &[f32], expected: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    actual
        .iter()
        .zip(expected)
        .enumerate()
        // Written so that a NaN on either side counts as a mismatch.
        .filter(|(_, (a, e))| !(*a - *e).abs().le(&(GRAD_TOL * e.abs().max(0.01 * scale))))
        .max_by(|x, y| (x.1.0 - x.1.1).abs().total_cmp(&(y.1.0 - y.1.1).abs()))
        .map(|(i, (a, e))| (i, *a, *e))
}

/// PyTorch's gradients of the summed next-token cross-entropy on gpt2-ref's reference ids, under
/// loupe's names (`input`, `wte.weight`, `h.0.attn.c_attn.weight`, ...), with the summed loss.
///
/// The fixture holds the mean over the 2 × 10 predicted tokens, so everything is scaled back to the
/// sum. It fed `inputs_embeds` to the model as a leaf of its own, so its tied `wte` gradient holds only
/// the unembedding's share; the whole gradient adds the embedding's: each token's `inputs_embeds`
/// gradient row, summed into that token's row of the table.
pub fn gpt2_reference_grads() -> (f32, BTreeMap<String, Stored>) {
    const PREDICTED: f32 = 20.0;
    let dir = fixtures_dir().join("gpt2-ref");
    let ids = read_safetensors(&dir.join("reference.safetensors"))["input_ids"].clone();
    let stored = read_safetensors(&dir.join("reference_grads.safetensors"));
    let loss = stored["loss"].f32s[0] * PREDICTED;
    let mut grads: BTreeMap<String, Stored> = stored
        .into_iter()
        .filter_map(|(name, mut t)| {
            let name = name.strip_prefix("grad.")?;
            let name = match name {
                "inputs_embeds" => "input",
                other => other.strip_prefix("transformer.").unwrap_or(other),
            };
            t.f32s.iter_mut().for_each(|v| *v *= PREDICTED);
            Some((name.to_string(), t))
        })
        .collect();
    let by_position = grads["input"].f32s.clone();
    let wte = grads
        .get_mut("wte.weight")
        .expect("the fixture has wte's gradient");
    let d = wte.shape[1];
    for (pos, &id) in ids.i32s.iter().enumerate() {
        for j in 0..d {
            wte.f32s[id as usize * d + j] += by_position[pos * d + j];
        }
    }
    (loss, grads)
}

/// GPU 0 when a usable CUDA device is there; otherwise `None` after saying the test was skipped (and
/// a panic when `LOUPE_REQUIRE_GPU=1` says a GPU must be there).
pub fn cuda_or_skip() -> Option<loupe_kernels::Device> {
    if let Some(why) = loupe_kernels::cuda::unavailable_reason(0) {
        if std::env::var_os("LOUPE_REQUIRE_GPU").is_some_and(|v| v == "1") {
            panic!("LOUPE_REQUIRE_GPU=1 but no usable CUDA device: {why}");
        }
        eprintln!("skipped: no usable CUDA device ({why})");
        return None;
    }
    Some(loupe_kernels::Device::Cuda(0))
}

/// The LST reference's `x0` and `y_s` (on vit-ref) as an image dataset file `x0.safetensors` in `dir`:
/// `pixel_values` `[4, 3, 32, 32]` and `labels`.
pub fn write_lst_pixels(dir: &std::path::Path) -> PathBuf {
    let lst = read_safetensors(&fixtures_dir().join("lst-ref/lst_reference.safetensors"));
    let x0: Vec<u8> = lst["x0"]
        .f32s
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let y: Vec<u8> = lst["y_s"]
        .i32s
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = dir.join("x0.safetensors");
    let view = |dtype, shape: Vec<usize>, data| {
        safetensors::tensor::TensorView::new(dtype, shape, data).unwrap()
    };
    let labels = vec![lst["y_s"].i32s.len()];
    safetensors::serialize_to_file(
        [
            (
                "pixel_values",
                view(Dtype::F32, lst["x0"].shape.clone(), &x0),
            ),
            ("labels", view(Dtype::I32, labels, &y)),
        ],
        None,
        &path,
    )
    .unwrap();
    path
}
