//! The sandbox: plugins that loop, hoard memory, recurse, panic, exceed their tensor quota, try to write
//! outside their run, flood the host with calls, speak another API version, or are not plugins at all.
//! Each such run fails with a clear error and keeps its events; the host carries on, and a good run
//! afterwards succeeds.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

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
        "[[run]]\nname = \"good\"\nplugin = \"{}\"\nmodel = \"{}\"\ndata = {{ path = \"{}\", seq_len = 8 }}\n[run.params]\nmax_batches = 2\n",
        act_stats.display(),
        tiny_model().display(),
        corpus.display()
    );
    let exp_path = dir.path().join("sandbox.toml");
    std::fs::write(&exp_path, exp).unwrap();

    // Plugins that cannot load are found when the file is checked, before anything runs: the file is
    // refused whole, one line per plugin, and no run starts.
    let unloadable = format!(
        "[[run]]\nname = \"wrong-api\"\nplugin = \"{}\"\n\n\
         [[run]]\nname = \"core-module\"\nplugin = \"core.wasm\"\n\n\
         [[run]]\nname = \"malformed\"\nplugin = \"malformed.wasm\"\n",
        wrong_api.display()
    );
    let unloadable_path = dir.path().join("unloadable.toml");
    std::fs::write(&unloadable_path, unloadable).unwrap();
    let refused_runs = dir.path().join("refused");
    let out = loupe_run(&unloadable_path, &refused_runs, &["--device", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("3 of 3 runs cannot start, so none was started"),
        "{stderr}"
    );
    for message in [
        "built for loupe:plugin@9.0.0, but this loupe speaks loupe:plugin@0.3.2",
        "a core WebAssembly module, not a component",
        "malformed component",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(message)).count(),
            1,
            "{message}: {stderr}"
        );
    }
    assert!(
        !stderr.contains("panicked at"),
        "the host panicked: {stderr}"
    );
    assert!(!refused_runs.exists(), "nothing ran");

    let runs = dir.path().join("runs");
    let out = loupe_run(&exp_path, &runs, &["--device", "cpu"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("8 run(s) failed"), "{stderr}");
    assert!(
        !stderr.contains("panicked at"),
        "the host panicked: {stderr}"
    );

    let by_name = runs_by_name(&runs);
    assert_eq!(run_dirs(&runs).len(), 9, "one directory per run");
    let expected: [(&str, &str); 8] = [
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

/// Runs `cmd` to its end, or fails the test if it takes longer than `limit` (killing it): a host
/// that ignores a deadline must fail the test, not hang it.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loupe starts");
    let start = Instant::now();
    while child.try_wait().expect("loupe can be waited on").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("loupe ends");
            panic!(
                "loupe was still running after {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("loupe ends")
}

fn run_within(exp: &Path, runs: &Path, limit: Duration, env: &[(&str, &str)]) -> Output {
    let mut cmd = loupe_cmd();
    cmd.arg("run")
        .arg(exp)
        .arg("--out")
        .arg(runs)
        .args(["--device", "cpu"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(cmd, limit)
}

/// The error of the run named `name`, checked to be a failure of one line with a finished event log.
fn failure_of(by_name: &std::collections::BTreeMap<String, PathBuf>, name: &str) -> (String, f64) {
    let dir = &by_name[name];
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["ok"], false, "{name} should fail: {summary}");
    let error = summary["error"].as_str().unwrap().to_string();
    assert!(!error.contains('\n'), "{name}: one line, got {error}");
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "finished", "{name}");
    (error, summary["elapsed_s"].as_f64().unwrap())
}

#[test]
fn a_host_call_that_panics_fails_its_run_alone() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: LOUPE_INJECT_PANIC is honoured by debug builds only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("panics.toml");
    let mut text = misbehave("host-panic", "list-datasets", "");
    text += &misbehave("after", "ok", "");
    std::fs::write(&exp, text).unwrap();
    let runs = dir.path().join("runs");
    let out = run_within(
        &exp,
        &runs,
        Duration::from_secs(120),
        &[("LOUPE_INJECT_PANIC", "data.datasets")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 run(s) failed"), "{stderr}");
    // The panic message went into the run's error, not onto the terminal.
    assert!(!stderr.contains("panicked at"), "{stderr}");

    let by_name = runs_by_name(&runs);
    let (error, _) = failure_of(&by_name, "host-panic");
    assert!(
        error.starts_with("loupe failed inside a host call and ended this run: injected fault: data.datasets panics on purpose")
            && error.contains("(at host/src/plugin/host_data.rs:")
            && error.contains("this is a bug in loupe")
            && error.contains("please report it"),
        "{error}"
    );
    let after = read_json(&by_name["after"].join("summary.json"));
    assert_eq!(after["ok"], true, "{after}");
}

#[test]
fn a_manifest_that_panics_in_a_host_call_or_sleeps_fails_to_load_alone() {
    let plugins = misbehaving_plugins();
    let dir = tempfile::tempdir().unwrap();
    for name in ["slow-manifest.wasm", "misbehave.wasm"] {
        std::fs::copy(plugins.join(name), dir.path().join(name)).unwrap();
    }
    let list = |env: &[(&str, &str)]| {
        let mut cmd = loupe_cmd();
        cmd.args(["plugins", "list", "--plugins"]).arg(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let out = output_within(cmd, Duration::from_secs(60));
        (out, start.elapsed())
    };

    // The manifest's own deadline (5 s) ends its sleep; the other plugin is listed.
    let (out, took) = list(&[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5 + 5), "took {took:?}: {text}");
    assert!(text.contains("misbehave"), "{text}");
    assert!(
        text.contains("slow-manifest.wasm")
            && text.contains("manifest() did not return within 5 s"),
        "{text}"
    );

    if cfg!(debug_assertions) {
        // A host call inside manifest() that panics fails that load, with the panic's message.
        let (out, _) = list(&[("LOUPE_INJECT_PANIC", "model.info")]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(101), "the host died: {text}");
        assert!(!text.contains("panicked at"), "{text}");
        assert!(text.contains("misbehave"), "{text}");
        assert!(
            text.contains("slow-manifest.wasm")
                && text.contains("loupe failed inside a host call and ended this load: injected fault: model.info"),
            "{text}"
        );

        // `loupe run` scanning the directory for a plugin by name gets past it too.
        let exp = dir.path().join("by-name.toml");
        std::fs::write(
            &exp,
            "[[run]]\nplugin = \"misbehave\"\n[run.params]\nbehaviour = \"ok\"\n",
        )
        .unwrap();
        let runs = dir.path().join("runs");
        let mut cmd = loupe_cmd();
        cmd.arg("run")
            .arg(&exp)
            .arg("--out")
            .arg(&runs)
            .arg("--plugins")
            .arg(dir.path())
            .env("LOUPE_INJECT_PANIC", "model.info");
        assert_success(&output_within(cmd, Duration::from_secs(60)));
    }
}

#[test]
fn blocking_wasi_calls_and_long_host_calls_end_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("blocking.toml");
    let mut text = String::new();
    for behaviour in ["sleep", "poll-clock"] {
        text += &misbehave(behaviour, behaviour, "time_s = 1");
    }
    let model = format!("model = \"{}\"\n[run.params]", tiny_model().display());
    for behaviour in ["tokenize-flood", "huge-forward"] {
        text += &misbehave(behaviour, behaviour, "time_s = 1").replacen("[run.params]", &model, 1);
    }
    text += &misbehave("after", "ok", "");
    std::fs::write(&exp, text).unwrap();
    let runs = dir.path().join("runs");
    // Each would block for an hour (or many seconds) if its deadline did not reach it.
    let out = run_within(&exp, &runs, Duration::from_secs(120), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let by_name = runs_by_name(&runs);
    for name in ["sleep", "poll-clock", "tokenize-flood", "huge-forward"] {
        let (error, elapsed) = failure_of(&by_name, name);
        assert!(
            error.contains("exceeded its time limit of 1 s"),
            "{name}: {error}"
        );
        // Within a second of the deadline on a fast machine; generous here.
        assert!(
            elapsed < 1.0 + 5.0,
            "{name} ran {elapsed} s past a 1 s deadline"
        );
    }
    let after = read_json(&by_name["after"].join("summary.json"));
    assert_eq!(after["ok"], true, "{after}");
}

#[test]
fn cancel_reaches_a_plugin_blocked_in_a_sleep() {
    use loupe::events::{Event, EventBody, EventSink};
    use loupe::runner::{Cancellations, Runner, RunnerOptions, SharedSink};
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Mutex};

    struct Events(std::sync::mpsc::Sender<Event>);
    impl EventSink for Events {
        fn emit(&mut self, event: &Event) {
            let _ = self.0.send(event.clone());
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sleep.toml");
    std::fs::write(&path, misbehave("sleeper", "sleep", "time_s = 3600")).unwrap();
    let exp = loupe::runner::Experiment::load(&path).unwrap();
    // Leaked and detached: if the cancel does not reach the sleep, the test fails instead of waiting
    // an hour for the runner thread.
    let engine: &'static loupe::plugin::PluginEngine =
        Box::leak(Box::new(loupe::plugin::PluginEngine::new().unwrap()));
    let cancellations = Arc::new(Cancellations::new());
    let (tx, events) = channel();
    let cancellations_run = cancellations.clone();
    let out = dir.path().join("runs");
    std::thread::spawn(move || {
        let sink: SharedSink = Arc::new(Mutex::new(Events(tx)));
        let mut runner = Runner::new(
            engine,
            RunnerOptions {
                plugins_dir: PathBuf::from("."),
                out_dir: out,
                device: Some("cpu".into()),
                overrides: Vec::new(),
                sinks: vec![sink],
                registry: None,
                cancellations: Some(cancellations_run),
                slots: None,
            },
        );
        runner.run_experiment(&exp).unwrap();
    });
    let next = |within: Duration| events.recv_timeout(within).expect("the next event in time");
    let run = loop {
        let e = next(Duration::from_secs(60));
        if matches!(e.body, EventBody::Started { .. }) {
            break e.run;
        }
    };
    // Let it get into its sleep, then cancel.
    std::thread::sleep(Duration::from_millis(500));
    assert!(cancellations.cancel(&run));
    let error = loop {
        if let EventBody::Finished { error, .. } = next(Duration::from_secs(5)).body {
            break error;
        }
    };
    assert_eq!(error.as_deref(), Some("cancelled by the user"));
}

/// A plugin component written by hand: its core module declares `memories` linear memories and its
/// `run()` grows each but the first by `pages` (64 KiB each) and touches every page, then returns
/// `{}`. Rust plugins have one memory; a hostile component can have many.
fn memory_hog(memories: usize, pages: u32) -> Vec<u8> {
    let strings: [&str; 6] = [
        "memory-hog",
        "0.1.0",
        "test",
        "Declares many memories and grows each",
        "0.3.0",
        "{}",
    ];
    let escape = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("\\{b:02x}")).collect() };
    let mut blob = Vec::new();
    let mut spans = Vec::new();
    for s in strings {
        spans.push((16 + blob.len() as u32, s.len() as u32));
        blob.extend_from_slice(s.as_bytes());
    }
    // plugin-manifest: five strings and an empty list of params, each (pointer, length).
    let mut manifest = Vec::new();
    for &(at, len) in spans.iter().take(5).chain([&(0, 0)]) {
        manifest.extend_from_slice(&at.to_le_bytes());
        manifest.extend_from_slice(&len.to_le_bytes());
    }
    // result<string, error>: case 0 (ok), then the string at offset 4.
    let mut ok = vec![0u8; 4];
    ok.extend_from_slice(&spans[5].0.to_le_bytes());
    ok.extend_from_slice(&spans[5].1.to_le_bytes());

    let extra: String = (1..memories)
        .map(|k| format!("    (memory $m{k} 1)\n"))
        .collect();
    let grow: String = (1..memories)
        .map(|k| {
            format!(
                "      (if (i32.eq (memory.grow $m{k} (i32.const {pages})) (i32.const -1))
        (then (return (i32.const 0))))
      (local.set $p (i32.const 0))
      (loop $touch{k}
        (i32.store8 $m{k} (local.get $p) (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 65536)))
        (br_if $touch{k} (i32.lt_u (local.get $p) (i32.const {}))))\n",
                pages * 65536
            )
        })
        .collect();
    let error_kind = r#"(enum "invalid-argument" "shape-mismatch" "dtype-mismatch" "out-of-quota" "not-found" "model" "io" "internal")"#;
    let param_type =
        r#"(enum "bool" "int" "float" "string" "int-list" "float-list" "string-list")"#;
    let param = |ty: &str| {
        format!(
            r#"(record (field "name" string) (field "type" {ty}) (field "default" (option string)) (field "help" string))"#
        )
    };
    let manifest_ty = |param: &str| {
        format!(
            r#"(record (field "name" string) (field "version" string) (field "method" string) (field "description" string) (field "api-version" string) (field "params" (list {param})))"#
        )
    };
    let text = format!(
        r#"(component
  (core module $m
    (memory $m0 (export "memory") 1)
{extra}    (global $heap (mut i32) (i32.const 4096))
    (data (memory $m0) (i32.const 16) "{blob}")
    (data (memory $m0) (i32.const 1024) "{manifest}")
    (data (memory $m0) (i32.const 2048) "{ok}")
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    (func (export "manifest") (result i32) (i32.const 1024))
    (func (export "run") (param i32 i32) (result i32)
      (local $p i32)
{grow}      (i32.const 2048)))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (import "loupe:plugin/types@0.3.0" (instance $types
    (type $k {error_kind})
    (export "error-kind" (type $ek (eq $k)))
    (type $e (record (field "kind" $ek) (field "op" string) (field "message" string)))
    (export "error" (type (eq $e)))))
  (alias export $types "error-kind" (type $ek))
  (alias export $types "error" (type $err))
  (type $pt {param_type})
  (type $param {param_pt})
  (type $man {manifest_param})
  (func $manifest (result $man) (canon lift (core func $i "manifest") (memory $mem) string-encoding=utf8))
  (func $run (param "params" string) (result (result string (error $err)))
    (canon lift (core func $i "run") (memory $mem) (realloc $realloc) string-encoding=utf8))
  (component $shim
    (type $ek0 {error_kind})
    (import "import-type-error-kind" (type $ek (eq $ek0)))
    (type $err0 (record (field "kind" $ek) (field "op" string) (field "message" string)))
    (import "import-type-error" (type $err (eq $err0)))
    (type $pt0 {param_type})
    (import "import-type-param-type" (type $pt (eq $pt0)))
    (type $param0 {param_pt})
    (import "import-type-param" (type $param (eq $param0)))
    (type $man0 {manifest_param})
    (import "import-type-plugin-manifest" (type $man (eq $man0)))
    (import "import-func-manifest" (func $f-man (result $man)))
    (import "import-func-run" (func $f-run (param "params" string) (result (result string (error $err)))))
    (export $err-e "error" (type $err))
    (export $pt-e "param-type" (type $pt))
    (type $param-e0 {param_pt_e})
    (export $param-e "param" (type $param-e0))
    (type $man-e0 {manifest_param_e})
    (export $man-e "plugin-manifest" (type $man-e0))
    (export "manifest" (func $f-man) (func (result $man-e)))
    (export "run" (func $f-run) (func (param "params" string) (result (result string (error $err-e))))))
  (instance $method (instantiate $shim
    (with "import-func-manifest" (func $manifest))
    (with "import-func-run" (func $run))
    (with "import-type-error-kind" (type $ek))
    (with "import-type-error" (type $err))
    (with "import-type-param-type" (type $pt))
    (with "import-type-param" (type $param))
    (with "import-type-plugin-manifest" (type $man))))
  (export "loupe:plugin/method@0.3.0" (instance $method)))"#,
        blob = escape(&blob),
        manifest = escape(&manifest),
        ok = escape(&ok),
        param_pt = param("$pt"),
        manifest_param = manifest_ty("$param"),
        param_pt_e = param("$pt-e"),
        manifest_param_e = manifest_ty("$param-e"),
    );
    wat::parse_str(&text).expect("the memory hog is valid component text")
}

