//! A run's directory: `<out>/<id>/` with `config.json`, `events.jsonl`, `artifacts/` and `summary.json`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a fresh directory `<out>/<stamp>-<name>` (with `-2`, `-3`, ... if taken).
    pub fn create(out: &Path, name: &str) -> Result<RunDir, String> {
        std::fs::create_dir_all(out)
            .map_err(|e| format!("{}: cannot create the runs directory: {e}", out.display()))?;
        let base = format!("{}-{name}", utc_stamp(SystemTime::now()));
        for n in 1..10_000 {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = out.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { id, path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "{}: cannot create the run directory: {e}",
                        path.display()
                    ));
                }
            }
        }
        Err(format!("{}: too many runs named `{base}`", out.display()))
    }

    pub fn events(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.path.join("artifacts")
    }

    /// Writes `<dir>/<file>` atomically, pretty-printed, encoded straight into the file (the caller
    /// bounds its size: see [`pretty_json_size`]).
    pub fn write_json(&self, file: &str, value: &serde_json::Value) -> Result<(), String> {
        let path = self.path.join(file);
        let tmp = self.path.join(format!(".{file}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut out = BufWriter::new(File::create(&tmp)?);
            serde_json::to_writer_pretty(&mut out, value)?;
            out.write_all(b"\n")?;
            out.flush()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: cannot write: {e}", path.display())
        })
    }
}

/// The size of `value` pretty-printed, if at most `limit` bytes: counted without building the text,
/// and stopping once past `limit`.
pub fn pretty_json_size(value: &serde_json::Value, limit: u64) -> Option<u64> {
    crate::artifacts::counting::encoded_size(limit, |w| {
        serde_json::to_writer_pretty(w, value).map_err(std::io::Error::from)
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2026-11-26 14:34:05 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_703_645);
        assert_eq!(utc_stamp(t), "20261126-143405");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_stamp(t), "20000229-000000");
    }

    #[test]
    fn directories_never_collide() {
        let out = tempfile::tempdir().unwrap();
        let a = RunDir::create(out.path(), "x").unwrap();
        let b = RunDir::create(out.path(), "x").unwrap();
        assert_ne!(a.path, b.path);
        assert!(b.id.ends_with("-2") || !b.id.starts_with(&a.id));
    }
}
