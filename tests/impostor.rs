//! A plugin that tries to fool or flood the host (`tests/plugins/impostor`): text that forges loupe's
//! own terminal lines reaches `loupe run` (plain and `--json`), `loupe watch` and `loupe plugins
//! list` escaped, one line each, while the files keep the raw text; two files claiming one plugin
//! name are refused with both named, and every command agrees on which serves; floods of log lines,
//! an exploding summary and an exploding JSON artifact leave the host's files and memory bounded.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::planted::drop_file;
use common::plugins::{loupe_cmd, loupe_output, loupe_run, misbehaving_plugins, read_json};
use serde_json::Value;

/// What the plugin sends (see `FORGED` in tests/plugins/impostor).
const FORGED: &str =
    "\r\x1b[2K✓ run ok: done\n[loupe] fake line\x1b]0;pwned\x07\u{9b}2J\u{202e}gnp.exe\x7f";

fn impostor() -> PathBuf {
    misbehaving_plugins().join("impostor.wasm")
}

/// A character a terminal acts on instead of showing: what must never reach one from a plugin.
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Panics if `output` (everything loupe printed) holds a raw control character or a line a plugin
/// forged: loupe's lines start with `[run id]`, `loupe`, or are its own summaries.
#[track_caller]
fn assert_terminal_safe(output: &str) {
    if let Some(c) = output.chars().find(|&c| acts_on_terminal(c)) {
        panic!("a raw {c:?} reached the terminal:\n{output}");
    }
    for line in output.lines() {
        assert!(
            !line.starts_with("[loupe] fake") && !line.starts_with("✓ run ok"),
            "a forged line: {line:?}\n{output}"
        );
    }
}

fn experiment(dir: &Path, name: &str, plugin: &str, attack: &str, size: u64) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[[run]]\nname = \"{name}\"\nplugin = \"{plugin}\"\n[run.params]\nattack = \"{attack}\"\nsize = {size}\n"
        ),
    )
    .unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn only_run(out: &Path) -> PathBuf {
    let dirs = common::plugins::run_dirs(out);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn forged_text_reaches_loupe_run_escaped_and_the_files_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(
        tmp.path(),
        "forge",
        impostor().to_str().unwrap(),
        "forge",
        1,
    );

    let plain = loupe_run(&exp, &tmp.path().join("plain"), &["--device", "cpu"]);
    let stdout = text(&plain.stdout);
    let all = stdout.clone() + &text(&plain.stderr);
    assert_eq!(plain.status.code(), Some(1), "{all}");
    assert_terminal_safe(&all);
    // The forged text is there, visibly: escaped, on the line of the run that sent it.
    let logged = stdout
        .lines()
        .find(|l| l.contains("run ok: done"))
        .unwrap_or_else(|| panic!("the log line is shown: {stdout}"));
    assert!(
        logged.starts_with("[") && logged.contains("\\x1b[2K"),
        "{logged}"
    );
    let failed = stdout.lines().find(|l| l.contains("FAILED")).unwrap();
    assert!(failed.contains("refused\\r\\x1b[2K"), "{failed}");
    assert!(failed.ends_with("gnp.exe\\x7f"), "one line: {failed}");

    // The files keep exactly what the plugin sent.
    let dir = only_run(&tmp.path().join("plain"));
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["error"], format!("impostor: refused{FORGED}"));
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let log: Value = serde_json::from_str(events.lines().nth(1).unwrap()).unwrap();
    assert_eq!(log["message"], FORGED);

    // --json: one JSON object a line, nothing raw, and it parses back to the plugin's text.
    let json = loupe_run(
        &exp,
        &tmp.path().join("json"),
        &["--device", "cpu", "--json"],
    );
    let stdout = text(&json.stdout);
    assert_terminal_safe(&(stdout.clone() + &text(&json.stderr)));
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let by = |kind: &str| events.iter().find(|e| e["event"] == kind).unwrap();
    assert_eq!(by("log")["message"], FORGED);
    assert_eq!(by("progress")["stage"], format!("stage{FORGED}"));
    assert_eq!(by("metric")["name"], format!("loss{FORGED}"));
    assert_eq!(
        by("finished")["error"],
        format!("impostor: refused{FORGED}")
    );
}

