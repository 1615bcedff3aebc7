//! A plugin calling the tensor interface directly with the inputs that once crashed the host — a
//! zero-sized contraction whose result was read out of bounds, reductions and row ops over empty
//! axes, shapes whose size overflows, a join of a thousand references to one tensor, dimensions past
//! 2³² — gets a right answer or an error value for each, and the host goes on to the next run.

#[path = "../host/tests/common/mod.rs"]
mod common;

use serde_json::Value;

use common::plugins::{loupe_run, misbehaving_plugins, read_json, runs_by_name};

fn error_of<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path)
        .and_then(|e| e.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path} should be an error value: {v:#}"))
}

fn shape_of(v: &Value, path: &str) -> Vec<u64> {
    let shape = v
        .pointer(&format!("{path}/shape"))
        .unwrap_or_else(|| panic!("{path} should be a tensor: {v:#}"));
    serde_json::from_value(shape.clone()).unwrap()
}

fn values_of(v: &Value, path: &str) -> Vec<Option<f64>> {
    serde_json::from_value(v.pointer(&format!("{path}/values")).cloned().unwrap()).unwrap()
}

#[test]
fn shape_attacks_get_answers_or_error_values_and_the_host_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = misbehaving_plugins().join("shape-attacks.wasm");
    let exp = format!(
        "[[run]]\nname = \"attacks\"\nplugin = \"{0}\"\n[run.limits]\ntensor_mb = 512\n\n\
         [[run]]\nname = \"after\"\nplugin = \"{0}\"\n[run.params]\nattack = \"empty-reductions\"\n",
        wasm.display()
    );
    let exp_path = dir.path().join("attacks.toml");
    std::fs::write(&exp_path, exp).unwrap();
    let runs = dir.path().join("runs");
    let out = loupe_run(&exp_path, &runs, &["--device", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?} (a signal means the host died)\n{stderr}",
        out.status
    );

    let by_name = runs_by_name(&runs);
    let summary = read_json(&by_name["attacks"].join("summary.json"));
    let s = &summary["summary"];
    assert_eq!(summary["ok"], true, "{summary:#}");

    // [4, 0] · [0, 3] is 12 zeros, and reading them through another product stays in bounds.
    assert_eq!(shape_of(s, "/empty-contraction/linear"), [4, 3]);
    assert_eq!(
        values_of(s, "/empty-contraction/linear"),
        vec![Some(0.0); 12]
    );
    assert_eq!(
        values_of(s, "/empty-contraction/then_matmul"),
        vec![Some(0.0); 8]
    );
    assert_eq!(shape_of(s, "/empty-contraction/matmul_k0"), [2, 5, 7]);

    // PyTorch's answers over an empty axis: sum 0, mean NaN (null in JSON), max an error.
    assert_eq!(values_of(s, "/empty-reductions/sum"), vec![Some(0.0); 3]);
    assert_eq!(values_of(s, "/empty-reductions/mean"), vec![None; 3]);
    assert!(
        error_of(s, "/empty-reductions/max").contains("empty"),
        "{s:#}"
    );
    assert_eq!(shape_of(s, "/empty-reductions/softmax"), [3, 0]);
    assert_eq!(shape_of(s, "/empty-reductions/zero_outputs"), [4, 0]);

    for path in [
        "/overflowing-shapes/full",
        "/overflowing-shapes/randn",
        "/overflowing-shapes/reshape",
        "/overflowing-shapes/scatter_rows",
        "/past-u32-dims/dim_2_31",
        "/past-u32-dims/joined",
    ] {
        assert!(error_of(s, path).contains("too large"), "{path}: {s:#}");
    }
    let concat = error_of(s, "/many-references/concat");
    assert!(concat.contains("tensor_mb"), "{concat}");

    let after = read_json(&by_name["after"].join("summary.json"));
    assert_eq!(after["ok"], true, "{after:#}");
}

/// One host call that would run for minutes — a Cholesky solve or a product of two 8192 × 8192
/// matrices — stops at the run's one-second deadline: the run fails with the time-limit message,
/// soon after it, and the next run starts.
#[test]
fn long_host_calls_stop_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = misbehaving_plugins().join("shape-attacks.wasm");
    let run = |attack: &str| {
        format!(
            "[[run]]\nname = \"{attack}\"\nplugin = \"{}\"\n[run.params]\nattack = \"{attack}\"\n\
             [run.limits]\ntime_s = 1\n\n",
            wasm.display()
        )
    };
    for attack in ["long-solve", "long-matmul"] {
        let exp = run(attack) + &run("empty-reductions").replace("time_s = 1", "time_s = 60");
        let exp_path = dir.path().join(format!("{attack}.toml"));
        std::fs::write(&exp_path, exp).unwrap();
        let runs = dir.path().join(attack);
        let start = std::time::Instant::now();
        let out = loupe_run(&exp_path, &runs, &["--device", "cpu"]);
        let wall = start.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let by_name = runs_by_name(&runs);
        let summary = read_json(&by_name[attack].join("summary.json"));
        let error = summary["error"].as_str().unwrap_or_default();
        assert!(error.contains("time limit of 1 s"), "{attack}: {summary:#}");
        let next = read_json(&by_name["empty-reductions"].join("summary.json"));
        assert_eq!(next["ok"], true, "{next:#}");
        // Generous for a loaded 2-core machine; without the stop checks each takes minutes.
        assert!(wall < 15.0, "{attack}: loupe run took {wall:.1} s");
    }
}
