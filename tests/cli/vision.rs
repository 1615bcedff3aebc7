//! Vision models from the real binary: `loupe classify` on the trained digits ViT, `loupe grad` on the
//! reference DeiT's pixels, `models inspect` and `models random` for ViT and DeiT, and bad inputs.

use super::common::{
    fixtures_dir, grad_mismatch, read_safetensors, worst_mismatch, write_lst_pixels,
};
use super::{loupe, ok};

#[test]
fn classify_reads_a_labelled_folder_and_reports_accuracy() {
    let digits = fixtures_dir().join("vit-digits");
    let stdout = ok(&[
        "classify",
        "--model",
        digits.to_str().unwrap(),
        "--images",
        digits.join("images").to_str().unwrap(),
        "--labels-file",
        digits.join("labels.json").to_str().unwrap(),
        "--top",
        "2",
    ]);
    // The fixture's README: 49 of these 50 are classified correctly, 2_035.png as a 1.
    assert!(
        stdout.contains("top-1 accuracy: 49/50 (98.0 %)"),
        "{stdout}"
    );
    let miss = stdout
        .split("\n2_035.png")
        .nth(1)
        .expect("2_035.png is listed");
    assert!(miss.starts_with("  (label 2 2: wrong)"), "{miss}");
    let first_class = miss.lines().nth(1).unwrap();
    assert!(first_class.trim_end().ends_with(" 1  1"), "{first_class}");
}

#[test]
fn grad_on_pixels_matches_the_lst_reference() {
    // vit-ref has no preprocessor, so the stored x0 is what the model sees.
    let dir = tempfile::tempdir().unwrap();
    let lst = read_safetensors(&fixtures_dir().join("lst-ref/lst_reference.safetensors"));
    let pixels = write_lst_pixels(dir.path());
    let out = dir.path().join("grads.safetensors");
    let model = fixtures_dir().join("vit-ref");
    ok(&[
        "grad",
        "--model",
        model.to_str().unwrap(),
        "--pixels",
        pixels.to_str().unwrap(),
        "--wrt",
        "input",
        "--out",
        out.to_str().unwrap(),
    ]);
    let written = read_safetensors(&out);
    assert_eq!(written["labels"].i32s, lst["y_s"].i32s);
    assert_eq!(written["pixel_values"].shape, [4, 3, 32, 32]);
    if let Some((i, a, e)) = grad_mismatch(&written["grad.input"].f32s, &lst["grad_x0"].f32s) {
        panic!("grad.input[{i}] = {a}, the reference has {e}");
    }
}

#[test]
fn random_vision_presets_load_inspect_and_classify() {
    let dir = tempfile::tempdir().unwrap();
    for (preset, arch) in [
        ("vit-tiny", "vit (ViTForImageClassification)"),
        ("deit-tiny", "deit (DeiTForImageClassificationWithTeacher)"),
    ] {
        let model = dir.path().join(preset);
        ok(&[
            "models",
            "random",
            "--preset",
            preset,
            "--out",
            model.to_str().unwrap(),
        ]);
        let inspect = ok(&["models", "inspect", model.to_str().unwrap()]);
        assert!(
            inspect.contains(&format!("architecture: {arch}")),
            "{inspect}"
        );
        assert!(
            inspect.contains("input:        pixels [batch, 3, 32, 32]"),
            "{inspect}"
        );
        assert!(inspect.contains("blocks.1.attn.hook_pattern"), "{inspect}");
        let png = fixtures_dir().join("vit-digits/images/3_002.png");
        let stdout = ok(&[
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--images",
            png.to_str().unwrap(),
            "--top",
            "3",
        ]);
        assert_eq!(
            stdout.lines().filter(|l| l.contains(" %  ")).count(),
            3,
            "{stdout}"
        );
    }
    let deit = dir.path().join("deit-tiny");
    assert!(deit.join("preprocessor_config.json").exists());
}

#[test]
fn vision_bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let vit = fixtures_dir().join("vit-ref");
    let gpt2 = fixtures_dir().join("gpt2-ref");
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = dir.path().join("g.safetensors");
    let digit = fixtures_dir().join("vit-digits/images/3_002.png");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "classify",
                "--model",
                vit.to_str().unwrap(),
                "--images",
                broken.to_str().unwrap(),
            ],
            "broken.png: cannot decode the image",
        ),
        (
            vec![
                "classify",
                "--model",
                gpt2.to_str().unwrap(),
                "--images",
                broken.to_str().unwrap(),
            ],
            "is a language model",
        ),
        (
            vec![
                "grad",
                "--model",
                vit.to_str().unwrap(),
                "--ids",
                "1,2",
                "--wrt",
                "input",
                "--out",
                out.to_str().unwrap(),
            ],
            "give --images or --pixels, not tokens",
        ),
        (
            vec![
                "grad",
                "--model",
                vit.to_str().unwrap(),
                "--images",
                digit.to_str().unwrap(),
                "--wrt",
                "input",
                "--out",
                out.to_str().unwrap(),
            ],
            "needs labels",
        ),
        (
            vec![
                "grad",
                "--model",
                vit.to_str().unwrap(),
                "--images",
                digit.to_str().unwrap(),
                "--labels",
                "3,4",
                "--wrt",
                "input",
                "--out",
                out.to_str().unwrap(),
            ],
            "2 labels for 1 images",
        ),
        (
            vec![
                "grad",
                "--model",
                gpt2.to_str().unwrap(),
                "--pixels",
                broken.to_str().unwrap(),
                "--wrt",
                "input",
                "--out",
                out.to_str().unwrap(),
            ],
            "is a language model",
        ),
    ];
    for (args, expected) in cases {
        let run = loupe(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!out.exists(), "a failed run wrote its output");
}

#[test]
fn trace_captures_and_edits_a_vits_hooks_on_images() {
    let dir = tempfile::tempdir().unwrap();
    let digits = fixtures_dir().join("vit-digits");
    let out = dir.path().join("trace.safetensors");
    let ablated = dir.path().join("ablated.safetensors");
    let (images, labels) = (digits.join("images"), digits.join("labels.json"));
    let base = [
        "trace",
        "--model",
        digits.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--labels-file",
        labels.to_str().unwrap(),
        "--capture",
        "blocks.1.attn.hook_pattern",
    ];
    let mut args = base.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    ok(&args);
    let traced = read_safetensors(&out);
    let reference = read_safetensors(&digits.join("images_logits.safetensors"));
    assert_eq!(traced["labels"].i32s, reference["labels"].i32s);
    assert_eq!(traced["pixel_values"].shape, [50, 3, 32, 32]);
    if let Some((i, a, e)) = worst_mismatch(&traced["logits"].f32s, &reference["logits"].f32s, 1e-4)
    {
        panic!("logits[{i}] = {a}, Hugging Face has {e}");
    }
    let pattern = &traced["blocks.1.attn.hook_pattern"];
    assert_eq!(pattern.shape, [50, 4, 17, 17]);
    for row in pattern.f32s.chunks(17) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "an attention row sums to {sum}");
    }
    // Zero-ablating every head of layer 0 changes the logits.
    let mut args = base.to_vec();
    args.extend([
        "--zero",
        "blocks.0.attn.hook_z",
        "--out",
        ablated.to_str().unwrap(),
    ]);
    ok(&args);
    let edited = read_safetensors(&ablated);
    assert!(
        worst_mismatch(&edited["logits"].f32s, &reference["logits"].f32s, 1e-2).is_some(),
        "ablating layer 0's attention left the logits unchanged"
    );
}
