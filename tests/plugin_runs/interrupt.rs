//! Interrupted runs with the real binary and real signals: a plugin that watches for the stop request
//! saves what it has (the SAE so far and a checkpoint; SNMF's best iterate) and ends as cancelled with
//! its summary; a checkpoint continues with `resume`; a plugin that ignores the request is stopped when
//! its grace period runs out.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::planted::{Rng, write_activations};
use super::common::plugins::{
    loupe_cmd, loupe_run, misbehaving_plugins, product_plugins, read_json, run_dirs,
};

/// `rows` rows of width `d`: sparse non-negative mixes of a random dictionary, plus noise.
fn planted_activations(path: &Path, d: usize, rows: usize, seed: u64) {
    let mut rng = Rng(seed);
    let atoms = 32;
    let dict: Vec<f32> = (0..atoms * d).map(|_| rng.normal() as f32).collect();
    let mut out = vec![0f32; rows * d];
    for r in 0..rows {
        for _ in 0..3 {
            let a = (rng.next_u64() % atoms as u64) as usize;
            let c = 1.0 + rng.uniform() as f32;
            for j in 0..d {
                out[r * d + j] += c * dict[a * d + j];
            }
        }
        for j in 0..d {
            out[r * d + j] += 0.05 * rng.normal() as f32;
        }
    }
    write_activations(path, &out, d);
}

/// `loupe run --json` on `exp`, its stdout read line by line.
fn spawn_json(exp: &Path, out: &Path) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = loupe_cmd()
        .arg("run")
        .arg(exp)
        .arg("--json")
        .arg("--out")
        .arg(out)
        .arg("--plugins")
        .arg(product_plugins())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// Reads events until one satisfies `until`; panics if the run ends first.
fn wait_for(
    stdout: &mut BufReader<std::process::ChildStdout>,
    until: impl Fn(&serde_json::Value) -> bool,
) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "loupe ended before the awaited event"
        );
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            assert_ne!(event["event"], "finished", "the run ended first: {event}");
            if until(&event) {
                return;
            }
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sends a signal to a child we spawned and have not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Drains stdout (so the child never blocks on a full pipe) and waits for it.
fn finish(child: Child, mut stdout: BufReader<std::process::ChildStdout>) -> Output {
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    child.wait_with_output().unwrap()
}

