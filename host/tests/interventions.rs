//! Interventions on the reference GPT-2, checked through properties that must hold exactly.

mod common;

use common::{fixtures_dir, worst_mismatch};
use loupe::model::{Gpt2, Intervention, InterventionAction, RunOutput, RunSpec};
use loupe_kernels::{Device, Tensor};

fn model() -> Gpt2 {
    Gpt2::load(&fixtures_dir().join("gpt2-ref"), Device::Cpu).unwrap()
}

fn run(model: &Gpt2, ids: &[u32], capture: &[&str], interventions: Vec<Intervention>) -> RunOutput {
    let ids = model.input_ids(&[ids.to_vec()]).unwrap();
    let spec = RunSpec {
        capture: capture.iter().map(|s| s.to_string()).collect(),
        interventions,
        skip_logits: false,
    };
    model.forward(&ids, &spec).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec_f32().unwrap()
}

fn edit(hook: &str, action: InterventionAction) -> Intervention {
    Intervention {
        hook: hook.into(),
        action,
        heads: None,
        positions: None,
    }
}

const CLEAN: [u32; 8] = [11, 42, 7, 99, 150, 3, 280, 64];
const CORRUPT: [u32; 8] = [11, 42, 7, 12, 150, 3, 280, 64];

#[test]
fn patching_the_whole_residual_stream_transplants_the_run() {
    let m = model();
    let corrupt = run(&m, &CORRUPT, &["blocks.1.hook_resid_pre"], vec![]);
    let patched = run(
        &m,
        &CLEAN,
        &[],
        vec![edit(
            "blocks.1.hook_resid_pre",
            InterventionAction::Replace(corrupt.captures["blocks.1.hook_resid_pre"].clone()),
        )],
    );
    let (a, b) = (
        values(patched.logits.as_ref().unwrap()),
        values(corrupt.logits.as_ref().unwrap()),
    );
    assert!(
        worst_mismatch(&a, &b, 1e-6).is_none(),
        "patched logits equal the source run's"
    );
}

#[test]
fn zeroing_one_head_touches_only_that_head() {
    let m = model();
    let hooks = ["blocks.0.attn.hook_z"];
    let clean = run(&m, &CLEAN, &hooks, vec![]);
    let mut ablate = edit("blocks.0.attn.hook_z", InterventionAction::Zero);
    ablate.heads = Some(vec![2]);
    let ablated = run(&m, &CLEAN, &hooks, vec![ablate]);
    let (c, a) = (
        values(&clean.captures[hooks[0]]),
        values(&ablated.captures[hooks[0]]),
    );
    let (heads, d_head) = (4, 16);
    for (i, (cv, av)) in c.iter().zip(&a).enumerate() {
        let head = (i / d_head) % heads;
        if head == 2 {
            assert_eq!(*av, 0.0);
        } else {
            assert_eq!(cv, av, "head {head} must be untouched");
        }
    }
    assert_ne!(
        values(clean.logits.as_ref().unwrap()),
        values(ablated.logits.as_ref().unwrap())
    );
}

#[test]
fn an_edit_at_one_position_never_reaches_earlier_positions() {
    let m = model();
    let hooks = ["blocks.1.hook_resid_post"];
    let clean = run(&m, &CLEAN, &hooks, vec![]);
    let steer = Tensor::full([64], 0.5, Device::Cpu).unwrap();
    let mut add = edit("blocks.0.hook_resid_mid", InterventionAction::Add(steer));
    add.positions = Some(vec![4]);
    let steered = run(&m, &CLEAN, &hooks, vec![add]);
    let (c, s) = (
        values(&clean.captures[hooks[0]]),
        values(&steered.captures[hooks[0]]),
    );
    let d = 64;
    for pos in 0..CLEAN.len() {
        let same = c[pos * d..(pos + 1) * d] == s[pos * d..(pos + 1) * d];
        assert_eq!(
            same,
            pos < 4,
            "position {pos}: causal attention keeps earlier positions unchanged"
        );
    }
}

#[test]
fn scaling_by_one_is_the_identity_and_zeroing_the_attention_output_skips_it() {
    let m = model();
    let clean = run(&m, &CLEAN, &["blocks.0.hook_resid_pre"], vec![]);
    let identity = run(
        &m,
        &CLEAN,
        &[],
        vec![edit(
            "blocks.0.attn.hook_pattern",
            InterventionAction::Scale(1.0),
        )],
    );
    assert_eq!(
        values(clean.logits.as_ref().unwrap()),
        values(identity.logits.as_ref().unwrap())
    );

    let skipped = run(
        &m,
        &CLEAN,
        &["blocks.0.hook_resid_mid"],
        vec![edit("blocks.0.hook_attn_out", InterventionAction::Zero)],
    );
    assert_eq!(
        values(&skipped.captures["blocks.0.hook_resid_mid"]),
        values(&clean.captures["blocks.0.hook_resid_pre"]),
        "resid_mid = resid_pre + 0"
    );
}

#[test]
fn interventions_at_unknown_hooks_are_errors() {
    let m = model();
    let ids = m.input_ids(&[CLEAN.to_vec()]).unwrap();
    let spec = RunSpec {
        interventions: vec![edit("blocks.0.hook_mlp", InterventionAction::Zero)],
        ..Default::default()
    };
    let err = m.forward(&ids, &spec).unwrap_err().to_string();
    assert!(err.contains("unknown hook `blocks.0.hook_mlp`"), "{err}");
}
