//! Parity with Hugging Face transformers on the reference DeiT classifiers in
//! ../shared/fixtures/deit-ref (distilled, with teacher head) and deit-ref/plain: logits, the summed
//! cross-entropy, its gradient with respect to the pixels, and the hooks the reference stores.

mod common;

use common::{Stored, fixtures_dir, grad_mismatch, read_safetensors, worst_mismatch};
use loupe::model::{GradSpec, Objective, RunSpec, Vit};
use loupe_kernels::{Device, StopSignal, Tensor};

const TOL: f32 = 1e-4;

#[test]
fn distilled_deit_matches_hugging_face() {
    matches_reference("deit-ref", Device::Cpu);
}

#[test]
fn plain_deit_matches_hugging_face() {
    matches_reference("deit-ref/plain", Device::Cpu);
}

/// The same parity on the GPU; without one, says it was skipped.
#[test]
fn distilled_deit_matches_hugging_face_on_cuda() {
    if let Some(gpu) = common::cuda_or_skip() {
        matches_reference("deit-ref", gpu);
    }
}

/// The reference fed its `pixel_values` to the model as they are, but loupe normalises inside the
/// model with the directory's preprocessor. Feeding `p · std + mean` makes loupe's normalised input
/// exactly `p`; the gradient with respect to what loupe was fed is then the reference's divided by
/// `std`, channel by channel. So the normalisation is checked too, forward and backward.
fn matches_reference(dir: &str, device: Device) {
    let dir = fixtures_dir().join(dir);
    let reference = read_safetensors(&dir.join("reference.safetensors"));
    let model = Vit::load(&dir, device).unwrap();
    let (mean, std) = model
        .preprocessor
        .mean_std
        .clone()
        .expect("the DeiT fixtures' preprocessor normalises");
    let p = &reference["pixel_values"];
    let plane = p.shape[2] * p.shape[3];
    let channel = |i: usize| (i / plane) % p.shape[1];
    let fed: Vec<f32> = p
        .f32s
        .iter()
        .enumerate()
        .map(|(i, &v)| v * std[channel(i)] + mean[channel(i)])
        .collect();
    let pixels = Tensor::from_vec_f32(fed, p.shape.clone(), device).unwrap();
    let labels = &reference["labels"].i32s;
    let labels_t = Tensor::from_vec_i32(labels.clone(), [labels.len()], Device::Cpu).unwrap();
    let spec = RunSpec {
        capture: vec![
            "blocks.*.hook_resid_pre".into(),
            "blocks.*.hook_resid_post".into(),
            "blocks.*.attn.hook_pattern".into(),
            "ln_final.hook_normalized".into(),
        ],
        ..Default::default()
    };
    let grad = GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(labels_t),
        },
        wrt: vec!["input".into()],
    };
    let out = model
        .forward_with_grad(&pixels, &spec, &grad, &StopSignal::never())
        .unwrap();

    let close = |name: &str, actual: &Tensor, expected: &Stored| {
        assert_eq!(actual.dims(), expected.shape.as_slice(), "{name}: shape");
        let actual = actual.to_vec_f32().unwrap();
        if let Some((i, a, e)) = worst_mismatch(&actual, &expected.f32s, TOL) {
            panic!("{name}[{i}] = {a}, Hugging Face has {e}");
        }
    };
    close(
        "logits",
        out.run.logits.as_ref().unwrap(),
        &reference["logits"],
    );
    let loss = reference["loss_sum"].f32s[0];
    assert!(
        (out.value - loss).abs() <= TOL * loss.abs().max(1.0),
        "loss {} vs Hugging Face {loss}",
        out.value
    );
    let mut hooks = 0;
    for (name, expected) in &reference {
        if name.starts_with("blocks.") || name.starts_with("ln_final.") {
            let actual = out
                .run
                .captures
                .get(name)
                .unwrap_or_else(|| panic!("{name} not captured"));
            close(name, actual, expected);
            hooks += 1;
        }
    }
    assert_eq!(hooks, 7, "the reference stores 7 hooks");

    let expected: Vec<f32> = reference["grad.pixel_values"]
        .f32s
        .iter()
        .enumerate()
        .map(|(i, &g)| g / std[channel(i)])
        .collect();
    let actual = out.grads["input"].to_vec_f32().unwrap();
    if let Some((i, a, e)) = grad_mismatch(&actual, &expected) {
        panic!("grad.pixel_values[{i}] = {a}, Hugging Face has {e}");
    }
}

