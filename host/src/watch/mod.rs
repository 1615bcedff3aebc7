//! Watching directories for files dropped into them (`loupe watch`): debounced file-system events
//! turned into "this file is now complete" and "this file is gone".
//!
//! A file being copied in arrives as a creation followed by writes; only the writes' end (the
//! writer closing the file) or a rename into place says it is complete, so creations and writes are
//! not taken (on platforms that do not report closes, writes are, once the debounce window passes
//! without more). Reads (including the host's
//! own, when it loads a plugin) are ignored, or every load would trigger another. Hidden files
//! (`.name.wasm.part`, editors' swap files) are never taken.

mod inbox;
mod service;

pub use service::{Emit, HostEvent, ServiceConfig, queue, serve};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{Event, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// What became of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Complete (written and closed, or renamed into place): (re)load it.
    Ready(PathBuf),
    /// Removed or renamed away.
    Gone(PathBuf),
}

impl Change {
    pub fn path(&self) -> &Path {
        match self {
            Change::Ready(p) | Change::Gone(p) => p,
        }
    }
}

/// Whether the watcher reports a writer closing a file (Linux's inotify does).
const REPORTS_CLOSE: bool = cfg!(target_os = "linux");

fn wanted(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|e| e == extension)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
}

/// The files with `extension` that `events` (in order) completed or removed, each once, in the state
/// the last event left it.
pub fn changes(events: &[Event], extension: &str) -> Vec<Change> {
    let mut last: BTreeMap<PathBuf, (usize, Change)> = BTreeMap::new();
    let mut order = 0;
    let mut note = |change: Change| {
        if wanted(change.path(), extension) {
            order += 1;
            last.insert(change.path().to_path_buf(), (order, change));
        }
    };
    for event in events {
        let first = event.paths.first().cloned();
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => event
                .paths
                .iter()
                .cloned()
                .map(Change::Ready)
                .for_each(&mut note),
            // Where the platform reports closes (inotify), a write is complete only when closed;
            // elsewhere the debounce window has to do.
            EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Any)
                if !REPORTS_CLOSE =>
            {
                event
                    .paths
                    .iter()
                    .cloned()
                    .map(Change::Ready)
                    .for_each(&mut note)
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                first.map(Change::Ready).into_iter().for_each(&mut note)
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => event
                .paths
                .iter()
                .cloned()
                .map(Change::Gone)
                .for_each(&mut note),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let [from, to] = &event.paths[..] {
                    note(Change::Gone(from.clone()));
                    note(Change::Ready(to.clone()));
                }
            }
            // A rename whose direction the platform does not say: the file's presence tells.
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Any | EventKind::Other => {
                for path in &event.paths {
                    note(if path.is_file() {
                        Change::Ready(path.clone())
                    } else {
                        Change::Gone(path.clone())
                    });
                }
            }
            // Creation (content may still be coming), metadata, and reads.
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Access(_) => {}
        }
    }
    let mut changes: Vec<(usize, Change)> = last.into_values().collect();
    changes.sort_by_key(|(order, _)| *order);
    changes.into_iter().map(|(_, c)| c).collect()
}

/// Debounced events of some directories (not their sub-directories).
pub struct DirWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    events: Receiver<DebounceEventResult>,
}

impl DirWatcher {
    /// Watches `dirs`; events are delivered once `debounce` has passed without more for a file.
    pub fn new(dirs: &[&Path], debounce: Duration) -> Result<Self, String> {
        let (tx, events) = channel();
        let mut debouncer =
            new_debouncer(debounce, None, tx).map_err(|e| format!("cannot watch files: {e}"))?;
        for dir in dirs {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| format!("{}: cannot watch: {e}", dir.display()))?;
        }
        Ok(DirWatcher {
            _debouncer: debouncer,
            events,
        })
    }

    /// The next batch of events, waiting at most `timeout`: `Ok(None)` when none came, `Err` when
    /// watching failed for good.
    pub fn next(&self, timeout: Duration) -> Result<Option<Vec<Event>>, String> {
        match self.events.recv_timeout(timeout) {
            Ok(Ok(events)) => Ok(Some(events.into_iter().map(|e| e.event).collect())),
            Ok(Err(errors)) => Err(errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("the file watcher stopped".into()),
        }
    }
}

/// The `.toml` files of `dir`, sorted.
pub fn experiment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind};

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn a_copy_is_ready_when_written_not_when_created() {
        let create = event(EventKind::Create(CreateKind::File), &["/p/a.wasm"]);
        assert!(changes(std::slice::from_ref(&create), "wasm").is_empty());
        let write = event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &["/p/a.wasm"],
        );
        let close = event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &["/p/a.wasm"],
        );
        if REPORTS_CLOSE {
            assert!(changes(&[create.clone(), write.clone()], "wasm").is_empty());
        }
        assert_eq!(
            changes(&[create, write, close], "wasm"),
            vec![Change::Ready("/p/a.wasm".into())]
        );
    }

    #[test]
    fn reads_and_other_files_are_ignored() {
        let open = event(
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            &["/p/a.wasm"],
        );
        let close = |p: &str| {
            event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &[p],
            )
        };
        let hidden = close("/p/.a.wasm.part");
        let other = close("/p/notes.txt");
        assert!(changes(&[open, hidden, other], "wasm").is_empty());
    }

    #[test]
    fn renames_and_removals() {
        // A temporary file renamed into place: ready at once; the temporary name is hidden.
        let both = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/p/.a.wasm.part", "/p/a.wasm"],
        );
        assert_eq!(
            changes(&[both], "wasm"),
            vec![Change::Ready("/p/a.wasm".into())]
        );
        let to = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &["/p/b.wasm"],
        );
        let away = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            &["/p/c.wasm"],
        );
        let removed = event(EventKind::Remove(RemoveKind::File), &["/p/d.wasm"]);
        assert_eq!(
            changes(&[to, away, removed], "wasm"),
            vec![
                Change::Ready("/p/b.wasm".into()),
                Change::Gone("/p/c.wasm".into()),
                Change::Gone("/p/d.wasm".into()),
            ]
        );
        // The last event decides: written, then removed, in one batch.
        let write = event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &["/p/e.wasm"],
        );
        let removed = event(EventKind::Remove(RemoveKind::File), &["/p/e.wasm"]);
        assert_eq!(
            changes(&[write, removed], "wasm"),
            vec![Change::Gone("/p/e.wasm".into())]
        );
    }
}