/// Runs `exp`, sends `sig` once an event satisfies `until`, and checks loupe exits 1 (a run that did
/// not finish).
fn interrupted(exp: &Path, out: &Path, until: impl Fn(&serde_json::Value) -> bool, sig: i32) {
    let (child, mut stdout) = spawn_json(exp, out);
    wait_for(&mut stdout, until);
    signal(&child, sig);
    let output = finish(child, stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
}

fn training_step(event: &serde_json::Value) -> bool {
    event["event"] == "progress" && event["stage"] == "train" && event["done"].as_u64() >= Some(3)
}

fn sae_experiment(data: &Path, d_sae: usize, training_tokens: u64, extra: &str) -> String {
    format!(
        r#"[[run]]
name = "sae"
plugin = "sae"
data = "{}"
[run.params]
architecture = "topk"
d_sae = {d_sae}
k = 3
batch_size = 64
training_tokens = {training_tokens}
eval_tokens = 512
log_every = 5
{extra}
"#,
        data.display()
    )
}

/// An experiment's text with `resume = "<spec>"` added to its run.
fn resuming(experiment: String, spec: &str) -> String {
    experiment.replace(
        "[run.params]",
        &format!("resume = \"{spec}\"\n[run.params]"),
    )
}

/// `loupe run` of `exp` with the product plugins.
fn run_product(exp: &Path, out: &Path) -> Output {
    loupe_run(
        exp,
        out,
        &["--plugins", product_plugins().to_str().unwrap()],
    )
}

fn only_run(out: &Path) -> PathBuf {
    let dirs = run_dirs(out);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn an_sae_asked_to_stop_saves_itself_and_a_checkpoint_that_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("acts.safetensors");
    planted_activations(&data, 16, 4096, 7);
    // Far more steps than the test waits for.
    let exp = tmp.path().join("train.toml");
    std::fs::write(&exp, sae_experiment(&data, 64, 64 * 1_000_000, "")).unwrap();
    let out = tmp.path().join("runs");
    interrupted(&exp, &out, training_step, libc::SIGINT);
    let run = only_run(&out);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["ended"], "cancelled", "{summary}");
    assert_eq!(summary["ok"], false);
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("saved what it had"),
        "{summary}"
    );
    let partial = &summary["summary"];
    assert_eq!(partial["partial"], true, "{summary}");
    let stopped_at = partial["stopped_at_step"].as_u64().unwrap();
    assert!(stopped_at >= 3, "{partial}");
    // The SAE so far, in SAELens's layout, says it is partial; so does the checkpoint.
    let art = run.join("artifacts");
    let cfg = read_json(&art.join("sae/cfg.json"));
    assert_eq!(cfg["loupe"]["partial"], true, "{cfg}");
    assert_eq!(cfg["loupe"]["steps_done"], stopped_at);
    assert!(art.join("sae/sae_weights.safetensors").is_file());
    let state = read_json(&art.join("checkpoint/training_state.json"));
    assert_eq!(state["trainer"]["step"], stopped_at, "{state}");
    assert!(art.join("checkpoint/sae_weights.safetensors").is_file());

    // Continue it to a planned end 20 steps further on: the run starts at the step it stopped at.
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    let total = stopped_at + 20;
    let resume = tmp.path().join("resume.toml");
    std::fs::write(
        &resume,
        resuming(sae_experiment(&data, 64, 64 * total, ""), &id),
    )
    .unwrap();
    let output = run_product(&resume, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let resumed = run_dirs(&out)
        .into_iter()
        .find(|d| d != &run)
        .expect("the resumed run's directory");
    let summary = read_json(&resumed.join("summary.json"));
    assert_eq!(summary["ended"], "done", "{summary}");
    assert_eq!(summary["summary"]["steps"], total, "{summary}");
    assert_eq!(summary["summary"]["resumed"]["at_step"], stopped_at);
    assert_eq!(summary["summary"]["resumed"]["from_run"], id.as_str());
    assert!(summary["summary"]["evaluation"]["rows_evaluated"].as_u64() > Some(0));
    let config = read_json(&resumed.join("config.json"));
    assert_eq!(config["resumed_from"]["id"], id.as_str());
    let cfg = read_json(&resumed.join("artifacts/sae/cfg.json"));
    assert!(
        cfg["loupe"]["partial"].is_null(),
        "the finished SAE is whole: {cfg}"
    );

    // A resume with other settings is refused by the plugin, naming what differs.
    let other = tmp.path().join("other.toml");
    std::fs::write(
        &other,
        resuming(sae_experiment(&data, 32, 64 * total, ""), &id),
    )
    .unwrap();
    let before = run_dirs(&out);
    let output = run_product(&other, &out);
    assert!(!output.status.success());
    let refused = run_dirs(&out)
        .into_iter()
        .find(|d| !before.contains(d))
        .expect("the refused run's directory");
    let summary = read_json(&refused.join("summary.json"));
    let error = summary["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("was trained with d_in → d_sae = 16 → 64, this run asks for 16 → 32"),
        "{summary}"
    );
}

