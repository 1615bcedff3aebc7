//! Building plugins for the end-to-end tests, and the other things a plugin run needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Scratch space of the tests, inside the target directory (kept between runs, so builds are reused).
fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Builds a plugin workspace with the same script users run.
fn build(workspace: &str, out: &Path) {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/build-plugins.sh"))
        .arg(workspace)
        .arg(out)
        .current_dir(repo_root())
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "scripts/build-plugins.sh {workspace} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A plugin workspace built into `scratch()/<dir>`, once per test binary.
fn built_once(cell: &'static OnceLock<PathBuf>, workspace: &str, dir: &str) -> &'static Path {
    cell.get_or_init(|| {
        let out = scratch().join(dir);
        build(workspace, &out);
        out
    })
}

/// The product plugins (`plugins/`).
pub fn product_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    built_once(&DIR, "plugins", "plugins")
}

/// The misbehaving and test plugins (`tests/plugins/`).
pub fn misbehaving_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    built_once(&DIR, "tests/plugins", "misbehaving-plugins")
}

/// A small random GPT-2 with a tokenizer, written once per test binary.
pub fn tiny_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        write_tiny_model(scratch().join(format!("tiny-gpt2-{}", std::process::id())))
    })
}

/// The model `scripts/quickstart.sh` writes, at the path the examples name (`.quickstart/tiny-gpt2`).
pub fn quickstart_model() -> PathBuf {
    write_tiny_model(repo_root().join(".quickstart/tiny-gpt2"))
}

/// `loupe models random --preset tiny --seed 0 --out DIR`.
fn write_tiny_model(dir: PathBuf) -> PathBuf {
    let out = loupe_cmd()
        .args([
            "models", "random", "--preset", "tiny", "--seed", "0", "--out",
        ])
        .arg(&dir)
        .output()
        .expect("loupe runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The `loupe` binary with a compiled-plugin cache inside the target directory.
pub fn loupe_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loupe"));
    cmd.env("LOUPE_CACHE_DIR", scratch().join("cache"));
    cmd
}

pub fn loupe_output(args: &[&str]) -> Output {
    loupe_cmd().args(args).output().expect("loupe runs")
}

/// `loupe run EXP --out OUT ARGS...`.
pub fn loupe_run(exp: &Path, out: &Path, args: &[&str]) -> Output {
    loupe_cmd()
        .arg("run")
        .arg(exp)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("loupe runs")
}

/// `loupe run` with the product plugins on the CPU; panics with loupe's output when it fails.
pub fn run_ok(exp: &Path, out: &Path) {
    let plugins = product_plugins().to_str().unwrap().to_string();
    assert_success(&loupe_run(
        exp,
        out,
        &["--plugins", &plugins, "--device", "cpu"],
    ));
}

/// `loupe run` with the product plugins on the CPU, expected to fail: loupe's stdout and stderr.
pub fn run_err(exp: &Path, out: &Path) -> String {
    let plugins = product_plugins().to_str().unwrap().to_string();
    let output = loupe_run(exp, out, &["--plugins", &plugins, "--device", "cpu"]);
    assert!(!output.status.success(), "the run should have failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "loupe failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run directories under `out`, oldest first.
pub fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Run directories under `out` by run name (from their `summary.json`).
pub fn runs_by_name(out: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    run_dirs(out)
        .into_iter()
        .map(|d| {
            let name = read_json(&d.join("summary.json"))["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (name, d)
        })
        .collect()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An experiment's `[[run]]` of the misbehave plugin spinning until it is stopped: by a cancel, a
/// signal, or its `time_s` limit.
pub fn spin_run(name: &str, time_s: u64) -> String {
    format!(
        "[[run]]\nname = \"{name}\"\nplugin = \"{}\"\n[run.params]\nbehaviour = \"spin\"\n[run.limits]\ntime_s = {time_s}\n\n",
        misbehaving_plugins().join("misbehave.wasm").display()
    )
}
