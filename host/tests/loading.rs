//! The checkpoint layouts found in the wild all load to the same model.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{fixtures_dir, read_safetensors, worst_mismatch};
use loupe::model::{Gpt2, RunSpec};
use loupe_kernels::Device;
use safetensors::{Dtype, tensor::TensorView};

/// Writes `tensors` (name → shape, f32 values) as one safetensors file.
fn write(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, v))| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn reference_weights() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    read_safetensors(&fixtures_dir().join("gpt2-ref/model.safetensors"))
        .into_iter()
        .map(|(n, t)| (n, (t.shape, t.f32s)))
        .collect()
}

/// A model directory holding the reference config and tokenizer; the test adds the weights.
fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixtures_dir().join("gpt2-ref").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn logits(dir: &Path) -> Vec<f32> {
    let model = Gpt2::load(dir, Device::Cpu).unwrap();
    let ids = model.input_ids(&[vec![5, 17, 250, 0, 299, 42]]).unwrap();
    model
        .forward(&ids, &RunSpec::default())
        .unwrap()
        .logits
        .unwrap()
        .to_vec_f32()
        .unwrap()
}

#[test]
fn bare_hub_layout_with_attention_buffers() {
    let reference = logits(&fixtures_dir().join("gpt2-ref"));
    let dir = model_dir();
    let mut tensors: BTreeMap<_, _> = reference_weights()
        .into_iter()
        .map(|(n, t)| (n.strip_prefix("transformer.").unwrap().to_string(), t))
        .collect();
    // The causal-mask buffers hub checkpoints carry; loupe must ignore them.
    for l in 0..2 {
        let tril: Vec<f32> = (0..32 * 32)
            .map(|i| if i % 32 <= i / 32 { 1.0 } else { 0.0 })
            .collect();
        tensors.insert(format!("h.{l}.attn.bias"), (vec![1, 1, 32, 32], tril));
        tensors.insert(format!("h.{l}.attn.masked_bias"), (vec![], vec![-1e4]));
    }
    write(&dir.path().join("model.safetensors"), &tensors);
    assert_eq!(logits(dir.path()), reference);
}

#[test]
fn sharded_checkpoint() {
    let reference = logits(&fixtures_dir().join("gpt2-ref"));
    let dir = model_dir();
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in reference_weights().into_iter().enumerate() {
        let shard = i % 2;
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        weight_map.insert(name.clone(), file.into());
        shards[shard].insert(name, t);
    }
    for (i, shard) in shards.iter().enumerate() {
        write(
            &dir.path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1)),
            shard,
        );
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    assert_eq!(logits(dir.path()), reference);
}

#[test]
fn untied_unembedding_is_used_when_present() {
    let reference = logits(&fixtures_dir().join("gpt2-ref"));
    let dir = model_dir();
    let mut tensors = reference_weights();
    let (shape, mut wte) = tensors["transformer.wte.weight"].clone();
    tensors.insert("lm_head.weight".into(), (shape.clone(), wte.clone()));
    let config = std::fs::read_to_string(dir.path().join("config.json"))
        .unwrap()
        .replace(
            "\"tie_word_embeddings\": true",
            "\"tie_word_embeddings\": false",
        );
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    write(&dir.path().join("model.safetensors"), &tensors);
    let same = logits(dir.path());
    assert!(
        worst_mismatch(&same, &reference, 1e-6).is_none(),
        "lm_head = wte gives the tied logits"
    );

    // Now make the unembedding differ: logits must follow lm_head, not wte.
    wte.iter_mut().for_each(|v| *v *= 2.0);
    tensors.insert("lm_head.weight".into(), (shape, wte));
    write(&dir.path().join("model.safetensors"), &tensors);
    let doubled = logits(dir.path());
    assert!(
        worst_mismatch(
            &doubled,
            &reference.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
            1e-5
        )
        .is_none()
    );
}
