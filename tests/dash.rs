//! `loupe dash` end to end in a pseudo-terminal (80×24), read back through a terminal emulator: a
//! plugin dropped into the watched directory appears, a run started from the picker finishes, a broken
//! replacement shows while the old version stays listed, an earlier run is listed as history, Enter
//! opens a run's detail view with its summary, and Ctrl-C restores the terminal; a panic
//! restores it too, and without a terminal the dashboard says so.
#![cfg(unix)]

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::planted::{act_stats_experiment, drop_file};
use common::plugins::{loupe_cmd, product_plugins, repo_root, spin_run, tiny_model};

/// A pseudo-terminal pair of the given size.
fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors it opened into the integers given; we own them after.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The dashboard on a terminal: its output parsed into a screen, keys written to it.
struct Dash {
    child: Child,
    /// The terminal's side, kept to read its mode (raw or not) after the dashboard exits.
    terminal: OwnedFd,
    input: File,
    output: Receiver<Vec<u8>>,
    screen: vt100::Parser,
    raw: Vec<u8>,
}

impl Dash {
    fn start(plugins: &Path, experiments: &Path, out: &Path) -> Dash {
        let mut cmd = loupe_cmd();
        cmd.args(["dash", "--device", "cpu"])
            .arg("--plugins")
            .arg(plugins)
            .arg("--experiments")
            .arg(experiments)
            .arg("--out")
            .arg(out);
        Dash::spawn(cmd)
    }

    /// Runs `cmd` on a new 80×24 pseudo-terminal, as its controlling terminal.
    fn spawn(mut cmd: Command) -> Dash {
        let (master, slave) = open_pty(24, 80);
        cmd.env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
        // controlling terminal is the pty (stdin).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("the command runs");
        let input = File::from(master.try_clone().unwrap());
        let mut reader = File::from(master);
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Reading fails (EIO) once the child has closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Dash {
            child,
            terminal: slave,
            input,
            output,
            screen: vt100::Parser::new(24, 80, 0),
            raw: Vec::new(),
        }
    }

    fn contents(&self) -> String {
        self.screen.screen().contents()
    }

    /// Waits until the screen satisfies `want`, within 60 s.
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if want(&self.contents()) {
                return;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                panic!("no {what} within 60 s; the screen:\n{}", self.contents());
            };
            if let Ok(bytes) = self
                .output
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                self.screen.process(&bytes);
                self.raw.extend_from_slice(&bytes);
            }
        }
    }

    /// Resizes the terminal (the kernel signals the dashboard) and the emulated screen.
    fn resize(&mut self, rows: u16, cols: u16) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer given, on a descriptor we own.
        let rc = unsafe { libc::ioctl(self.input.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        self.screen.screen_mut().set_size(rows, cols);
    }

    fn press(&mut self, keys: &str) {
        self.input.write_all(keys.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    /// Waits (20 s at most) for the program to exit, then for what it wrote last.
    fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the program did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(300)) {
            self.raw.extend_from_slice(&bytes);
        }
        status
    }

    /// Everything the program wrote, escape sequences included.
    fn written(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Whether the terminal is back in its ordinary mode: lines edited and echoed, not raw.
    fn cooked(&self) -> bool {
        // SAFETY: termios is plain data that tcgetattr fills in; the descriptor is ours.
        let mut mode: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(self.terminal.as_raw_fd(), &mut mode) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        mode.c_lflag & libc::ICANON != 0 && mode.c_lflag & libc::ECHO != 0
    }
}

/// The terminal's sequence to leave the alternate screen.
const LEAVE_ALTERNATE_SCREEN: &str = "\x1b[?1049l";

impl Drop for Dash {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The line of the plugins panel naming `plugin`, if shown.
fn plugin_line<'a>(screen: &'a str, plugin: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.starts_with(&format!("│{plugin} ")))
}

