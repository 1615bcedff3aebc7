//! Which experiment files dropped into the watched folder run: each complete write of a new file
//! once. A file that already ran and is written again is an edit — left alone unless the host was
//! started with `--rerun-on-change` — and a write that leaves its content as it was (a second close,
//! a `touch`) never runs it twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What to do with a file the watcher reports complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// The same content as when it ran: nothing to do, nothing to say.
    Unchanged,
    /// Edited after it ran, and edits do not rerun.
    EditIgnored,
}

#[derive(Default)]
pub struct Inbox {
    rerun_on_change: bool,
    /// The content each file had when it was last run.
    ran: HashMap<PathBuf, [u8; 32]>,
}

impl Inbox {
    pub fn new(rerun_on_change: bool) -> Inbox {
        Inbox {
            rerun_on_change,
            ran: HashMap::new(),
        }
    }

    /// Decides on `path`, whose current content is `content` (`None` if unreadable: it runs, and
    /// the runner says why it cannot be read).
    pub fn take(&mut self, path: &Path, content: Option<&[u8]>) -> Decision {
        let Some(content) = content else {
            self.ran.remove(path);
            return Decision::Run;
        };
        let hash: [u8; 32] = Sha256::digest(content).into();
        match self.ran.get(path) {
            Some(before) if *before == hash => Decision::Unchanged,
            Some(_) if !self.rerun_on_change => Decision::EditIgnored,
            _ => {
                self.ran.insert(path.to_path_buf(), hash);
                Decision::Run
            }
        }
    }

    /// The file was removed or renamed away: dropped again later, it is new.
    pub fn forget(&mut self, path: &Path) {
        self.ran.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_runs_once_per_content_and_edits_wait_for_a_new_drop() {
        let mut inbox = Inbox::new(false);
        let p = Path::new("inbox/a.toml");
        assert_eq!(inbox.take(p, Some(b"one")), Decision::Run);
        assert_eq!(inbox.take(p, Some(b"one")), Decision::Unchanged);
        assert_eq!(inbox.take(p, Some(b"two")), Decision::EditIgnored);
        assert_eq!(
            inbox.take(p, Some(b"two")),
            Decision::EditIgnored,
            "still the old run's file"
        );
        inbox.forget(p);
        assert_eq!(
            inbox.take(p, Some(b"two")),
            Decision::Run,
            "removed, then dropped again"
        );
        // Another file is its own.
        assert_eq!(
            inbox.take(Path::new("inbox/b.toml"), Some(b"one")),
            Decision::Run
        );
    }

    #[test]
    fn with_rerun_on_change_an_edit_runs_but_an_unchanged_write_does_not() {
        let mut inbox = Inbox::new(true);
        let p = Path::new("a.toml");
        assert_eq!(inbox.take(p, Some(b"one")), Decision::Run);
        assert_eq!(inbox.take(p, Some(b"one")), Decision::Unchanged);
        assert_eq!(inbox.take(p, Some(b"two")), Decision::Run);
        assert_eq!(
            inbox.take(p, None),
            Decision::Run,
            "unreadable: the runner reports it"
        );
    }
}
