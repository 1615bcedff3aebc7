//! End-to-end runs of real `.wasm` plugins through the `loupe` binary: the quickstart, act-stats against
//! a direct computation, `--set` and `--json`, and the plugin listing.

#[path = "../host/tests/common/mod.rs"]
mod common;
#[path = "plugin_runs/gradients.rs"]
mod gradients;
#[path = "plugin_runs/interrupt.rs"]
mod interrupt;

use std::path::Path;

use common::plugins::{
    assert_success, loupe_cmd, loupe_output, loupe_run, misbehaving_plugins, product_plugins,
    quickstart_model, read_json, repo_root, run_dirs, spin_run, tiny_model,
};
use common::read_safetensors;
use common::reference::{HookOverText, hook_over_text};
use loupe::data::TextSpec;

fn write_experiment(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("exp.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn corpus() -> std::path::PathBuf {
    repo_root()
        .join("examples/tiny-corpus.txt")
        .canonicalize()
        .unwrap()
}

#[test]
fn the_quickstart_experiment_runs_act_stats() {
    let plugins = product_plugins();
    // The model the quickstart script creates, at the path examples/quickstart.toml names.
    quickstart_model();
    let runs = tempfile::tempdir().unwrap();
    let out = loupe_cmd()
        .args([
            "run",
            "examples/quickstart.toml",
            "--device",
            "cpu",
            "--plugins",
        ])
        .arg(plugins)
        .arg("--out")
        .arg(runs.path())
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 of 1 runs succeeded"), "{stdout}");
    let dirs = run_dirs(runs.path());
    assert_eq!(dirs.len(), 1);
    let run = &dirs[0];
    for file in ["config.json", "events.jsonl", "summary.json"] {
        assert!(
            run.join(file).is_file(),
            "{file} missing in {}",
            run.display()
        );
    }
    for artifact in [
        "stats.safetensors",
        "stats.csv",
        "position_mean.png",
        "top_activations.json",
    ] {
        assert!(
            run.join("artifacts").join(artifact).is_file(),
            "{artifact} missing"
        );
    }
    // The heat map is a figure (cells upscaled, axes, a colour scale), not one pixel per cell.
    let heat = image::open(run.join("artifacts/position_mean.png")).unwrap();
    assert!(
        heat.width() >= 600 && heat.height() >= 300 && heat.color().channel_count() == 3,
        "{}×{} {:?}",
        heat.width(),
        heat.height(),
        heat.color()
    );
    let config = read_json(&run.join("config.json"));
    assert_eq!(config["plugin"]["name"], "act-stats");
    assert_eq!(
        config["plugin"]["api_version"],
        loupe_plugin_api::API_VERSION
    );
    assert_eq!(config["plugin"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(config["params"]["top_k"], 5);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["summary"]["hook"], "blocks.0.mlp.hook_post");
    // The event log is JSON lines from `started` to `finished`.
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "started");
    assert_eq!(events.last().unwrap()["event"], "finished");
    assert!(events.iter().any(|e| e["event"] == "progress"));
    assert!(events.iter().any(|e| e["event"] == "metric"));
}

/// What act-stats should find, computed from the model directly in f64.
struct Reference {
    /// Per neuron: mean, population variance, max, fraction above 0.
    stats: Vec<[f64; 4]>,
    sequences: Vec<Vec<u32>>,
    /// Activation rows, sequence-major.
    rows: Vec<Vec<f32>>,
}

fn reference_stats(model: &Path, hook: &str, seq_len: usize) -> Reference {
    let spec = TextSpec {
        seq_len,
        ..TextSpec::new(corpus())
    };
    let HookOverText {
        sequences,
        values,
        width,
        ..
    } = hook_over_text(model, &spec, hook);
    let rows: Vec<Vec<f32>> = values.chunks(width).map(<[f32]>::to_vec).collect();
    let stats = (0..width)
        .map(|j| {
            let col: Vec<f64> = rows.iter().map(|r| r[j] as f64).collect();
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / col.len() as f64;
            let max = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let active = col.iter().filter(|&&x| x > 0.0).count() as f64 / col.len() as f64;
            [mean, var, max, active]
        })
        .collect();
    Reference {
        stats,
        sequences,
        rows,
    }
}

#[test]
fn act_stats_matches_statistics_computed_directly() {
    act_stats_matches_direct("act-stats");
}

/// A plugin built against the previous API release (0.3.0, before gradients) loads and runs on this
/// host unchanged, with the same numbers: the file is kept as built then.
#[test]
fn an_act_stats_built_for_api_0_3_0_runs_unchanged() {
    let old = repo_root().join("tests/fixtures/api-0.3.0/act-stats.wasm");
    let config = act_stats_matches_direct(old.to_str().unwrap());
    assert_eq!(config["plugin"]["api_version"], "0.3.0");
    assert_ne!(
        loupe_plugin_api::API_VERSION,
        "0.3.0",
        "the host has moved on"
    );
}

/// Runs act-stats (`plugin`: a name in the product plugins or a path) and checks every statistic and
/// top activation against a direct computation; returns the run's config.json.
fn act_stats_matches_direct(plugin: &str) -> serde_json::Value {
    let plugins = product_plugins();
    let model = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let hook = "blocks.1.attn.hook_z";
    let exp = write_experiment(
        dir.path(),
        &format!(
            r#"
[[run]]
name = "stats"
plugin = "{plugin}"
model = "{}"
data = {{ path = "{}", seq_len = 16 }}
[run.params]
hook = "{hook}"
batch_size = 3
top_k = 3
report_neurons = 0
"#,
            model.display(),
            corpus().display()
        ),
    );
    let runs = dir.path().join("runs");
    let out = loupe_run(
        &exp,
        &runs,
        &["--device", "cpu", "--plugins", plugins.to_str().unwrap()],
    );
    assert_success(&out);
    let run = &run_dirs(&runs)[0];
    let stats = read_safetensors(&run.join("artifacts/stats.safetensors"));
    let Reference {
        stats: reference,
        sequences,
        rows,
    } = reference_stats(model, hook, 16);
    assert_eq!(stats["mean"].f32s.len(), reference.len());
    for (j, r) in reference.iter().enumerate() {
        let got = [
            stats["mean"].f32s[j],
            stats["var"].f32s[j],
            stats["max"].f32s[j],
            stats["frac_active"].f32s[j],
        ];
        for (k, name) in ["mean", "var", "max", "frac_active"].iter().enumerate() {
            let (g, e) = (got[k] as f64, r[k]);
            assert!(
                (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "neuron {j} {name}: plugin {g}, direct {e}"
            );
        }
    }
    // Every neuron's top activations are the largest values of its column, at the right tokens.
    let top = read_json(&run.join("artifacts/top_activations.json"));
    let neurons = top["neurons"].as_array().unwrap();
    assert_eq!(neurons.len(), reference.len());
    for n in neurons {
        let j = n["neuron"].as_u64().unwrap() as usize;
        let mut column: Vec<f32> = rows.iter().map(|r| r[j]).collect();
        column.sort_by(|a, b| b.total_cmp(a));
        for (rank, hit) in n["top"].as_array().unwrap().iter().enumerate() {
            let value = hit["value"].as_f64().unwrap() as f32;
            assert!(
                (value - column[rank]).abs() <= 1e-6,
                "neuron {j} rank {rank}"
            );
            let (s, p) = (
                hit["sequence"].as_u64().unwrap() as usize,
                hit["position"].as_u64().unwrap() as usize,
            );
            assert_eq!(hit["token_id"].as_u64().unwrap() as u32, sequences[s][p]);
            assert!((rows[s * 16 + p][j] - value).abs() <= 1e-6);
        }
    }
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(
        summary["summary"]["tokens"].as_u64(),
        Some(rows.len() as u64)
    );
    read_json(&run.join("config.json"))
}

#[test]
fn set_overrides_params_and_json_streams_events() {
    let plugins = product_plugins();
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(
        dir.path(),
        &format!(
            "[[run]]\nplugin = \"act-stats\"\nmodel = \"{}\"\ndata = {{ path = \"{}\", seq_len = 8 }}\n[run.params]\nmax_batches = 1\n",
            tiny_model().display(),
            corpus().display()
        ),
    );
    let runs = dir.path().join("runs");
    let out = loupe_cmd()
        .args([
            "run",
            exp.to_str().unwrap(),
            "--json",
            "--set",
            "top_k=2",
            "--set",
            "hook=blocks.1.hook_resid_post",
            "--plugins",
        ])
        .arg(plugins)
        .arg("--out")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is a JSON event"))
        .collect();
    assert_eq!(lines.first().unwrap()["event"], "started");
    assert_eq!(lines.last().unwrap()["event"], "finished");
    assert_eq!(lines.last().unwrap()["ok"], true);
    let config = read_json(&run_dirs(&runs)[0].join("config.json"));
    assert_eq!(config["params"]["top_k"], 2);
    assert_eq!(config["params"]["hook"], "blocks.1.hook_resid_post");

    // A --set no plugin takes is an error before anything runs.
    let runs2 = dir.path().join("runs2");
    let out = loupe_run(
        &exp,
        &runs2,
        &["--set", "topk=2", "--plugins", plugins.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--set topk") && stderr.contains("`top_k`"),
        "{stderr}"
    );
    assert!(!runs2.exists());

    // So is a --device no run can use.
    let out = loupe_run(
        &exp,
        &runs2,
        &["--device", "tpu", "--plugins", plugins.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("loupe: --device tpu: unknown device"),
        "{stderr}"
    );
    assert!(!runs2.exists());
}

/// Every run of a file is checked before any starts: a file with problems is refused whole, each
/// problem on its own line with its place, and nothing runs; `--check` checks a good file and runs
/// nothing either.
#[test]
fn every_run_is_checked_before_any_starts() {
    let plugins = product_plugins();
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "[[run]]\nname = \"good\"\nplugin = \"act-stats\"\nmodel = \"{}\"\ndata = \"{}\"\n\n",
        tiny_model().display(),
        corpus().display()
    );
    let exp = write_experiment(
        dir.path(),
        &format!(
            "{good}\
             [[run]]\nname = \"typo\"\nplugin = \"act-stats\"\nmodel = \"{model}\"\n[run.params]\ntopk = 3\n\n\
             [[run]]\nname = \"wrongtype\"\nplugin = \"act-stats\"\nmodel = \"{model}\"\n[run.params]\ntop_k = \"five\"\n\n\
             [[run]]\nname = \"missing\"\nplugin = \"act-stat\"\n\n\
             [[run]]\nname = \"nomodel\"\nplugin = \"act-stats\"\nmodel = \"no/such/model\"\n\n\
             [[run]]\nname = \"nodata\"\nplugin = \"act-stats\"\nmodel = \"{model}\"\ndata = \"absent.txt\"\n\n\
             [[run]]\nname = \"nohook\"\nplugin = \"act-stats\"\nmodel = \"{model}\"\n[run.params]\nhook = \"blocks.0.mlp.hook_postt\"\n",
            good = good
                .replace("{model}", &tiny_model().display().to_string())
                .replace(
                    "{corpus}",
                    &repo_root()
                        .join("examples/tiny-corpus.txt")
                        .display()
                        .to_string()
                ),
            model = tiny_model().display()
        ),
    );
    let runs = dir.path().join("runs");
    for extra in [&[][..], &["--check"]] {
        let mut args = vec!["--plugins", plugins.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = loupe_run(&exp, &runs, &args);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            !runs.exists(),
            "nothing may start while a run has a problem"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let e = exp.display().to_string();
        assert!(
            stderr.contains(&format!(
                "{e}: 6 of 7 runs cannot start, so none was started"
            )),
            "{stderr}"
        );
        let line = |prefix: String| {
            stderr
                .lines()
                .find(|l| l.trim_start().starts_with(&prefix))
                .unwrap_or_else(|| panic!("no line starting `{prefix}` in:\n{stderr}"))
                .to_string()
        };
        assert!(line(format!("{e}:12: params.topk:")).contains("`top_k`"));
        assert_eq!(
            line(format!("{e}:19: params.top_k:")).trim(),
            format!("{e}:19: params.top_k: expected an integer, got \"five\"")
        );
        assert!(line(format!("{e}:23: run.plugin: no plugin `act-stat`")).contains("`act-stats`"));
        assert!(line(format!("{e}:25: run.model:")).contains("no/such/model"));
        assert!(line(format!("{e}:30: run.data:")).contains("absent.txt"));
        assert!(
            line(format!("{e}:41: params.hook:")).contains("blocks.0.mlp.hook_post"),
            "a close name"
        );
    }

    // The good run alone passes the check, and still nothing runs.
    let exp = write_experiment(dir.path(), &good);
    let out = loupe_run(
        &exp,
        &runs,
        &["--plugins", plugins.to_str().unwrap(), "--check"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok  good: act-stats 0.1.0 on cpu") && stdout.contains("default ("),
        "{stdout}"
    );
    assert!(
        stdout.contains("all 1 run(s) can start (none was started)"),
        "{stdout}"
    );
    assert!(!runs.exists());
}

#[test]
fn plugins_list_and_check_describe_the_manifest() {
    let plugins = product_plugins();
    // A directory with a good plugin and a broken file: both listed, the broken one with its reason.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugins.join("act-stats.wasm"),
        dir.path().join("act-stats.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm\x0d\0\x01\0junk").unwrap();
    let out = loupe_output(&["plugins", "list", "--plugins", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("BROKEN") && stdout.contains("broken.wasm: malformed component"),
        "{stdout}"
    );
    assert!(
        stdout.contains("act-stats 0.1.0 (method act-stats, loupe:plugin@0.3.2)"),
        "{stdout}"
    );
    assert!(stdout.contains("top_k (int, default 5)"), "{stdout}");

    let file = plugins.join("act-stats.wasm");
    // A fresh cache: the first load compiles, the next one reuses the compiled code.
    let cache = tempfile::tempdir().unwrap();
    let check = || {
        loupe_cmd()
            .env("LOUPE_CACHE_DIR", cache.path())
            .args(["plugins", "check", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = String::from_utf8(check().stdout).unwrap();
    let second = String::from_utf8(check().stdout).unwrap();
    assert!(
        first.contains("— compiled") && second.contains("— cached"),
        "{first}\n{second}"
    );
    assert!(second.contains("ok: "), "{second}");

    let out = loupe_output(&["plugins", "check", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["manifest"]["name"], "act-stats");
    assert_eq!(v["manifest"]["params"].as_array().unwrap().len(), 8);
}

/// A cached-activations file with a 2-D `activations` tensor of `rows` × `width` known values.
fn write_activations(path: &Path, rows: usize, width: usize) -> Vec<f32> {
    let values: Vec<f32> = (0..rows * width).map(|i| i as f32 * 0.5 - 3.0).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, width], &bytes)
            .unwrap();
    safetensors::serialize_to_file([("activations", view)], None, path).unwrap();
    values
}

#[test]
fn the_api_reaches_datasets_the_model_and_artifacts() {
    let tour = misbehaving_plugins().join("api-tour.wasm");
    let dir = tempfile::tempdir().unwrap();
    let values = write_activations(&dir.path().join("acts.safetensors"), 7, 4);
    let exp = write_experiment(
        dir.path(),
        &format!(
            "[[run]]\nplugin = \"{}\"\nmodel = \"{}\"\nseed = 42\n\
             limits = {{ tensor_mb = 64 }}\n\
             data = {{ acts = \"acts.safetensors\", text = {{ path = \"{}\", seq_len = 8 }} }}\n",
            tour.display(),
            tiny_model().display(),
            corpus().display()
        ),
    );
    let runs = dir.path().join("runs");
    let out = loupe_run(&exp, &runs, &["--device", "cpu"]);
    assert_success(&out);
    let run = &run_dirs(&runs)[0];
    let s = &read_json(&run.join("summary.json"))["summary"];
    assert_eq!(s["datasets"], serde_json::json!(["acts", "text"]));
    assert_eq!(s["acts_rows"], 7);
    let sum: f64 = values.iter().map(|&v| v as f64).sum();
    assert!((s["acts_sum"].as_f64().unwrap() - sum).abs() < 1e-3, "{s}");
    assert_eq!(s["acts_exhausted"], true);
    assert_eq!(s["acts_first_row"], serde_json::json!(values[..4]));
    assert_eq!(s["n_layers"], 2);
    assert_eq!(s["d_model"], 64);
    assert_eq!(s["bos"], 0);
    assert_eq!(s["wte_shape"], serde_json::json!([512, 64]));
    assert!(
        s["missing_weight"]
            .as_str()
            .unwrap()
            .contains("`wte.weight`"),
        "{s}"
    );
    assert_eq!(s["round_trip"], "attention heads move information");
    assert!(s["plain_change"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(
        s["ablated_change"], 0.0,
        "zeroed attention leaves the residual stream as it was"
    );
    assert_eq!(s["logits_shape"], serde_json::json!([2, 8, 512]));
    let bad_hook = s["bad_hook"].as_str().unwrap();
    assert!(
        bad_hook.starts_with("model.run: unknown hook `blocks.0.hook_resid_mdi`"),
        "{bad_hook}"
    );
    assert!(bad_hook.contains("`blocks.0.hook_resid_mid`"), "{bad_hook}");
    assert_eq!(s["seed"], 42);
    assert_eq!(s["keep_top_k"], serde_json::json!([0.0, 5.0, 3.0, 0.0]));
    let adam: Vec<f64> = serde_json::from_value(s["adam"].clone()).unwrap();
    assert!(
        (adam[0] - 0.9).abs() < 1e-6 && (adam[1] - 1.1).abs() < 1e-6,
        "{adam:?}"
    );
    let too_big = s["too_big"].as_str().unwrap();
    assert!(
        too_big.starts_with("model.run: a pass over [512, 128] tokens needs about")
            && too_big.contains("tensor quota of 64 MiB"),
        "{too_big}"
    );
    // Gradients: the three asked for, no logits when not asked, and the chain rule through the hook.
    assert!(s["loss"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(
        s["grad_names"],
        serde_json::json!(["blocks.0.hook_resid_post", "h.0.mlp.c_fc.weight", "input"])
    );
    assert_eq!(s["grad_logits"], false);
    let (chain, scale) = (
        s["chain_diff"].as_f64().unwrap(),
        s["input_grad_scale"].as_f64().unwrap(),
    );
    assert!(scale > 0.0 && chain <= 1e-4 * scale, "{s}");
    let bad_wrt = s["bad_wrt"].as_str().unwrap();
    assert!(
        bad_wrt.starts_with("model.run-with-grad: wrt `inptu` names no hook or weight"),
        "{bad_wrt}"
    );
    let artifacts = run.join("artifacts/tour");
    let csv = std::fs::read_to_string(artifacts.join("table.csv")).unwrap();
    assert_eq!(csv, "a,b\r\n1,\"x,y\"\r\n");
    let png = std::fs::read(artifacts.join("image.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let wte = read_safetensors(&artifacts.join("wte.safetensors"));
    assert_eq!(wte["wte"].shape, [512, 64]);
}

/// Ctrl-C (SIGINT) and SIGTERM during `loupe run`, sent to the real binary: the run going stops at
/// its next check and the file's later run ends at once, each with a `summary.json` saying it was
/// cancelled and its events kept; the command says it was interrupted.
#[cfg(unix)]
#[test]
fn a_signal_ends_every_run_with_its_summary() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    for (signal, name) in [(libc::SIGINT, "Ctrl-C"), (libc::SIGTERM, "SIGTERM")] {
        let dir = tempfile::tempdir().unwrap();
        let exp = write_experiment(
            dir.path(),
            &format!("{}{}", spin_run("first", 120), spin_run("second", 120)),
        );
        let runs = dir.path().join("runs");
        let mut child = loupe_cmd()
            .arg("run")
            .arg(&exp)
            .arg("--out")
            .arg(&runs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !(line.contains("first") && line.contains(" started ")) {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "loupe ended before the run started"
            );
        }
        // SAFETY: sends a signal to the child we spawned, which is still running.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("loupe: {name}: asking 1 run(s) to stop")),
            "{stderr}"
        );
        assert!(
            stderr.contains("interrupted: 0 of 2 runs finished"),
            "{stderr}"
        );
        let dirs = run_dirs(&runs);
        assert_eq!(dirs.len(), 2, "both runs have their directory");
        for d in &dirs {
            let summary = read_json(&d.join("summary.json"));
            assert_eq!(summary["ended"], "cancelled", "{summary}");
            assert_eq!(summary["ok"], false);
            let events = std::fs::read_to_string(d.join("events.jsonl")).unwrap();
            assert!(events.contains("\"finished\""), "{events}");
        }
    }
}
