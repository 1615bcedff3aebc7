//! Parity with Hugging Face transformers on the reference GPT-2 in ../shared/fixtures/gpt2-ref.

mod common;

use common::{fixtures_dir, read_safetensors, worst_mismatch};
use loupe::model::{Gpt2, RunSpec};
use loupe::tokenizer::TextTokenizer;
use loupe_kernels::{Device, Tensor};

const TOL: f32 = 1e-4;

fn reference_ids() -> (
    Vec<Vec<u32>>,
    std::collections::BTreeMap<String, common::Stored>,
) {
    let reference = read_safetensors(&fixtures_dir().join("gpt2-ref/reference.safetensors"));
    let ids = &reference["input_ids"];
    let (b, t) = (ids.shape[0], ids.shape[1]);
    let batch = (0..b)
        .map(|i| {
            ids.i32s[i * t..(i + 1) * t]
                .iter()
                .map(|&v| v as u32)
                .collect()
        })
        .collect();
    (batch, reference)
}

#[test]
fn logits_and_every_hook_match_hugging_face() {
    every_hook_matches_on(Device::Cpu);
}

/// The same parity on the GPU; without one, says it was skipped.
#[test]
fn logits_and_every_hook_match_hugging_face_on_cuda() {
    if let Some(gpu) = common::cuda_or_skip() {
        every_hook_matches_on(gpu);
    }
}

fn every_hook_matches_on(device: Device) {
    let (batch, reference) = reference_ids();
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), device).unwrap();
    let ids = model.input_ids(&batch).unwrap();
    let out = model
        .forward(
            &ids,
            &RunSpec {
                capture: vec!["*".into()],
                ..Default::default()
            },
        )
        .unwrap();

    let mut checked = 0;
    for (name, expected) in &reference {
        if name == "input_ids" {
            continue;
        }
        let actual: &Tensor = if name == "logits" {
            out.logits.as_ref().expect("logits")
        } else {
            out.captures
                .get(name)
                .unwrap_or_else(|| panic!("hook {name} was not captured"))
        };
        assert_eq!(actual.dims(), expected.shape.as_slice(), "shape of {name}");
        assert_eq!(actual.device(), device, "{name} computed on {device}");
        if let Some((i, a, e)) = worst_mismatch(&actual.to_vec_f32().unwrap(), &expected.f32s, TOL)
        {
            panic!("{name}: element {i} is {a}, reference {e}");
        }
        checked += 1;
    }
    // logits + 2 embeddings + 14 hooks per block × 2 blocks + ln_final
    assert_eq!(checked, 1 + 2 + 28 + 1);
    assert_eq!(out.captures.len(), model.hook_names().len());
}

#[test]
fn stopping_early_gives_the_same_activations() {
    let (batch, reference) = reference_ids();
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), Device::Cpu).unwrap();
    let ids = model.input_ids(&batch).unwrap();
    let spec = RunSpec {
        capture: vec!["blocks.0.hook_attn_out".into()],
        skip_logits: true,
        ..Default::default()
    };
    let out = model.forward(&ids, &spec).unwrap();
    assert!(
        out.logits.is_none(),
        "the pass should stop before the unembedding"
    );
    assert_eq!(
        out.captures.keys().collect::<Vec<_>>(),
        vec!["blocks.0.hook_attn_out"]
    );
    let actual = out.captures["blocks.0.hook_attn_out"].to_vec_f32().unwrap();
    assert!(worst_mismatch(&actual, &reference["blocks.0.hook_attn_out"].f32s, TOL).is_none());
}

#[test]
fn tokenizer_ids_equal_the_reference_library() {
    let dir = fixtures_dir().join("gpt2-ref");
    let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("tokenizer_reference.json")).unwrap(),
    )
    .unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tokenizer.encode(text).unwrap(), expected, "ids of {text:?}");
    }
}
