//! Hot loading: the plugin registry on real plugin files, and `loupe watch` end to end — plugins
//! dropped into a watched directory, experiments dropped into another and run, a broken replacement
//! reported while the old version stays in service, a removed plugin taken out of service.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::planted::{act_stats_experiment, drop_file};
use common::plugins::{loupe_cmd, loupe_output, product_plugins, tiny_model};
use loupe::plugin::{PluginEngine, PluginRegistry, RegistryEvent};
use serde_json::Value;

fn plugin_bytes(name: &str) -> Vec<u8> {
    std::fs::read(product_plugins().join(format!("{name}.wasm"))).unwrap()
}

#[test]
fn the_registry_keeps_the_last_good_version_and_unregisters_removed_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PluginEngine::with_cache_dir(None).unwrap();
    let mut registry = PluginRegistry::new();
    let path = dir.path().join("stats.wasm");
    drop_file(&path, &plugin_bytes("act-stats"));

    let event = registry.load(&engine, &path);
    assert!(
        matches!(&event, RegistryEvent::Loaded { name, replaced: None, .. } if name == "act-stats"),
        "{event:?}"
    );
    let first = registry.get("act-stats").expect("in service by name");
    assert!(registry.get("stats").is_some(), "and by file stem");

    // A broken replacement: reported, the loaded version stays, a run holding it is untouched.
    std::fs::write(&path, b"\0asm but not really").unwrap();
    let event = registry.load(&engine, &path);
    match &event {
        RegistryEvent::Failed { error, kept, .. } => {
            assert!(error.contains("stats.wasm"), "{error}");
            assert_eq!(kept, &Some(("act-stats".into(), "0.1.0".into())));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        event
            .describe()
            .contains("act-stats 0.1.0 stays in service")
    );
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &registry.get("act-stats").unwrap()
    ));
    assert!(registry.entries()[0].error.is_some());

    // Fixed again: the new load replaces the old one.
    drop_file(&path, &plugin_bytes("act-stats"));
    let event = registry.load(&engine, &path);
    assert!(
        matches!(&event, RegistryEvent::Loaded { replaced: Some(v), .. } if v == "act-stats 0.1.0"),
        "{event:?}"
    );

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        registry.remove(&path),
        Some(RegistryEvent::Removed { name, .. }) if name == "act-stats"
    ));
    assert!(registry.get("act-stats").is_none());
    assert!(registry.remove(&path).is_none());

    // A file that never loaded is listed with its error and serves nothing.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    assert!(matches!(
        registry.load(&engine, &bad),
        RegistryEvent::Failed { kept: None, .. }
    ));
    assert!(registry.names().is_empty());
}

/// `loupe watch --json` in the background, its stdout lines parsed as they come.
struct Watch {
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Watch {
    fn start(plugins: &Path, experiments: &Path, out: &Path) -> Watch {
        let mut child = loupe_cmd()
            .args(["watch", "--json", "--device", "cpu", "--jobs", "2"])
            .arg("--plugins")
            .arg(plugins)
            .arg("--experiments")
            .arg(experiments)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("loupe runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next event matching `want`, within 60 s; panics with everything seen otherwise.
    fn wait_for(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if want(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        let seen: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        panic!("no {what} within 60 s; events seen:\n{}", seen.join("\n"));
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event_is(v: &Value, event: &str) -> bool {
    v["event"] == event
}

#[test]
fn watch_hot_loads_plugins_and_runs_dropped_experiments() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let experiments = tmp.path().join("experiments");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&experiments).unwrap();
    // Present before the start: not run.
    std::fs::write(experiments.join("old.toml"), "not even toml [").unwrap();
    let corpus: PathBuf = common::plugins::repo_root().join("examples/tiny-corpus.txt");
    let model = tiny_model();
    let mut watch = Watch::start(&plugins, &experiments, &tmp.path().join("runs"));
    watch.wait_for("start", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("watching"))
    });
    watch.wait_for("the file already there named as left alone", |v| {
        v["message"].as_str().is_some_and(|m| {
            m.starts_with("1 experiment file is already in") && m.contains("left alone")
        })
    });

    // A plugin renamed into place is loaded.
    drop_file(&plugins.join("act-stats.wasm"), &plugin_bytes("act-stats"));
    let loaded = watch.wait_for("act-stats loaded", |v| {
        event_is(v, "plugin-loaded") && v["name"] == "act-stats"
    });
    assert_eq!(loaded["api_version"], "0.3.2");

    // An experiment dropped in runs with it.
    drop_file(
        &experiments.join("first.toml"),
        act_stats_experiment("first", model, &corpus).as_bytes(),
    );
    let finished = watch.wait_for("the first run to finish", |v| event_is(v, "finished"));
    assert_eq!(finished["ok"], true, "{finished}");
    watch.wait_for("the first summary", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("first.toml: 1 of 1 runs succeeded"))
    });

