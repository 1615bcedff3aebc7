//! End-to-end runs of the real `loupe` binary.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures_dir, read_safetensors, worst_mismatch};

#[path = "cli/grad.rs"]
mod grad;
#[path = "cli/vision.rs"]
mod vision;

fn loupe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(args)
        .output()
        .expect("the loupe binary runs")
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = loupe(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loupe {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn reference_ids_args() -> Vec<String> {
    let reference = read_safetensors(&fixtures_dir().join("gpt2-ref/reference.safetensors"));
    let ids = &reference["input_ids"];
    let t = ids.shape[1];
    ids.i32s
        .chunks(t)
        .flat_map(|row| {
            [
                "--ids".to_string(),
                row.iter().map(i32::to_string).collect::<Vec<_>>().join(","),
            ]
        })
        .collect()
}

#[test]
fn trace_writes_reference_activations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace.safetensors");
    let model = fixtures_dir().join("gpt2-ref");
    let mut args = vec![
        "trace",
        "--model",
        model.to_str().unwrap(),
        "--capture",
        "*",
        "--out",
        out.to_str().unwrap(),
    ];
    let ids = reference_ids_args();
    args.extend(ids.iter().map(String::as_str));
    ok(&args);

    let written = read_safetensors(&out);
    let reference = read_safetensors(&model.join("reference.safetensors"));
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    assert_eq!(written["input_ids"].i32s, reference["input_ids"].i32s);
    for (name, expected) in reference.iter().filter(|(n, _)| *n != "input_ids") {
        assert_eq!(written[name].shape, expected.shape, "{name}");
        assert!(
            worst_mismatch(&written[name].f32s, &expected.f32s, 1e-4).is_none(),
            "{name} differs"
        );
    }
}

/// Output files are made as any other file the user creates (their umask decides), not private.
#[cfg(unix)]
#[test]
fn trace_files_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.safetensors");
    let model = fixtures_dir().join("gpt2-ref");
    ok(&[
        "trace",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        "1,2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), mode(&plain), "trace output vs a plain file");
}

/// `--prepend-bos` puts `<|endoftext|>` first, as TransformerLens's `to_tokens` does; `--show` gives
/// each token's text.
#[test]
fn tokenize_prepends_bos_and_shows_token_texts() {
    let model = fixtures_dir().join("gpt2-ref");
    let model = model.to_str().unwrap();
    let plain: Vec<u32> =
        serde_json::from_str(&ok(&["tokenize", "--model", model, "--text", "The cat"])).unwrap();
    let with_bos: Vec<u32> = serde_json::from_str(&ok(&[
        "tokenize",
        "--model",
        model,
        "--text",
        "The cat",
        "--prepend-bos",
    ]))
    .unwrap();
    assert_eq!(
        with_bos[0], 0,
        "<|endoftext|> is id 0 in the fixture's vocabulary"
    );
    assert_eq!(&with_bos[1..], &plain[..]);
    let shown = ok(&["tokenize", "--model", model, "--text", "The cat", "--show"]);
    let rows: Vec<&str> = shown.lines().skip(1).collect();
    assert_eq!(rows.len(), plain.len(), "{shown}");
    assert!(
        rows.iter().any(|r| r.ends_with("\" c\"")),
        "the token ` c` keeps its space: {shown}"
    );

    // The trace of the same text with BOS is the trace of the ids with 0 first.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.safetensors");
    ok(&[
        "trace",
        "--model",
        model,
        "--text",
        "The cat",
        "--prepend-bos",
        "--out",
        out.to_str().unwrap(),
    ]);
    let ids = &read_safetensors(&out)["input_ids"];
    assert_eq!(
        ids.i32s.iter().map(|&v| v as u32).collect::<Vec<_>>(),
        with_bos
    );
}

#[test]
fn trace_by_text_uses_the_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures_dir().join("gpt2-ref");
    let m = model.to_str().unwrap();
    let text = "Contextual decomposition of transformers.";
    let ids: Vec<i32> =
        serde_json::from_str(ok(&["tokenize", "--model", m, "--text", text]).trim()).unwrap();
    assert_eq!(ids.len(), 29);

    let by_text = dir.path().join("text.safetensors");
    let by_ids = dir.path().join("ids.safetensors");
    let id_list = ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    ok(&[
        "trace",
        "--model",
        m,
        "--text",
        text,
        "--capture",
        "blocks.1.hook_resid_post",
        "--out",
        by_text.to_str().unwrap(),
    ]);
    ok(&[
        "trace",
        "--model",
        m,
        "--ids",
        &id_list,
        "--capture",
        "blocks.1.hook_resid_post",
        "--out",
        by_ids.to_str().unwrap(),
    ]);
    let (a, b) = (read_safetensors(&by_text), read_safetensors(&by_ids));
    assert_eq!(a["input_ids"].i32s, ids);
    assert_eq!(a["logits"].f32s, b["logits"].f32s);
    assert_eq!(a["blocks.1.hook_resid_post"].shape, vec![1, 29, 64]);
    assert_eq!(
        a.len(),
        3,
        "only input_ids, logits and the one captured hook"
    );
}

#[test]
fn inspect_lists_sizes_and_hooks() {
    let model = fixtures_dir().join("gpt2-ref");
    let text = ok(&["models", "inspect", model.to_str().unwrap()]);
    assert!(text.contains("layers:       2"), "{text}");
    assert!(text.contains("heads:        4 × d_head 16"), "{text}");
    assert!(text.contains("blocks.1.attn.hook_pattern"), "{text}");
    assert!(text.contains("hooks (31)"), "{text}");
}

fn random_model(dir: &Path, dtype: &str, seed: &str) {
    ok(&[
        "models",
        "random",
        "--preset",
        "tiny",
        "--seed",
        seed,
        "--dtype",
        dtype,
        "--out",
        dir.to_str().unwrap(),
    ]);
}

#[test]
fn random_models_are_reproducible_and_runnable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    random_model(&a, "f32", "7");
    random_model(&b, "f32", "7");
    random_model(&c, "f32", "8");
    let read = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b), "same seed, same weights");
    assert_ne!(read(&a), read(&c), "different seed, different weights");
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(a.join(name).is_file(), "{name} written");
    }
    let m = a.to_str().unwrap();
    let ids: Vec<u32> = serde_json::from_str(
        ok(&["tokenize", "--model", m, "--text", "the residual stream"]).trim(),
    )
    .unwrap();
    assert!(
        !ids.is_empty() && ids.len() < "the residual stream".len(),
        "BPE merges bytes: {ids:?}"
    );
    let out = dir.path().join("t.safetensors");
    ok(&[
        "trace",
        "--model",
        m,
        "--text",
        "the residual stream",
        "--capture",
        "blocks.*.mlp.hook_post",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = read_safetensors(&out);
    assert_eq!(t["logits"].shape, vec![1, ids.len(), 512]);
    assert_eq!(t["blocks.1.mlp.hook_post"].shape, vec![1, ids.len(), 256]);
    assert!(t["logits"].f32s.iter().all(|v| v.is_finite()));
}

#[test]
fn half_precision_weights_load_and_agree_with_f32() {
    let dir = tempfile::tempdir().unwrap();
    let mut logits = Vec::new();
    for dtype in ["f32", "f16", "bf16"] {
        let model = dir.path().join(dtype);
        random_model(&model, dtype, "3");
        let out = dir.path().join(format!("{dtype}.safetensors"));
        ok(&[
            "trace",
            "--model",
            model.to_str().unwrap(),
            "--ids",
            "1,2,3,4,5",
            "--out",
            out.to_str().unwrap(),
        ]);
        logits.push(read_safetensors(&out)["logits"].f32s.clone());
    }
    let f32_size = std::fs::metadata(dir.path().join("f32/model.safetensors"))
        .unwrap()
        .len();
    let f16_size = std::fs::metadata(dir.path().join("f16/model.safetensors"))
        .unwrap()
        .len();
    assert!(
        f16_size < f32_size * 6 / 10,
        "f16 file stores 2-byte values"
    );
    // Weights rounded to 11 (f16) or 8 (bf16) significant bits: logits agree to that precision.
    assert!(
        worst_mismatch(&logits[1], &logits[0], 2e-3).is_none(),
        "f16 logits far from f32"
    );
    assert!(
        worst_mismatch(&logits[2], &logits[0], 2e-2).is_none(),
        "bf16 logits far from f32"
    );
    assert_ne!(logits[1], logits[0], "f16 rounding must show");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &["trace"][..],
        &["tokenize"],
        &["models", "inspect"],
        &["models", "random"],
        &["bench", "forward"],
        &["models"],
        &["bench"],
        &["doctor"],
        &["kernels", "compile"],
        &["selftest"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let text = ok(&args);
        assert!(text.contains("Usage: loupe"), "{cmd:?}: {text}");
    }
}

#[test]
fn doctor_says_what_the_machine_offers() {
    let text = ok(&["doctor"]);
    for line in ["backend: ", "nvrtc: ", "kernel cache: ", "plugin cache: "] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
}

/// Compiling the kernels needs NVRTC (scripts/test.sh installs it); the architecture is checked first.
#[test]
fn kernels_compile_checks_the_architecture_and_reports_each_kernel() {
    let out = loupe(&["kernels", "compile", "--arch", "sm_42"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown architecture `sm_42`"), "{stderr}");
    if loupe_kernels::cuda::nvrtc_version().is_err() {
        eprintln!("skipped compiling: NVRTC is not loadable here (scripts/test.sh installs it)");
        return;
    }
    let text = ok(&["kernels", "compile", "--arch", "sm_90", "--no-cache"]);
    assert!(text.contains("elementwise.cu sm_90: "), "{text}");
}

/// The self-test the GPU check runs, here on the CPU alone: every op family and the fixture parity
/// pass, one row each, and the JSON report holds what the table shows.
#[test]
fn selftest_checks_every_op_family_and_the_fixture_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("selftest.json");
    let fixtures = fixtures_dir();
    let text = ok(&[
        "selftest",
        "--device",
        "cpu",
        "--fixtures",
        fixtures.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(text.contains("all 17 checks passed"), "{text}");
    for row in [
        "matmul f32",
        "attention pattern, values",
        "gradients",
        "GPT-2 fixture parity (gpt2-ref)",
        "DeiT fixture parity, pixel gradient (deit-ref)",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no `{row}` row in:\n{text}"));
        assert!(line.contains(" ok "), "{line}");
    }
    assert!(
        text.contains("gemm f32 512") && text.contains("tokens/s"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 17);
    let fixture = &checks[15];
    assert_eq!(fixture["cases"], 32, "logits and every hook of gpt2-ref");
    assert_eq!(fixture["cpu"], "ok");
    let deit = &checks[16];
    assert_eq!(
        deit["cases"], 9,
        "logits, 7 hooks and the pixel gradient of deit-ref"
    );
    assert_eq!(deit["cpu"], "ok");

    // Insisting on a GPU where there is none, or pointing at fixtures that are not there, is refused
    // in one line.
    if loupe_kernels::cuda::unavailable_reason(0).is_some() {
        let out = loupe(&["selftest", "--device", "cuda", "--no-timing"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--device cuda") && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
    let out = loupe(&[
        "selftest",
        "--device",
        "cpu",
        "--fixtures",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gpt2-ref/ folder"));
}

#[test]
fn bench_gemm_reports_each_size() {
    for precision in ["f32", "bf16"] {
        let text = ok(&[
            "bench",
            "gemm",
            "--device",
            "cpu",
            "--sizes",
            "8,33",
            "--iters",
            "2",
            "--precision",
            precision,
        ]);
        assert!(text.contains("TFLOP/s"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("8 ") || l.trim_start().starts_with("33 "))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
    }
    let out = loupe(&["bench", "gemm", "--device", "cpu", "--sizes", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sizes"));
}

#[test]
fn bench_forward_reports_throughput_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    random_model(&model, "f32", "1");
    let m = model.to_str().unwrap();
    for capture in [&[][..], &["--capture", "*"]] {
        let mut args = vec![
            "bench", "forward", "--model", m, "--batch", "2", "--seq", "16", "--iters", "2",
            "--warmup", "0",
        ];
        args.extend(capture);
        let text = ok(&args);
        let tokens_per_s: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tokens/s:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no tokens/s line in {text}"));
        assert!(tokens_per_s > 0.0, "{text}");
        assert!(
            text.contains("peak RSS:") && text.contains("batch × seq:    2 × 16"),
            "{text}"
        );
    }
}

/// Runs `trace` on the reference model for one sequence with extra flags; returns the written tensors.
fn trace_reference(
    dir: &Path,
    name: &str,
    ids: &str,
    extra: &[&str],
) -> std::collections::BTreeMap<String, common::Stored> {
    let model = fixtures_dir().join("gpt2-ref");
    let out = dir.join(name);
    let mut args = vec![
        "trace",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        ids,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&args);
    read_safetensors(&out)
}

#[test]
fn activation_patching_from_an_earlier_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, corrupt) = ("11,42,7,99,150,3", "11,42,7,12,150,3");
    let source = trace_reference(
        dir.path(),
        "corrupt.safetensors",
        corrupt,
        &["--capture", "blocks.1.hook_resid_pre"],
    );
    let from = format!(
        "blocks.1.hook_resid_pre:from={}",
        dir.path().join("corrupt.safetensors").display()
    );
    let patched = trace_reference(
        dir.path(),
        "patched.safetensors",
        clean,
        &["--patch", &from],
    );
    let unpatched = trace_reference(dir.path(), "clean.safetensors", clean, &[]);
    assert!(
        worst_mismatch(&patched["logits"].f32s, &source["logits"].f32s, 1e-6).is_none(),
        "patched run = source run"
    );
    assert_ne!(patched["logits"].f32s, unpatched["logits"].f32s);

    // Patching only position 3 changes nothing before it.
    let from_pos = from.replace(":from=", ":pos=3:from=");
    let partial = trace_reference(
        dir.path(),
        "partial.safetensors",
        clean,
        &["--patch", &from_pos],
    );
    let vocab = 300;
    assert_eq!(
        partial["logits"].f32s[..3 * vocab],
        unpatched["logits"].f32s[..3 * vocab]
    );
    assert_ne!(
        partial["logits"].f32s[3 * vocab..],
        unpatched["logits"].f32s[3 * vocab..]
    );
}

#[test]
fn zero_and_scale_edit_the_selected_heads() {
    let dir = tempfile::tempdir().unwrap();
    let ids = "5,17,250,0,299";
    let capture = ["--capture", "blocks.0.attn.hook_z"];
    let clean = trace_reference(dir.path(), "clean.safetensors", ids, &capture);
    let mut args = capture.to_vec();
    args.extend(["--zero", "blocks.0.attn.hook_z:heads=2"]);
    let ablated = trace_reference(dir.path(), "ablated.safetensors", ids, &args);
    let (c, a) = (
        &clean["blocks.0.attn.hook_z"].f32s,
        &ablated["blocks.0.attn.hook_z"].f32s,
    );
    for (i, (cv, av)) in c.iter().zip(a).enumerate() {
        let head = (i / 16) % 4;
        assert_eq!(
            *av,
            if head == 2 { 0.0 } else { *cv },
            "element {i} (head {head})"
        );
    }
    let zeroed = trace_reference(
        dir.path(),
        "z.safetensors",
        ids,
        &["--zero", "blocks.0.hook_attn_out"],
    );
    let scaled = trace_reference(
        dir.path(),
        "s.safetensors",
        ids,
        &["--scale", "blocks.0.hook_attn_out:by=0"],
    );
    assert_eq!(zeroed["logits"].f32s, scaled["logits"].f32s);
    assert_ne!(zeroed["logits"].f32s, clean["logits"].f32s);
}