#[test]
fn checkpoint_every_leaves_a_checkpoint_and_a_bad_resume_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("acts.safetensors");
    planted_activations(&data, 16, 2048, 8);
    let exp = tmp.path().join("train.toml");
    std::fs::write(
        &exp,
        sae_experiment(&data, 32, 64 * 12, "checkpoint_every = 5"),
    )
    .unwrap();
    let out = tmp.path().join("runs");
    let output = run_product(&exp, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = only_run(&out);
    let state = read_json(&run.join("artifacts/checkpoint/training_state.json"));
    assert_eq!(
        state["trainer"]["step"], 10,
        "the last checkpoint before the end: {state}"
    );
    let cfg = read_json(&run.join("artifacts/checkpoint/cfg.json"));
    assert_eq!(cfg["loupe"]["partial"], true);

    // Nothing is started when `resume` names no run, or a run of another plugin.
    for (spec, says) in [
        ("no-such-run", "no run directory there"),
        (".", "no run directory there"),
    ] {
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, resuming(sae_experiment(&data, 32, 64 * 12, ""), spec)).unwrap();
        let output = run_product(&bad, &out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(says), "{spec}: {stderr}");
        assert!(stderr.contains("none was started"), "{stderr}");
    }
    assert_eq!(run_dirs(&out).len(), 1, "no run was started");
}

#[test]
fn snmf_asked_to_stop_keeps_its_best_iterate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("acts.safetensors");
    planted_activations(&data, 24, 512, 9);
    let exp = tmp.path().join("snmf.toml");
    std::fs::write(
        &exp,
        format!(
            r#"[[run]]
name = "snmf"
plugin = "snmf"
data = "{}"
[run.params]
rank = 8
max_iter = 100000000
patience = 100000000
tol = 0.0
log_every = 1
"#,
            data.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("runs");
    let fitted_five = |e: &serde_json::Value| {
        e["event"] == "metric"
            && e["name"].as_str().is_some_and(|n| n.ends_with("fit/loss"))
            && e["step"].as_u64() >= Some(5)
    };
    interrupted(&exp, &out, fitted_five, libc::SIGTERM);
    let run = only_run(&out);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["ended"], "cancelled", "{summary}");
    assert_eq!(summary["summary"]["partial"], true, "{summary}");
    let fit = &summary["summary"]["fits"][0];
    assert_eq!(fit["interrupted"], true, "{fit}");
    assert!(fit["best_iteration"].as_u64() >= Some(5), "{fit}");
    assert!(fit["relative_error"].as_f64().unwrap() < 1.0, "{fit}");
    assert!(run.join("artifacts/snmf.safetensors").is_file());
}

/// Runs the misbehave plugin's `stall-on-stop` with `grace_s`, sends SIGINT `signals` times (half a
/// second apart) once it runs, and gives how long it took to end after the first, and its summary.
fn stall(grace_s: f64, signals: usize) -> (Duration, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("stall.toml");
    std::fs::write(
        &exp,
        format!(
            "[[run]]\nname = \"stall\"\nplugin = \"{}\"\n[run.params]\nbehaviour = \"stall-on-stop\"\n[run.limits]\nstop_grace_s = {grace_s}\n",
            misbehaving_plugins().join("misbehave.wasm").display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("runs");
    let (child, mut stdout) = spawn_json(&exp, &out);
    wait_for(&mut stdout, |e| e["event"] == "started");
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    for i in 0..signals {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        signal(&child, libc::SIGINT);
    }
    let output = finish(child, stdout);
    let waited = asked.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    (waited, read_json(&only_run(&out).join("summary.json")))
}

#[test]
fn a_plugin_that_ignores_the_stop_request_is_stopped_when_its_grace_ends() {
    let (waited, summary) = stall(1.5, 1);
    assert!(
        waited >= Duration::from_millis(1400),
        "the plugin watches for requests, so it gets its grace: stopped after {waited:?}"
    );
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    assert_eq!(summary["ended"], "cancelled", "{summary}");
    assert_eq!(summary["error"], "cancelled by the user");
}

#[test]
fn a_second_ctrl_c_ends_the_grace_at_once_and_keeps_the_summary() {
    let (waited, summary) = stall(600.0, 2);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(summary["ended"], "cancelled", "{summary}");
}