#[test]
fn the_dashboard_shows_plugins_and_runs_as_they_happen() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let experiments = tmp.path().join("experiments");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&experiments).unwrap();
    let corpus = repo_root().join("examples/tiny-corpus.txt");
    std::fs::write(
        experiments.join("stats.toml"),
        act_stats_experiment("stats", tiny_model(), &corpus),
    )
    .unwrap();
    let wasm = std::fs::read(product_plugins().join("act-stats.wasm")).unwrap();

    // A run from before the dashboard started: listed as history, under this session's runs.
    let old = tmp.path().join("runs/20250101-000000-old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join("summary.json"),
        r#"{"ok": false, "error": "an old failure", "elapsed_s": 2.0}"#,
    )
    .unwrap();

    let mut dash = Dash::start(&plugins, &experiments, &tmp.path().join("runs"));
    dash.wait_for("the panels and the history", |s| {
        s.contains("plugins")
            && s.contains("[runs · 1 earlier]")
            && s.contains("q quit")
            && s.lines()
                .any(|l| l.contains("20250101-000000-old") && l.contains("failed"))
    });

    // A plugin dropped into the directory is listed, ready.
    drop_file(&plugins.join("act-stats.wasm"), &wasm);
    dash.wait_for("act-stats ready", |s| {
        plugin_line(s, "act-stats").is_some_and(|l| l.contains("0.1.0") && l.contains("ready"))
    });

    // `r` opens the picker on the experiment directory; Enter starts the run, which finishes.
    dash.press("r");
    dash.wait_for("the picker", |s| s.contains("> stats.toml"));
    dash.press("\r");
    dash.wait_for("the run done", |s| {
        s.lines()
            .any(|l| l.contains("act-stats") && l.contains("done"))
            && s.contains("finished in")
    });

    // Enter opens the run (selected when it started) in full, its summary.json read once written;
    // Enter again closes it.
    dash.press("\r");
    dash.wait_for("the run's detail view with its summary", |s| {
        s.contains("state       done") && s.contains("\"elapsed_s\"")
    });
    dash.press("\r");
    dash.wait_for("the panels again", |s| s.contains("[runs · 1 earlier]"));

    // A broken replacement: reported, and the old version stays listed.
    drop_file(&plugins.join("act-stats.wasm"), b"not wasm at all");
    dash.wait_for("act-stats broken", |s| {
        plugin_line(s, "act-stats").is_some_and(|l| l.contains("0.1.0") && l.contains("broken"))
    });

    // A resize redraws the panels at the new size.
    dash.resize(30, 100);
    dash.wait_for("the layout at 100 columns", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.chars().position(|c| c == '┐') == Some(75))
    });

    // Ctrl-C (a key in raw mode) quits, leaves the alternate screen and the raw mode.
    dash.press("\x03");
    let status = dash.exit_status();
    assert!(status.success(), "{status:?}");
    assert!(
        dash.written().contains(LEAVE_ALTERNATE_SCREEN),
        "the alternate screen was not left"
    );
    assert!(dash.cooked(), "the terminal was left in raw mode");
}

/// Quitting with a run going (and confirming) cancels it: the run ends at its next check with a
/// `summary.json` saying so, and the dashboard exits cleanly.
#[test]
fn quitting_with_a_run_going_ends_it_with_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let experiments = tmp.path().join("experiments");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&experiments).unwrap();
    std::fs::write(experiments.join("spin.toml"), spin_run("spin", 120)).unwrap();
    let runs = tmp.path().join("runs");
    let mut dash = Dash::start(&plugins, &experiments, &runs);
    dash.wait_for("the panels", |s| s.contains("q quit"));
    dash.press("r");
    dash.wait_for("the picker", |s| s.contains("> spin.toml"));
    dash.press("\r");
    dash.wait_for("the run going", |s| {
        s.lines()
            .any(|l| l.contains("spin") && l.contains("running"))
    });
    dash.press("q");
    dash.wait_for("the question", |s| s.contains("quitting cancels them"));
    dash.press("q");
    let status = dash.exit_status();
    assert!(status.success(), "{status:?}");
    let dirs: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[0].join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["ended"], "cancelled", "{summary}");
}

/// The environment variable that makes `panicking_in_the_dashboards_terminal` do its part.
const PANIC_CHILD: &str = "LOUPE_TEST_PANIC_CHILD";

/// Run only by `a_panic_restores_the_terminal`, in a child process on a pseudo-terminal: the
/// dashboard's terminal session, a frame drawn, then a panic.
#[test]
#[ignore = "run by a_panic_restores_the_terminal in a child process"]
fn panicking_in_the_dashboards_terminal() {
    assert!(
        std::env::var_os(PANIC_CHILD).is_some(),
        "run by another test"
    );
    let mut session = loupe::dash::TerminalSession::start().unwrap();
    session
        .draw(|frame| frame.render_widget(ratatui::widgets::Paragraph::new("drawn"), frame.area()))
        .unwrap();
    panic!("a planted panic");
}

#[test]
fn a_panic_restores_the_terminal() {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "panicking_in_the_dashboards_terminal",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(PANIC_CHILD, "1");
    let mut child = Dash::spawn(cmd);
    let status = child.exit_status();
    let written = child.written();
    assert!(
        !status.success(),
        "the child should have panicked:\n{written}"
    );
    let entered = written
        .find("\x1b[?1049h")
        .expect("the alternate screen was entered");
    let drawn = written.find("drawn").expect("a frame was drawn");
    let left = drawn
        + written[drawn..]
            .find(LEAVE_ALTERNATE_SCREEN)
            .expect("the alternate screen was left");
    let message = written
        .find("a planted panic")
        .expect("the panic message shows");
    assert!(
        entered < drawn && drawn < left && left < message,
        "the terminal is restored before the panic message prints:\n{written:?}"
    );
    assert!(child.cooked(), "the terminal was left in raw mode");
}

#[test]
fn without_a_terminal_the_dashboard_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = loupe_cmd();
    cmd.args(["dash", "--device", "cpu", "--plugins"])
        .arg(tmp.path())
        .arg("--experiments")
        .arg(tmp.path())
        .stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe; a new session has no controlling terminal to open.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = cmd.output().expect("loupe runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the dashboard needs a terminal") && stderr.contains("loupe watch"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing written to standard output"
    );
}