    // Edited after it ran: not run again, and said so (only a new drop, or --rerun-on-change, runs it).
    let edited = format!(
        "# edited\n{}",
        act_stats_experiment("first", model, &corpus)
    );
    drop_file(&experiments.join("first.toml"), edited.as_bytes());
    watch.wait_for("the edit noted and left alone", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("first.toml changed after it ran; not run again"))
    });

    // A broken replacement is reported; the old version stays in service and still runs.
    drop_file(&plugins.join("act-stats.wasm"), b"\0asm\x0d\0\x01\0 broken");
    let failed = watch.wait_for("the broken plugin reported", |v| {
        event_is(v, "plugin-failed")
    });
    assert_eq!(failed["kept"], "act-stats 0.1.0", "{failed}");
    drop_file(
        &experiments.join("second.toml"),
        act_stats_experiment("second", model, &corpus).as_bytes(),
    );
    let finished = watch.wait_for("the second run to finish", |v| event_is(v, "finished"));
    assert_eq!(finished["ok"], true, "{finished}");

    // Two experiments at once, on two workers: both run.
    for name in ["third", "fourth"] {
        drop_file(
            &experiments.join(format!("{name}.toml")),
            act_stats_experiment(name, model, &corpus).as_bytes(),
        );
    }
    let done = |v: &Value, name: &str| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(&format!("{name}.toml: 1 of 1 runs succeeded")))
    };
    let mut pending = vec!["third", "fourth"];
    while !pending.is_empty() {
        let v = watch.wait_for("the third and fourth summaries", |v| {
            pending.iter().any(|n| done(v, n))
        });
        pending.retain(|n| !done(&v, n));
    }

    // A plugin copied in place (not renamed) loads once complete; removing it unregisters it.
    std::fs::copy(product_plugins().join("sae.wasm"), plugins.join("sae.wasm")).unwrap();
    watch.wait_for("sae loaded", |v| {
        event_is(v, "plugin-loaded") && v["name"] == "sae"
    });
    std::fs::remove_file(plugins.join("sae.wasm")).unwrap();
    watch.wait_for("sae removed", |v| {
        event_is(v, "plugin-removed") && v["name"] == "sae"
    });

    // Nothing loaded half-written, and the file present at the start was never run.
    assert!(
        !watch
            .seen
            .iter()
            .any(|v| event_is(v, "plugin-failed")
                && v["path"].as_str().unwrap().ends_with("sae.wasm")),
        "{:?}",
        watch.seen
    );
    assert!(
        !watch
            .seen
            .iter()
            .any(|v| v.to_string().contains("old.toml"))
    );
}

#[test]
fn watch_refuses_a_missing_directory_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = loupe_output(&[
        "watch",
        "--plugins",
        tmp.path().to_str().unwrap(),
        "--experiments",
        tmp.path().join("nowhere").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--experiments") && err.contains("nowhere: not a directory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Events of one runner, as they come.
struct Events(std::sync::mpsc::Sender<loupe::events::Event>);

impl loupe::events::EventSink for Events {
    fn emit(&mut self, event: &loupe::events::Event) {
        let _ = self.0.send(event.clone());
    }
}

/// An experiment file whose one run spins until cancelled (or 20 s pass).
fn spinning_experiment(dir: &Path, name: &str) -> loupe::runner::Experiment {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, common::plugins::spin_run(name, 20)).unwrap();
    loupe::runner::Experiment::load(&path).unwrap()
}

/// Runs each experiment on its own runner thread (all sharing `cancellations` and `slots`) while
/// `check` reads their events.
fn spin_concurrently(
    experiments: &[loupe::runner::Experiment],
    slots: Option<std::sync::Arc<loupe::runner::DeviceSlots>>,
    check: impl FnOnce(&loupe::runner::Cancellations, &dyn Fn() -> loupe::events::Event),
) {
    use loupe::runner::{Cancellations, Runner, RunnerOptions, SharedSink};
    use std::sync::{Arc, Mutex};

    let out = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new().unwrap();
    let cancellations = Arc::new(Cancellations::new());
    let (tx, events) = channel();
    std::thread::scope(|scope| {
        for exp in experiments {
            let (engine, cancellations, tx) = (&engine, cancellations.clone(), tx.clone());
            let (out, slots) = (out.path().to_path_buf(), slots.clone());
            scope.spawn(move || {
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
                        cancellations: Some(cancellations),
                        slots,
                    },
                );
                runner.run_experiment(exp).unwrap();
            });
        }
        drop(tx);
        let next = || {
            events
                .recv_timeout(Duration::from_secs(60))
                .expect("an event within 60 s")
        };
        check(&cancellations, &next);
    });
}

