//! Gradients through GPT-2 against PyTorch autograd on the reference model
//! (../shared/fixtures/gpt2-ref/reference_grads.safetensors), and the properties a gradient API owes
//! its users: tracked and untracked passes agree, nothing returned is tracked, a replaced hook cuts the
//! gradient above it, and a vector–Jacobian product at a hook chains with the gradient there.

mod common;

use common::{fixtures_dir, gpt2_reference_grads, grad_mismatch, read_safetensors};
use loupe::model::{Gpt2, GradSpec, Intervention, InterventionAction, Objective, RunSpec};
use loupe_kernels::{Device, StopSignal, Tensor};

fn reference_ids(model: &Gpt2) -> Tensor {
    let reference = read_safetensors(&fixtures_dir().join("gpt2-ref/reference.safetensors"));
    let ids = &reference["input_ids"];
    let (b, t) = (ids.shape[0], ids.shape[1]);
    let batch: Vec<Vec<u32>> = (0..b)
        .map(|i| {
            ids.i32s[i * t..(i + 1) * t]
                .iter()
                .map(|&v| v as u32)
                .collect()
        })
        .collect();
    model.input_ids(&batch).unwrap()
}

fn cross_entropy(wrt: &[&str]) -> GradSpec {
    GradSpec {
        objective: Objective::CrossEntropy { labels: None },
        wrt: wrt.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn loss_input_and_every_parameter_gradient_match_pytorch() {
    grads_match_on(Device::Cpu);
}

#[test]
fn loss_input_and_every_parameter_gradient_match_pytorch_on_cuda() {
    if let Some(gpu) = common::cuda_or_skip() {
        grads_match_on(gpu);
    }
}

fn grads_match_on(device: Device) {
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), device).unwrap();
    let ids = reference_ids(&model);
    let out = model
        .forward_with_grad(
            &ids,
            &RunSpec::default(),
            &cross_entropy(&["input", "*.weight", "*.bias"]),
            &StopSignal::never(),
        )
        .unwrap();
    let (loss, reference) = gpt2_reference_grads();
    assert!(
        (out.value - loss).abs() <= 1e-5 * loss.abs(),
        "summed loss {} vs {loss}",
        out.value
    );
    let mut checked = 0;
    for (name, expected) in &reference {
        let g = out
            .grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.dims(), expected.shape.as_slice(), "shape of {name}");
        assert_eq!(g.device(), device);
        assert!(!g.is_tracked(), "{name}: gradients come back detached");
        if let Some((i, a, e)) = grad_mismatch(&g.to_vec_f32().unwrap(), &expected.f32s) {
            panic!("gradient of {name}: element {i} is {a}, PyTorch {e}");
        }
        checked += 1;
    }
    // inputs_embeds, wte, wpe, ln_f × 2 and 12 per block.
    assert_eq!(
        checked,
        1 + 2 + 2 + 2 * 12,
        "every fixture gradient was compared"
    );
    assert_eq!(out.grads.len(), checked, "nothing else was returned");
}

#[test]
fn a_tracked_pass_gives_the_untracked_logits_and_captures_and_returns_nothing_tracked() {
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), Device::Cpu).unwrap();
    let ids = reference_ids(&model);
    let spec = RunSpec {
        capture: vec![
            "blocks.*.hook_resid_post".into(),
            "blocks.0.attn.hook_pattern".into(),
        ],
        ..Default::default()
    };
    let plain = model.forward(&ids, &spec).unwrap();
    let tracked = model
        .forward_with_grad(
            &ids,
            &spec,
            &cross_entropy(&["input", "blocks.1.hook_resid_mid", "h.0.attn.c_attn.weight"]),
            &StopSignal::never(),
        )
        .unwrap();
    let (a, b) = (plain.logits.unwrap(), tracked.run.logits.unwrap());
    assert!(!b.is_tracked());
    assert_eq!(
        a.to_vec_f32().unwrap(),
        b.to_vec_f32().unwrap(),
        "same logits, bit for bit"
    );
    assert_eq!(
        plain.captures.keys().collect::<Vec<_>>(),
        tracked.run.captures.keys().collect::<Vec<_>>(),
        "the captures asked for, and only those"
    );
    for (name, t) in &tracked.run.captures {
        assert!(!t.is_tracked(), "capture {name} is detached");
        assert_eq!(
            t.to_vec_f32().unwrap(),
            plain.captures[name].to_vec_f32().unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        tracked.grads["blocks.1.hook_resid_mid"].dims(),
        &[2, 11, 64]
    );
}

