//! The sandbox: plugins that loop, hoard memory, recurse, panic, exceed their tensor quota, try to write
//! outside their run, flood the host with calls, speak another API version, or are not plugins at all.
//! Each such run fails with a clear error and keeps its events; the host carries on, and a good run
//! afterwards succeeds.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::Path;

use common::plugins::{
    assert_success, loupe_cmd, loupe_output, loupe_run, misbehaving_plugins, product_plugins,
    read_json, repo_root, run_dirs, runs_by_name, tiny_model,
};

/// A valid core module (no sections): WebAssembly, but not a component.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
/// A component header followed by garbage.
const MALFORMED: &[u8] = b"\0asm\x0d\0\x01\0this is not a component";

fn misbehave(name: &str, behaviour: &str, limits: &str) -> String {
    let wasm = misbehaving_plugins().join("misbehave.wasm");
    format!(
        "[[run]]\nname = \"{name}\"\nplugin = \"{}\"\n[run.params]\nbehaviour = \"{behaviour}\"\n[run.limits]\n{limits}\n\n",
        wasm.display()
    )
}

#[test]
fn misbehaving_plugins_fail_alone_and_the_host_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core.wasm"), CORE_MODULE).unwrap();
    std::fs::write(dir.path().join("malformed.wasm"), MALFORMED).unwrap();
    let wrong_api = misbehaving_plugins().join("wrong-api.wasm");
    let act_stats = product_plugins().join("act-stats.wasm");
    let corpus = repo_root()
        .join("examples/tiny-corpus.txt")
        .canonicalize()
        .unwrap();

    let mut exp = String::new();
    exp += &misbehave("spin", "spin", "time_s = 1");
    exp += &misbehave("memory-bomb", "memory-bomb", "memory_mb = 64");
    exp += &misbehave("recursion", "recursion", "");
    exp += &misbehave("panic", "panic", "");
    exp += &misbehave("over-quota", "over-quota", "tensor_mb = 16");
    exp += &misbehave("escape", "escape", "");
    exp += &misbehave("flood", "flood", "time_s = 3");
    exp += &misbehave("bad-op", "bad-op", "");
    exp += &format!(
        "[[run]]\nname = \"wrong-api\"\nplugin = \"{}\"\n\n",
        wrong_api.display()
    );
    exp += "[[run]]\nname = \"core-module\"\nplugin = \"core.wasm\"\n\n";
    exp += "[[run]]\nname = \"malformed\"\nplugin = \"malformed.wasm\"\n\n";
    exp += &format!(
        "[[run]]\nname = \"good\"\nplugin = \"{}\"\nmodel = \"{}\"\ndata = {{ path = \"{}\", seq_len = 8 }}\n[run.params]\nmax_batches = 2\n",
        act_stats.display(),
        tiny_model().display(),
        corpus.display()
    );
    let exp_path = dir.path().join("sandbox.toml");
    std::fs::write(&exp_path, exp).unwrap();

    let runs = dir.path().join("runs");
    let out = loupe_run(&exp_path, &runs, &["--device", "cpu"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("11 run(s) failed"), "{stderr}");
    assert!(
        !stderr.contains("panicked at"),
        "the host panicked: {stderr}"
    );

    let by_name = runs_by_name(&runs);
    assert_eq!(run_dirs(&runs).len(), 12, "one directory per run");
    let expected: [(&str, &str); 11] = [
        ("spin", "exceeded its time limit of 1 s"),
        ("memory-bomb", "exceeded its memory limit"),
        ("recursion", "its stack overflowed"),
        ("panic", "panicked: misbehave: a deliberate panic (at "),
        (
            "over-quota",
            "tensor.full: a [262144] tensor needs 1 MiB, but the run's tensor quota of 16 MiB",
        ),
        ("escape", "report.save-json: artifact `../../escaped.json`"),
        ("flood", "exceeded its time limit of 3 s"),
        ("bad-op", "tensor.binary: "),
        (
            "wrong-api",
            "built for loupe:plugin@9.0.0, but this loupe speaks loupe:plugin@0.2.0",
        ),
        ("core-module", "a core WebAssembly module, not a component"),
        ("malformed", "malformed component"),
    ];
    for (name, message) in expected {
        let dir = &by_name[name];
        let summary = read_json(&dir.join("summary.json"));
        assert_eq!(summary["name"], name);
        assert_eq!(summary["ok"], false, "{name} should fail");
        let error = summary["error"].as_str().unwrap();
        assert!(error.contains(message), "{name}: {error}");
        assert!(!error.contains('\n'), "{name}: one line, got {error}");
        // The failure is in the event log, which ends with `finished`.
        let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
        assert_eq!(last["event"], "finished", "{name}");
        assert_eq!(last["ok"], false, "{name}");
        assert!(dir.join("config.json").is_file(), "{name}: config.json");
    }
    // Runs that got as far as the plugin logged before misbehaving.
    for name in ["spin", "panic", "escape"] {
        let dir = &by_name[name];
        let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        assert!(
            events.contains("misbehaving"),
            "{name} kept its log: {events}"
        );
    }
    // The flood was cut off: a bounded log and a count of what was dropped.
    let flood = read_json(&by_name["flood"].join("summary.json"));
    assert!(flood["dropped_events"].as_u64().unwrap() > 0, "{flood}");
    let lines = std::fs::read_to_string(by_name["flood"].join("events.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(lines < 100_010, "{lines} events kept");
    // Nothing escaped the run directory.
    assert!(!dir.path().join("escaped.json").exists());
    assert!(!runs.join("escaped.json").exists());
    assert!(!Path::new("/tmp/loupe-escaped.json").exists());
    // The bad op was an error value the plugin could see and carry on from.
    let bad_op = read_json(&by_name["bad-op"].join("summary.json"));
    assert!(
        bad_op["error"]
            .as_str()
            .unwrap()
            .contains("and the plugin went on: sum 6"),
        "{bad_op}"
    );

    let good = read_json(&by_name["good"].join("summary.json"));
    assert_eq!(good["ok"], true, "{good}");
}

#[test]
fn a_plugin_sees_no_files_no_environment_and_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("snoop.toml");
    std::fs::write(&exp, misbehave("snoop", "snoop", "")).unwrap();
    let runs = dir.path().join("runs");
    let out = loupe_cmd()
        .env("SECRET_TOKEN", "hunter2")
        .args(["run", exp.to_str().unwrap(), "--out"])
        .arg(&runs)
        .output()
        .unwrap();
    assert_success(&out);
    let summary = read_json(&run_dirs(&runs)[0].join("summary.json"));
    let seen = &summary["summary"];
    assert_eq!(seen["file"], false, "{seen}");
    assert_eq!(seen["dir"], false, "{seen}");
    assert_eq!(seen["env"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["net"], false, "{seen}");
}

#[test]
fn plugins_check_refuses_what_is_not_a_compatible_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, CORE_MODULE).unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let wrong_api = misbehaving_plugins().join("wrong-api.wasm");
    for (file, message) in [
        (core.as_path(), "not a component"),
        (text.as_path(), "not a WebAssembly file"),
        (wrong_api.as_path(), "loupe:plugin@9.0.0"),
        (Path::new("/nonexistent/x.wasm"), "plugin file not found"),
    ] {
        let out = loupe_output(&["plugins", "check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("loupe: ") && stderr.contains(message),
            "{stderr}"
        );
    }
    let good = misbehaving_plugins().join("misbehave.wasm");
    let out = loupe_output(&["plugins", "check", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
