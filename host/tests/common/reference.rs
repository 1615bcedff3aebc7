//! Activations computed directly with the library, for checking what plugins report.

use std::path::Path;

use loupe::data::{TextDataset, TextSpec};
use loupe::model::{LoadedModel, RunSpec};
use loupe_kernels::Device;

/// A hook's activation over every sequence of a text dataset, as a plugin run would see it.
pub struct HookOverText {
    pub loaded: LoadedModel,
    /// The dataset's sequences, in order.
    pub sequences: Vec<Vec<u32>>,
    /// The activation, row-major `[sequences · seq_len, width]`.
    pub values: Vec<f32>,
    /// Elements per position (the product of the hook's trailing axes).
    pub width: usize,
}

/// Loads `model`, reads the text dataset `spec` with its tokenizer and captures `hook` in one pass.
pub fn hook_over_text(model: &Path, spec: &TextSpec, hook: &str) -> HookOverText {
    let loaded = LoadedModel::load(model, Device::Cpu).unwrap();
    let data = TextDataset::load(spec, loaded.tokenizer.as_ref().unwrap(), loaded.bos).unwrap();
    let sequences: Vec<Vec<u32>> = (0..data.info().rows as usize)
        .map(|i| data.sequence(i).unwrap().to_vec())
        .collect();
    let gpt2 = loaded.model.as_gpt2().expect("a language model");
    let ids = gpt2.input_ids(&sequences).unwrap();
    let run = RunSpec {
        capture: vec![hook.to_string()],
        skip_logits: true,
        ..Default::default()
    };
    let act = gpt2
        .forward(&ids, &run)
        .unwrap()
        .captures
        .remove(hook)
        .unwrap();
    let width = act.dims()[2..].iter().product();
    let values = act.to_vec_f32().unwrap();
    HookOverText {
        loaded,
        sequences,
        values,
        width,
    }
}