#[test]
fn the_memory_cap_is_a_total_over_every_memory_of_a_component() {
    let dir = tempfile::tempdir().unwrap();
    // 8 memories of 24 MiB each under a cap of 32 MiB: each alone fits, all together are 6 times over.
    std::fs::write(dir.path().join("hog.wasm"), memory_hog(8, 384)).unwrap();
    // 2 memories of 4 MiB each fit: the component itself is sound.
    std::fs::write(dir.path().join("small.wasm"), memory_hog(2, 64)).unwrap();
    // More memories than a plugin may declare: refused when it is loaded.
    std::fs::write(dir.path().join("many.wasm"), memory_hog(40, 1)).unwrap();
    let experiment = |names: &[&str], file: &str| {
        let mut text = String::new();
        for name in names {
            text += &format!(
                "[[run]]\nname = \"{name}\"\nplugin = \"{name}.wasm\"\n[run.limits]\nmemory_mb = 32\n\n"
            );
        }
        let exp = dir.path().join(file);
        std::fs::write(&exp, text).unwrap();
        exp
    };
    // Refused when the file is checked, before anything runs.
    let many_exp = experiment(&["many"], "many.toml");
    let out = run_within(
        &many_exp,
        &dir.path().join("refused"),
        Duration::from_secs(60),
        &[],
    );
    let many = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{many}");
    assert!(
        many.contains("declares more linear memories than a plugin may have (at most 16)"),
        "{many}"
    );

    let exp = experiment(&["hog", "small"], "memories.toml");
    let runs = dir.path().join("runs");
    let out = run_within(&exp, &runs, Duration::from_secs(60), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let by_name = runs_by_name(&runs);
    let (hog, _) = failure_of(&by_name, "hog");
    assert!(
        hog.contains("exceeded its memory limit") && hog.contains("the limit is 32 MiB"),
        "{hog}"
    );
    let small = read_json(&by_name["small"].join("summary.json"));
    assert_eq!(small["ok"], true, "{small}");
}