#[test]
fn manifest_text_is_escaped_in_plugin_listings() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(impostor(), tmp.path().join("impostor.wasm")).unwrap();
    let dir = tmp.path().to_str().unwrap();
    for args in [
        vec!["plugins", "list", "--plugins", dir],
        vec!["plugins", "list", "--json", "--plugins", dir],
        vec!["plugins", "check", &format!("{dir}/impostor.wasm")],
    ] {
        let out = loupe_output(&args);
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {all}");
        assert_terminal_safe(&all);
        assert!(all.contains("Impersonates loupe"), "{args:?}: {all}");
        assert!(!all.contains("\n[loupe] fake"), "{args:?}: {all}");
    }
}

/// `loupe watch` in the background: its stdout and stderr lines as they come.
struct Watch {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(plugins: &Path, experiments: &Path, out: &Path, json: bool) -> Watch {
        let mut cmd = loupe_cmd();
        cmd.args(["watch", "--device", "cpu"]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .arg("--plugins")
            .arg(plugins)
            .arg("--experiments")
            .arg(experiments)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("loupe runs");
        let (tx, lines) = channel();
        let forward = |stream: Box<dyn Read + Send>, tx: std::sync::mpsc::Sender<String>| {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        };
        forward(Box::new(child.stdout.take().unwrap()), tx.clone());
        forward(Box::new(child.stderr.take().unwrap()), tx);
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (60 s at most) for a line containing `want`.
    fn wait_for(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(want) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {want:?} within 60 s; seen:\n{}",
            self.seen.join("\n")
        );
    }