#[test]
fn replacing_a_hook_cuts_the_gradient_above_it() {
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), Device::Cpu).unwrap();
    let ids = reference_ids(&model);
    let patch = Tensor::zeros([2, 11, 64], Device::Cpu).unwrap();
    let spec = RunSpec {
        interventions: vec![Intervention {
            hook: "blocks.0.hook_resid_post".into(),
            action: InterventionAction::Replace(patch),
            heads: None,
            positions: None,
        }],
        ..Default::default()
    };
    let out = model
        .forward_with_grad(
            &ids,
            &spec,
            &cross_entropy(&["input", "h.0.mlp.c_fc.weight", "h.1.mlp.c_fc.weight"]),
            &StopSignal::never(),
        )
        .unwrap();
    let norm = |name: &str| {
        out.grads[name]
            .to_vec_f32()
            .unwrap()
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
    };
    assert_eq!(
        norm("input"),
        0.0,
        "the embeddings feed only the replaced stream"
    );
    assert_eq!(
        norm("h.0.mlp.c_fc.weight"),
        0.0,
        "block 0 is above the replacement"
    );
    assert!(norm("h.1.mlp.c_fc.weight") > 0.0, "block 1 is below it");
}

#[test]
fn a_cotangent_at_a_hook_chains_with_the_gradient_there() {
    // d loss/d input = J(hook ← input)ᵀ · d loss/d hook: seeding the hook with the loss's gradient
    // there must give the loss's gradient at the input, and the objective ⟨hook, g⟩.
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), Device::Cpu).unwrap();
    let ids = reference_ids(&model);
    let hook = "blocks.1.hook_resid_pre";
    let full = model
        .forward_with_grad(
            &ids,
            &RunSpec::default(),
            &cross_entropy(&["input", hook]),
            &StopSignal::never(),
        )
        .unwrap();
    let at_hook = full.grads[hook].clone();
    let vjp = model
        .forward_with_grad(
            &ids,
            &RunSpec {
                skip_logits: true,
                ..Default::default()
            },
            &GradSpec {
                objective: Objective::Cotangent {
                    at: hook.into(),
                    direction: at_hook,
                },
                wrt: vec!["input".into()],
            },
            &StopSignal::never(),
        )
        .unwrap();
    assert!(
        vjp.run.logits.is_none(),
        "the pass stopped at the objective's hook"
    );
    let (a, e) = (
        vjp.grads["input"].to_vec_f32().unwrap(),
        full.grads["input"].to_vec_f32().unwrap(),
    );
    if let Some((i, a, e)) = grad_mismatch(&a, &e) {
        panic!("input gradient through the hook: element {i} is {a}, direct {e}");
    }
}

#[test]
fn bad_gradient_requests_name_what_is_wrong() {
    let model = Gpt2::load(&fixtures_dir().join("gpt2-ref"), Device::Cpu).unwrap();
    let ids = reference_ids(&model);
    let run = |grad: GradSpec| {
        model
            .forward_with_grad(&ids, &RunSpec::default(), &grad, &StopSignal::never())
            .unwrap_err()
            .to_string()
    };
    let err = run(cross_entropy(&["blocks.0.hook_resid_prex"]));
    assert!(
        err.contains("wrt `blocks.0.hook_resid_prex` names no hook or weight"),
        "{err}"
    );
    assert!(err.contains("blocks.0.hook_resid_pre"), "{err}");
    assert!(run(cross_entropy(&[])).contains("nothing to differentiate by"));
    let labels = Tensor::from_vec_i32(vec![7; 21], [21], Device::Cpu).unwrap();
    let err = run(GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(labels),
        },
        wrt: vec!["input".into()],
    });
    assert!(err.contains("21 labels for 22 predictions"), "{err}");
    let labels = Tensor::from_vec_i32(vec![300; 22], [2, 11], Device::Cpu).unwrap();
    let err = run(GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(labels),
        },
        wrt: vec!["input".into()],
    });
    assert!(
        err.contains("label 300 (prediction 0) is out of range"),
        "{err}"
    );
    let err = run(GradSpec {
        objective: Objective::Cotangent {
            at: "blocks.0.hook_mlp_out".into(),
            direction: Tensor::zeros([2, 11, 3], Device::Cpu).unwrap(),
        },
        wrt: vec!["input".into()],
    });
    assert!(
        err.contains("the direction at `blocks.0.hook_mlp_out` has shape"),
        "{err}"
    );
    let err = run(GradSpec {
        objective: Objective::Cotangent {
            at: "blocks.0.hook_mlp_outt".into(),
            direction: Tensor::zeros([2, 11, 64], Device::Cpu).unwrap(),
        },
        wrt: vec!["input".into()],
    });
    assert!(
        err.contains("unknown hook `blocks.0.hook_mlp_outt`"),
        "{err}"
    );
}