#[test]
fn tracked_and_untracked_passes_agree() {
    let dir = fixtures_dir().join("deit-ref");
    let reference = read_safetensors(&dir.join("reference.safetensors"));
    let model = Vit::load(&dir, Device::Cpu).unwrap();
    let p = &reference["pixel_values"];
    let pixels = Tensor::from_vec_f32(p.f32s.clone(), p.shape.clone(), Device::Cpu).unwrap();
    let spec = RunSpec {
        capture: vec!["*".into()],
        ..Default::default()
    };
    let plain = model
        .forward_until(&pixels, &spec, &StopSignal::never())
        .unwrap();
    let grad = GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(Tensor::from_vec_i32(vec![1, 2, 3], [3], Device::Cpu).unwrap()),
        },
        wrt: vec!["input".into(), "deit.encoder.layer.*".into()],
    };
    let tracked = model
        .forward_with_grad(&pixels, &spec, &grad, &StopSignal::never())
        .unwrap();
    assert_eq!(
        plain.logits.unwrap().to_vec_f32().unwrap(),
        tracked.run.logits.as_ref().unwrap().to_vec_f32().unwrap()
    );
    assert_eq!(plain.captures.len(), model.hook_names().len());
    for (name, t) in &plain.captures {
        assert!(
            !tracked.run.captures[name].is_tracked(),
            "{name} came back tracked"
        );
        assert_eq!(
            t.to_vec_f32().unwrap(),
            tracked.run.captures[name].to_vec_f32().unwrap(),
            "{name}"
        );
    }
    // Every encoder weight has a gradient of its own shape.
    let weights = model.weights();
    let layer_weights = weights
        .iter()
        .filter(|(n, _)| n.starts_with("deit.encoder.layer."))
        .count();
    assert_eq!(tracked.grads.len(), layer_weights + 1);
    for (name, w) in &weights {
        if let Some(g) = tracked.grads.get(name) {
            assert_eq!(g.dims(), w.dims(), "{name}");
        }
    }
}

