//! Bad input gives one clear line naming the file, tensor or hook at fault, and a non-zero exit code.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures_dir;

/// Runs loupe, expecting failure; returns its single line of stderr.
#[track_caller]
fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "loupe {args:?} should fail");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code for {args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic on {args:?}: {stderr}");
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "expected one line, got: {stderr}");
    assert!(line.starts_with("loupe: "), "{line}");
    line.to_string()
}

/// A copy of the reference model directory to break.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures_dir().join("gpt2-ref").join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

fn trace(dir: &Path, extra: &[&str]) -> String {
    let out = dir.parent().unwrap().join("out.safetensors");
    let mut args = vec![
        "trace",
        "--model",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if !extra.iter().any(|a| *a == "--ids" || *a == "--text") {
        args.extend(["--ids", "1,2,3"]);
    }
    args.extend(extra);
    fails(&args)
}

/// Rewrites the safetensors header of `file` through `edit`, keeping the data bytes.
fn edit_header(file: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(file, out).unwrap();
}

#[test]
fn missing_model_directory() {
    let line = fails(&[
        "trace",
        "--model",
        "/nonexistent/model",
        "--ids",
        "1",
        "--out",
        "/tmp/x.safetensors",
    ]);
    assert!(
        line.contains("/nonexistent/model") && line.contains("not a directory"),
        "{line}"
    );
}

#[test]
fn missing_config() {
    let (_tmp, dir) = model_copy();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let line = trace(&dir, &[]);
    assert!(line.contains("config.json: not found"), "{line}");
}

#[test]
fn malformed_config() {
    let (_tmp, dir) = model_copy();
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"gpt2\", n_embd").unwrap();
    let line = trace(&dir, &[]);
    assert!(
        line.contains("config.json: malformed JSON") && line.contains("line 1"),
        "{line}"
    );
}

#[test]
fn unknown_architecture() {
    let (_tmp, dir) = model_copy();
    let config = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"gpt2\"", "\"bert\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
    let line = trace(&dir, &[]);
    assert!(
        line.contains("config.json: unknown architecture (model_type \"bert\")"),
        "{line}"
    );
}

#[test]
fn truncated_weights() {
    let (_tmp, dir) = model_copy();
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let line = trace(&dir, &[]);
    assert!(
        line.contains("model.safetensors: not a valid safetensors file"),
        "{line}"
    );
    assert!(line.contains("truncated"), "{line}");
}

#[test]
fn header_lying_about_a_shape() {
    let (_tmp, dir) = model_copy();
    edit_header(&dir.join("model.safetensors"), |h| {
        h["transformer.h.0.mlp.c_fc.weight"]["shape"] = serde_json::json!([64, 300]);
    });
    let line = trace(&dir, &[]);
    assert!(
        line.contains("model.safetensors: not a valid safetensors file"),
        "{line}"
    );
}

#[test]
fn header_lying_about_offsets() {
    let (_tmp, dir) = model_copy();
    edit_header(&dir.join("model.safetensors"), |h| {
        let entry = &mut h["transformer.ln_f.bias"];
        let start = entry["data_offsets"][0].as_u64().unwrap();
        entry["data_offsets"] = serde_json::json!([start + 1_000_000, start + 1_000_256]);
    });
    let line = trace(&dir, &[]);
    assert!(
        line.contains("model.safetensors: not a valid safetensors file"),
        "{line}"
    );
}

#[test]
fn shape_that_disagrees_with_config() {
    let (_tmp, dir) = model_copy();
    // Same byte count, so the file is valid; only the model can tell it is wrong.
    edit_header(&dir.join("model.safetensors"), |h| {
        h["transformer.h.1.attn.c_attn.weight"]["shape"] = serde_json::json!([192, 64]);
    });
    let line = trace(&dir, &[]);
    assert!(
        line.contains("tensor `h.1.attn.c_attn.weight` has shape [192, 64]"),
        "{line}"
    );
    assert!(line.contains("[64, 192]"), "{line}");
}

#[test]
fn missing_tensor() {
    let (_tmp, dir) = model_copy();
    // Rename rather than drop, so the file stays valid.
    edit_header(&dir.join("model.safetensors"), |h| {
        let v = h.remove("transformer.ln_f.bias").unwrap();
        h.insert("transformer.ln_f.unused".into(), v);
    });
    let line = trace(&dir, &[]);
    assert!(
        line.contains("model.safetensors: tensor `ln_f.bias` is missing"),
        "{line}"
    );
}