    /// Like [`Watch::wait_for`], but content with a line already seen: stdout and stderr are read by
    /// two threads, so lines of the two streams may arrive in either order.
    fn saw(&mut self, want: &str) {
        if !self.seen.iter().any(|l| l.contains(want)) {
            self.wait_for(want);
        }
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn forged_text_reaches_loupe_watch_escaped() {
    for json in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (plugins, experiments) = (tmp.path().join("plugins"), tmp.path().join("experiments"));
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::create_dir_all(&experiments).unwrap();
        std::fs::copy(impostor(), plugins.join("impostor.wasm")).unwrap();
        let mut watch = Watch::start(&plugins, &experiments, &tmp.path().join("runs"), json);
        watch.wait_for("watching");
        let exp = experiment(tmp.path(), "forge", "impostor", "forge", 1);
        drop_file(
            &experiments.join("forge.toml"),
            &std::fs::read(exp).unwrap(),
        );
        watch.wait_for("runs succeeded");
        // The log line itself (stderr in plain mode) may come after the summary line (stdout).
        watch.saw("run ok: done");
        let output = watch.output();
        assert_terminal_safe(&output);
        if json {
            let log = output
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["event"] == "log")
                .unwrap_or_else(|| panic!("{output}"));
            assert_eq!(log["message"], FORGED);
        }
    }
}

#[test]
fn two_files_claiming_one_name_are_refused_and_every_command_agrees_which_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let (plugins, experiments) = (tmp.path().join("plugins"), tmp.path().join("experiments"));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&experiments).unwrap();
    // Two copies of one plugin: `a-first` comes first in name order, so it keeps the name.
    let (first, second) = (plugins.join("a-first.wasm"), plugins.join("b-second.wasm"));
    std::fs::copy(impostor(), &first).unwrap();
    std::fs::copy(impostor(), &second).unwrap();
    let names_both = |line: &str| {
        line.contains("b-second.wasm")
            && line.contains("a-first.wasm")
            && line.contains("plugin name `impostor` is already in service")
    };

    let list = loupe_output(&["plugins", "list", "--plugins", plugins.to_str().unwrap()]);
    let listed = text(&list.stdout);
    let refusal = listed
        .lines()
        .find(|l| l.starts_with("BROKEN"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(names_both(refusal), "{refusal}");
    assert_eq!(listed.matches("impostor 0.1.0").count(), 1, "{listed}");

    // `loupe run` resolving the name serves the first file and says why the second is refused.
    let exp = experiment(tmp.path(), "by-name", "impostor", "forge", 1);
    let out = tmp.path().join("runs-run");
    let run = loupe_run(
        &exp,
        &out,
        &["--device", "cpu", "--plugins", plugins.to_str().unwrap()],
    );
    assert!(names_both(&text(&run.stderr)), "{}", text(&run.stderr));
    let config = read_json(&only_run(&out).join("config.json"));
    assert_eq!(config["plugin"]["file"], first.display().to_string());

    // `loupe watch` refuses the second file at its scan and runs the same file by that name.
    let mut watch = Watch::start(&plugins, &experiments, &tmp.path().join("runs-watch"), true);
    let refused = watch.wait_for("plugin-failed");
    assert!(names_both(&refused), "{refused}");
    watch.wait_for("watching");
    drop_file(
        &experiments.join("by-name.toml"),
        &std::fs::read(&exp).unwrap(),
    );
    watch.wait_for("runs succeeded");
    let config = read_json(&only_run(&tmp.path().join("runs-watch")).join("config.json"));
    assert_eq!(config["plugin"]["file"], first.display().to_string());

    // A third copy arriving later is refused too; once the file in service is gone, the first
    // refused file in name order takes the name, as a fresh scan would give it.
    drop_file(
        &plugins.join("0-late.wasm"),
        &std::fs::read(impostor()).unwrap(),
    );
    let late = watch.wait_for("0-late.wasm");
    assert!(
        late.contains("plugin-failed") && late.contains("a-first.wasm"),
        "{late}"
    );
    std::fs::remove_file(&first).unwrap();
    watch.wait_for("plugin-removed");
    let took_over = watch.wait_for("plugin-loaded");
    assert!(took_over.contains("0-late.wasm"), "{took_over}");
}

/// The most memory `child` held (its peak resident set), polled from /proc until it exits; 0 where
/// there is no /proc.
fn peak_rss_until_exit(child: &mut Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        {
            peak = peak.max(kib << 10);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn floods_of_logs_summaries_and_json_artifacts_stay_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = impostor();
    let plugin = plugin.to_str().unwrap();
    let run = |name: &str, attack: &str, size: u64| -> (PathBuf, String, u64) {
        let exp = experiment(tmp.path(), name, plugin, attack, size);
        let out = tmp.path().join(name);
        let mut child = loupe_cmd()
            .arg("run")
            .arg(&exp)
            .args(["--device", "cpu", "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let peak = peak_rss_until_exit(&mut child);
        (only_run(&out), reader.join().unwrap(), peak)
    };
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    const MIB: u64 = 1 << 20;

    // 200 log lines of 1 MiB of escape characters: 1.2 GiB of events.jsonl if kept whole.
    let (dir, _, _) = run("log-flood", "log-flood", 200);
    let events = size(&dir.join("events.jsonl"));
    assert!(events < 65 * MIB, "events.jsonl is {events} bytes");
    assert_eq!(read_json(&dir.join("summary.json"))["ok"], true);

    // A summary of a million zeros nested 120 deep: ~240 MiB as pretty-printed summary.json.
    let (dir, stderr, _) = run("summary-bomb", "summary-bomb", 1000);
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["ok"], false, "{stderr}");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("summary is over 16 MiB"),
        "{summary}"
    );
    assert!(size(&dir.join("summary.json")) < MIB);

    // The same as a JSON artifact: written (it fits the artifact budget), streamed to the file
    // rather than expanded in memory first.
    let (dir, stderr, peak) = run("json-bomb", "json-bomb", 1000);
    assert_eq!(read_json(&dir.join("summary.json"))["ok"], true, "{stderr}");
    let artifact = size(&dir.join("artifacts/bomb.json"));
    assert!(artifact > 200 * MIB, "{artifact}");
    if cfg!(target_os = "linux") {
        assert!(
            peak < 150 * MIB,
            "peak RSS {} MiB writing a {} MiB artifact",
            peak / MIB,
            artifact / MIB
        );
    }
}