#[test]
fn bad_pixels_and_labels_are_clear_errors() {
    let model = Vit::load(&fixtures_dir().join("deit-ref"), Device::Cpu).unwrap();
    let wrong = Tensor::zeros([1, 3, 16, 16], Device::Cpu).unwrap();
    let err = model
        .forward_until(&wrong, &RunSpec::default(), &StopSignal::never())
        .unwrap_err()
        .to_string();
    assert!(err.contains("[batch, 3, 32, 32]"), "{err}");
    let pixels = Tensor::zeros([2, 3, 32, 32], Device::Cpu).unwrap();
    let no_labels = GradSpec {
        objective: Objective::CrossEntropy { labels: None },
        wrt: vec!["input".into()],
    };
    let err = model
        .forward_with_grad(
            &pixels,
            &RunSpec::default(),
            &no_labels,
            &StopSignal::never(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs labels"), "{err}");
    let out_of_range = GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(Tensor::from_vec_i32(vec![0, 10], [2], Device::Cpu).unwrap()),
        },
        wrt: vec!["input".into()],
    };
    let err = model
        .forward_with_grad(
            &pixels,
            &RunSpec::default(),
            &out_of_range,
            &StopSignal::never(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("label 10") && err.contains("10 classes"),
        "{err}"
    );
}

/// The trained digits ViT: PNGs decoded by loupe (flat folder with labels.json, no preprocessor
/// config, so fed as they are) give Hugging Face's logits, and the labels come back in order.
#[test]
fn digits_pngs_decode_to_hugging_faces_logits() {
    use loupe::data::images::{ImageSet, PixelShape};
    use loupe::model::{InputKind, Model};
    let dir = fixtures_dir().join("vit-digits");
    let reference = read_safetensors(&dir.join("images_logits.safetensors"));
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let (labels, shape) = match model.input_kind() {
        InputKind::Pixels {
            channels,
            height,
            width,
            labels,
        } => (
            labels,
            PixelShape {
                channels,
                height,
                width,
            },
        ),
        other => panic!("a ViT takes pixels, not {other:?}"),
    };
    let Model::Vit(vit) = &model else {
        unreachable!()
    };
    let set =
        ImageSet::open_labelled(&dir.join("images"), &dir.join("labels.json"), &labels).unwrap();
    assert_eq!(set.len(), 50);
    let batch = set
        .batch(0..50, &vit.preprocessor, shape, Device::Cpu)
        .unwrap();
    assert_eq!(
        batch.labels.as_deref(),
        Some(reference["labels"].i32s.as_slice())
    );
    let out = model
        .forward_until(&batch.pixels, &RunSpec::default(), &StopSignal::never())
        .unwrap();
    let logits = out.logits.unwrap().to_vec_f32().unwrap();
    if let Some((i, a, e)) = worst_mismatch(&logits, &reference["logits"].f32s, TOL) {
        panic!("logits[{i}] = {a}, Hugging Face has {e}");
    }
}

/// vit-ref (plain ViT, no preprocessor config) against the LST reference run on it: the gradient of
/// the summed cross-entropy with respect to the pixels at `x0`, and the source confidences.
#[test]
fn vit_pixel_gradient_matches_the_lst_reference() {
    let lst = read_safetensors(&fixtures_dir().join("lst-ref/lst_reference.safetensors"));
    let model = Vit::load(&fixtures_dir().join("vit-ref"), Device::Cpu).unwrap();
    assert!(model.preprocessor.mean_std.is_none());
    let x0 = &lst["x0"];
    let pixels = Tensor::from_vec_f32(x0.f32s.clone(), x0.shape.clone(), Device::Cpu).unwrap();
    let y = lst["y_s"].i32s.clone();
    let grad = GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(Tensor::from_vec_i32(y.clone(), [y.len()], Device::Cpu).unwrap()),
        },
        wrt: vec!["input".into()],
    };
    let out = model
        .forward_with_grad(&pixels, &RunSpec::default(), &grad, &StopSignal::never())
        .unwrap();
    let g = out.grads["input"].to_vec_f32().unwrap();
    if let Some((i, a, e)) = grad_mismatch(&g, &lst["grad_x0"].f32s) {
        panic!("grad_x0[{i}] = {a}, the reference has {e}");
    }
    let probs = out
        .run
        .logits
        .unwrap()
        .softmax(-1)
        .unwrap()
        .to_vec_f32()
        .unwrap();
    let classes = probs.len() / y.len();
    let p_s = &lst["p_s"];
    for (b, &label) in y.iter().enumerate() {
        let (ours, theirs) = (
            probs[b * classes + label as usize],
            p_s.f32s[b * p_s.shape[1]],
        );
        assert!(
            (ours - theirs).abs() < TOL,
            "p_s(x0)[{b}] = {ours}, the reference has {theirs}"
        );
    }
}

/// `hook_embed` is the patch embeddings alone, as in ViT-Prisma; with the class tokens in front and
/// the position embeddings added, it gives `blocks.0.hook_resid_pre`.
#[test]
fn hook_embed_holds_the_patches_as_in_vit_prisma() {
    let dir = fixtures_dir().join("deit-ref");
    let reference = read_safetensors(&dir.join("reference.safetensors"));
    let model = Vit::load(&dir, Device::Cpu).unwrap();
    let p = &reference["pixel_values"];
    let pixels = Tensor::from_vec_f32(p.f32s.clone(), p.shape.clone(), Device::Cpu).unwrap();
    let spec = RunSpec {
        capture: vec![
            "hook_embed".into(),
            "hook_pos_embed".into(),
            "blocks.0.hook_resid_pre".into(),
        ],
        skip_logits: true,
        ..Default::default()
    };
    let out = model
        .forward_until(&pixels, &spec, &StopSignal::never())
        .unwrap();
    let embed = &out.captures["hook_embed"];
    assert_eq!(embed.dims(), [3, 16, 64], "16 patches, no class tokens");
    assert_eq!(out.captures["hook_pos_embed"].dims(), [3, 18, 64]);
    let resid = out.captures["blocks.0.hook_resid_pre"]
        .to_vec_f32()
        .unwrap();
    let pos = out.captures["hook_pos_embed"].to_vec_f32().unwrap();
    let patches = embed.to_vec_f32().unwrap();
    // Patch i sits at position i + 2 (after CLS and the distillation token).
    for b in 0..3 {
        for i in 0..16 {
            for c in 0..64 {
                let at = (b * 18 + i + 2) * 64 + c;
                let sum = patches[(b * 16 + i) * 64 + c] + pos[at];
                assert!(
                    (sum - resid[at]).abs() < 1e-6,
                    "image {b}, patch {i}, channel {c}"
                );
            }
        }
    }
    assert!(out.logits.is_none(), "the pass stopped early");
}