fn next_started(next: &dyn Fn() -> loupe::events::Event) -> String {
    loop {
        let e = next();
        if matches!(e.body, loupe::events::EventBody::Started { .. }) {
            return e.run;
        }
    }
}

fn next_finished(next: &dyn Fn() -> loupe::events::Event) -> (String, Option<String>) {
    loop {
        let e = next();
        if let loupe::events::EventBody::Finished { error, .. } = e.body {
            return (e.run, error);
        }
    }
}

#[test]
fn cancelling_one_run_stops_it_and_leaves_the_others_running() {
    let tmp = tempfile::tempdir().unwrap();
    let experiments = [
        spinning_experiment(tmp.path(), "first"),
        spinning_experiment(tmp.path(), "second"),
    ];
    spin_concurrently(&experiments, None, |cancellations, next| {
        let started = [next_started(next), next_started(next)];
        std::thread::sleep(Duration::from_millis(300));
        assert!(cancellations.cancel(&started[0]));
        let (run, error) = next_finished(next);
        assert_eq!(run, started[0], "the other run finished instead");
        assert_eq!(error.as_deref(), Some("cancelled by the user"));
        // The other one is still spinning: it can still be cancelled, and only now ends.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            cancellations.cancel(&started[1]),
            "the second run is no longer going"
        );
        assert_eq!(
            next_finished(next),
            (started[1].clone(), Some("cancelled by the user".into()))
        );
        assert!(
            !cancellations.cancel(&started[0]),
            "a finished run has no switch"
        );
    });
}

#[test]
fn a_run_waits_for_a_free_slot_of_its_device() {
    let tmp = tempfile::tempdir().unwrap();
    let experiments = [
        spinning_experiment(tmp.path(), "first"),
        spinning_experiment(tmp.path(), "second"),
    ];
    let slots = loupe::runner::DeviceSlots::new(1);
    spin_concurrently(&experiments, Some(slots.clone()), |cancellations, next| {
        let first = next_started(next);
        // One slot on the CPU: the other run does not start while the first spins.
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(slots.in_use("cpu"), 1);
        assert!(cancellations.cancel(&first));
        // The slot is freed as the first run ends: its end and the second's start may come in
        // either order.
        let (mut first_done, mut second) = (false, None);
        while !(first_done && second.is_some()) {
            let e = next();
            match e.body {
                loupe::events::EventBody::Finished { .. } => {
                    assert_eq!(e.run, first, "only the first run can have finished");
                    first_done = true;
                }
                loupe::events::EventBody::Started { .. } => {
                    assert_ne!(e.run, first);
                    second = Some(e.run);
                }
                _ => {}
            }
        }
        let second = second.unwrap();
        assert!(cancellations.cancel(&second));
        assert_eq!(next_finished(next).0, second);
    });
}

/// Ctrl-C (SIGINT) to `loupe watch` with a run going: the run ends at its next check with a summary
/// saying it was cancelled, and the host exits cleanly once it has.
#[cfg(unix)]
#[test]
fn ctrl_c_ends_the_runs_going_with_their_summaries() {
    let tmp = tempfile::tempdir().unwrap();
    let (plugins, experiments, runs) = (
        tmp.path().join("plugins"),
        tmp.path().join("experiments"),
        tmp.path().join("runs"),
    );
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&experiments).unwrap();
    let mut watch = Watch::start(&plugins, &experiments, &runs);
    watch.wait_for("start", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("watching"))
    });
    drop_file(
        &experiments.join("spin.toml"),
        common::plugins::spin_run("spin", 120).as_bytes(),
    );
    watch.wait_for("the run started", |v| event_is(v, "started"));
    // SAFETY: signals the child this test spawned, which is still running.
    assert_eq!(
        unsafe { libc::kill(watch.child.id() as i32, libc::SIGINT) },
        0
    );
    let finished = watch.wait_for("the run finished", |v| event_is(v, "finished"));
    assert_eq!(finished["ok"], false);
    let status = watch.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let dirs: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[0].join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["ended"], "cancelled", "{summary}");
}
