//! `resume = "runs/<id>"`: finding the earlier run a run continues, checking it was a run of the same
//! plugin that left a checkpoint, and handing that checkpoint to the plugin as the directory dataset
//! `resume`.

use std::path::{Path, PathBuf};

use crate::data::{DirectoryDataset, DirectorySpec};

/// Where a plugin leaves what a later run needs to continue it, under the run's `artifacts/`.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// The dataset name the checkpoint is given to the plugin as.
pub const RESUME_DATASET: &str = "resume";

/// The run being continued.
pub struct Resume {
    /// Its id (directory name).
    pub id: String,
    pub dir: PathBuf,
    pub checkpoint: DirectoryDataset,
}

/// Finds `spec` — a run directory relative to the experiment file's directory or the current one,
/// or a bare run id in the output directory — and checks it can be continued by `plugin`.
pub fn find(
    spec: &str,
    experiment_dir: &Path,
    out_dir: &Path,
    plugin: &str,
) -> Result<Resume, String> {
    let candidates = [
        experiment_dir.join(spec),
        PathBuf::from(spec),
        out_dir.join(spec),
    ];
    let Some(dir) = candidates.iter().find(|c| c.join("config.json").is_file()) else {
        let tried: Vec<String> = dedup(&candidates)
            .iter()
            .map(|c| c.display().to_string())
            .collect();
        return Err(format!(
            "resume = \"{spec}\": no run directory there (looked for config.json in {}); give the directory of the run to continue, e.g. \"runs/<id>\"",
            tried.join(", ")
        ));
    };
    let config = std::fs::read_to_string(dir.join("config.json")).map_err(|e| {
        format!(
            "resume = \"{spec}\": cannot read {}: {e}",
            dir.join("config.json").display()
        )
    })?;
    let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| {
        format!(
            "resume = \"{spec}\": {} is not JSON ({e}); is this a loupe run directory?",
            dir.join("config.json").display()
        )
    })?;
    let was = config["plugin"]["name"].as_str().unwrap_or("");
    if was != plugin {
        return Err(format!(
            "resume = \"{spec}\": that was a run of plugin `{was}`, not `{plugin}`; a run continues only a run of its own plugin"
        ));
    }
    let checkpoint = dir.join("artifacts").join(CHECKPOINT_DIR);
    if !checkpoint.is_dir() {
        return Err(format!(
            "resume = \"{spec}\": {} has no checkpoint ({} is missing): it ended before its first checkpoint; set `checkpoint_every` so long runs leave one",
            dir.display(),
            checkpoint.display()
        ));
    }
    let checkpoint = DirectoryDataset::load(&DirectorySpec { path: checkpoint })
        .map_err(|e| format!("resume = \"{spec}\": {e}"))?;
    let id = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.clone())
        .file_name()
        .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Resume {
        id,
        dir: dir.clone(),
        checkpoint,
    })
}

fn dedup(paths: &[PathBuf]) -> Vec<&PathBuf> {
    let mut out: Vec<&PathBuf> = Vec::new();
    for p in paths {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir(root: &Path, id: &str, plugin: &str, checkpoint: bool) -> PathBuf {
        let dir = root.join(id);
        std::fs::create_dir_all(dir.join("artifacts")).unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::json!({ "plugin": { "name": plugin } }).to_string(),
        )
        .unwrap();
        if checkpoint {
            let c = dir.join("artifacts").join(CHECKPOINT_DIR);
            std::fs::create_dir_all(&c).unwrap();
            std::fs::write(c.join("cfg.json"), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn a_run_id_is_found_in_the_output_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("runs");
        run_dir(&out, "sae-1", "sae", true);
        let r = find("sae-1", Path::new("/nonexistent"), &out, "sae").unwrap();
        assert_eq!(r.id, "sae-1");
        assert_eq!(r.checkpoint.info().rows, 1);
        // Relative to the experiment's directory too.
        let r = find("runs/sae-1", tmp.path(), Path::new("elsewhere"), "sae").unwrap();
        assert_eq!(r.id, "sae-1");
    }

    #[test]
    fn bad_resumes_say_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        run_dir(tmp.path(), "snmf-1", "snmf", true);
        run_dir(tmp.path(), "sae-2", "sae", false);
        let e = |spec: &str| find(spec, tmp.path(), tmp.path(), "sae").err().unwrap();
        assert!(
            e("nope").contains("no run directory there"),
            "{}",
            e("nope")
        );
        assert!(
            e("snmf-1").contains("a run of plugin `snmf`, not `sae`"),
            "{}",
            e("snmf-1")
        );
        assert!(e("sae-2").contains("has no checkpoint"), "{}", e("sae-2"));
    }
}
