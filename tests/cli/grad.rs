//! `loupe grad` end to end: PyTorch's gradients from the real binary, and its bad inputs.

use super::common::{fixtures_dir, read_safetensors};
use super::{loupe, ok, reference_ids_args};

fn grad_args<'a>(model: &'a str, out: &'a str, ids: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["grad", "--model", model, "--out", out];
    args.extend(ids.iter().map(String::as_str));
    args
}

#[test]
fn grad_writes_pytorchs_input_gradient_and_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grads.safetensors");
    let model = fixtures_dir().join("gpt2-ref");
    let ids = reference_ids_args();
    let mut args = grad_args(model.to_str().unwrap(), out.to_str().unwrap(), &ids);
    args.extend(["--wrt", "input", "--wrt", "blocks.*.hook_resid_post"]);
    ok(&args);

    let written = read_safetensors(&out);
    let reference = read_safetensors(&model.join("reference_grads.safetensors"));
    // Summed over the 2 × 10 predicted tokens; the fixture holds the mean.
    let count = 20.0;
    let loss = reference["loss"].f32s[0];
    let ours = written["objective"].f32s[0] / count;
    assert!((ours - loss).abs() <= 1e-5 * loss, "loss {ours} vs {loss}");
    let expected = &reference["grad.inputs_embeds"];
    let got = &written["grad.input"];
    assert_eq!(got.shape, expected.shape);
    let scale = expected.f32s.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in got.f32s.iter().zip(&expected.f32s).enumerate() {
        let a = a / count;
        assert!(
            (a - e).abs() <= 1e-3 * e.abs().max(0.01 * scale),
            "grad.input[{i}] = {a}, PyTorch {e}"
        );
    }
    for l in 0..2 {
        assert_eq!(
            written[&format!("grad.blocks.{l}.hook_resid_post")].shape,
            [2, 11, 64]
        );
    }
    assert_eq!(written["input_ids"].shape, [2, 11]);
}

#[test]
fn a_cotangent_file_seeds_its_hook() {
    // The gradient at blocks.1.hook_resid_pre from one run, fed back as the cotangent there, gives
    // the same input gradient (the chain rule), from the binary's files alone.
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures_dir().join("gpt2-ref");
    let model = model.to_str().unwrap();
    let ids = reference_ids_args();
    let first = dir.path().join("first.safetensors");
    let mut args = grad_args(model, first.to_str().unwrap(), &ids);
    args.extend(["--wrt", "input", "--wrt", "blocks.1.hook_resid_pre"]);
    ok(&args);
    let first = read_safetensors(&first);
    let cotangent = dir.path().join("cotangent.safetensors");
    write_f32(
        &cotangent,
        "blocks.1.hook_resid_pre",
        &first["grad.blocks.1.hook_resid_pre"],
    );
    let second = dir.path().join("second.safetensors");
    let mut args = grad_args(model, second.to_str().unwrap(), &ids);
    args.extend(["--wrt", "input", "--objective", cotangent.to_str().unwrap()]);
    ok(&args);
    let second = read_safetensors(&second);
    let (a, e) = (&second["grad.input"].f32s, &first["grad.input"].f32s);
    let scale = e.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in a.iter().zip(e).enumerate() {
        assert!((a - e).abs() <= 1e-4 * scale, "grad.input[{i}]: {a} vs {e}");
    }
}

fn write_f32(path: &std::path::Path, name: &str, t: &super::common::Stored) {
    let bytes: Vec<u8> = t.f32s.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), &bytes)
            .unwrap();
    safetensors::serialize_to_file([(name, view)], None, path).unwrap();
}

#[test]
fn bad_grad_requests_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures_dir().join("gpt2-ref");
    let model = model.to_str().unwrap();
    let out = dir.path().join("never.safetensors");
    let out = out.to_str().unwrap();
    let ids = vec!["--ids".to_string(), "5,6,7".to_string()];
    let fails = |extra: &[&str]| {
        let mut args = grad_args(model, out, &ids);
        args.extend(extra);
        let run = loupe(&args);
        assert!(!run.status.success(), "{extra:?} should fail");
        let err = String::from_utf8_lossy(&run.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    };
    let err = fails(&["--wrt", "inptu"]);
    assert!(
        err.contains("wrt `inptu` names no hook or weight") && err.contains("`input`"),
        "{err}"
    );
    let err = fails(&["--wrt", "input", "--labels", "1,2"]);
    assert!(
        err.contains("sequence 0 has 3 tokens but 2 labels"),
        "{err}"
    );
    let err = fails(&["--wrt", "input", "--objective", "cross-entropi"]);
    assert!(
        err.contains("neither `cross-entropy` nor an existing safetensors file"),
        "{err}"
    );
    let wrong = dir.path().join("wrong.safetensors");
    write_f32(
        &wrong,
        "blocks.0.hook_mlp_out",
        &super::common::Stored {
            shape: vec![1, 3, 5],
            f32s: vec![0.0; 15],
            i32s: vec![],
        },
    );
    let err = fails(&["--wrt", "input", "--objective", wrong.to_str().unwrap()]);
    assert!(
        err.contains("the direction at `blocks.0.hook_mlp_out` has shape [1, 3, 5]"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(out).exists(),
        "a failed run writes no file"
    );
}