#[test]
fn token_id_beyond_vocab() {
    let (_tmp, dir) = model_copy();
    let line = trace(&dir, &["--ids", "1,2,300"]);
    assert!(
        line.contains("token id 300") && line.contains("vocab_size is 300"),
        "{line}"
    );
}

#[test]
fn sequence_longer_than_context() {
    let (_tmp, dir) = model_copy();
    let ids = vec!["5"; 33].join(",");
    let line = trace(&dir, &["--ids", &ids]);
    assert!(
        line.contains("33 tokens") && line.contains("n_positions = 32"),
        "{line}"
    );
}

#[test]
fn unknown_hook_suggests_close_names() {
    let (_tmp, dir) = model_copy();
    let line = trace(&dir, &["--capture", "blocks.0.hook_resd_pre"]);
    assert!(
        line.contains("unknown hook `blocks.0.hook_resd_pre`"),
        "{line}"
    );
    assert!(line.contains("`blocks.0.hook_resid_pre`"), "{line}");
    let line = trace(&dir, &["--capture", "blocks.7.*"]);
    assert!(line.contains("`blocks.7.*` matches no hook"), "{line}");
}

#[test]
fn malformed_ids_and_unequal_batches() {
    let (_tmp, dir) = model_copy();
    let line = trace(&dir, &["--ids", "1,x,3"]);
    assert!(line.contains("`x` is not a token id"), "{line}");
    let line = trace(&dir, &["--ids", "1,2,3", "--ids", "1,2"]);
    assert!(
        line.contains("sequence 1 has 2 tokens but sequence 0 has 3"),
        "{line}"
    );
}

#[test]
fn missing_tokenizer_for_text() {
    let (_tmp, dir) = model_copy();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let line = trace(&dir, &["--text", "hello"]);
    assert!(line.contains("tokenizer.json: not found"), "{line}");
}

#[test]
fn unavailable_device() {
    let (_tmp, dir) = model_copy();
    // No machine has 4096 GPUs: refused in one line naming the device and the way out.
    let line = trace(&dir, &["--device", "cuda:4096"]);
    assert!(
        line.contains("--device cuda:4096: not available") && line.contains("--device cpu"),
        "{line}"
    );
    // Plain `cuda` is refused the same way where there is no usable GPU.
    if loupe_kernels::cuda::unavailable_reason(0).is_some() {
        let line = trace(&dir, &["--device", "cuda"]);
        assert!(line.contains("--device cuda:0: not available"), "{line}");
    }
}

#[test]
fn malformed_edits() {
    let (_tmp, dir) = model_copy();
    let line = trace(&dir, &["--zero", "blocks.0.attn.hook_z:head=1"]);
    assert!(
        line.contains("--zero `blocks.0.attn.hook_z:head=1`: unknown key `head`"),
        "{line}"
    );
    let line = trace(&dir, &["--scale", "blocks.0.hook_attn_out"]);
    assert!(line.contains("add :by=FACTOR"), "{line}");
    let line = trace(&dir, &["--zero", "blocks.0.hook_attn_ot"]);
    assert!(
        line.contains("unknown hook `blocks.0.hook_attn_ot`")
            && line.contains("`blocks.0.hook_attn_out`"),
        "{line}"
    );
    let line = trace(&dir, &["--zero", "blocks.0.hook_attn_out:heads=1"]);
    assert!(line.contains("no head axis"), "{line}");
    let line = trace(&dir, &["--zero", "blocks.0.attn.hook_z:heads=9"]);
    assert!(
        line.contains("head 9 is out of range (the hook has 4)"),
        "{line}"
    );
    let file = dir.join("config.json");
    let line = trace(
        &dir,
        &[
            "--patch",
            &format!("blocks.0.hook_attn_out:from={}", file.display()),
        ],
    );
    assert!(
        line.contains("config.json: not a valid safetensors file"),
        "{line}"
    );
}

#[test]
fn patch_source_without_the_hook() {
    let (_tmp, dir) = model_copy();
    let source = dir.parent().unwrap().join("source.safetensors");
    let ok = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args([
            "trace",
            "--model",
            dir.to_str().unwrap(),
            "--ids",
            "1,2,3",
            "--out",
            source.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let line = trace(
        &dir,
        &[
            "--patch",
            &format!("blocks.0.hook_attn_out:from={}", source.display()),
        ],
    );
    assert!(
        line.contains("has no tensor `blocks.0.hook_attn_out`") && line.contains("--capture"),
        "{line}"
    );
}
