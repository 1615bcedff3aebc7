//! Experiment files: one or more `[[run]]` tables, each naming a plugin, a model, data, a device, a
//! seed, parameters and limits. Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::data::images::ImageSpec;
use crate::data::{ActivationSpec, DirectorySpec, TextSpec};
use crate::plugin::Limits;

/// A dataset a run declares.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSpec {
    Text(TextSpec),
    Activations(ActivationSpec),
    Directory(DirectorySpec),
    Images(ImageSpec),
}

/// A value and the line it was written on, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct AtLine<T> {
    pub value: T,
    pub line: usize,
}

/// One `[[run]]`, with paths resolved against the experiment file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Position in the file, from 0.
    pub index: usize,
    pub name: String,
    pub line: usize,
    /// A plugin name, or a path to a `.wasm` file.
    pub plugin: AtLine<String>,
    pub model: Option<PathBuf>,
    pub data: BTreeMap<String, DataSpec>,
    pub device: Option<String>,
    pub seed: u64,
    pub params: BTreeMap<String, AtLine<toml::Value>>,
    pub limits: Limits,
    /// `resume = "runs/<id>"`: the earlier run whose checkpoint this one continues, as written (the
    /// runner resolves it against the experiment's directory, the current one and `--out`).
    pub resume: Option<AtLine<String>>,
}

#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    pub runs: Vec<RunConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    run: Vec<Spanned<RunToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunToml {
    name: Option<String>,
    plugin: Spanned<String>,
    model: Option<String>,
    data: Option<Spanned<toml::Value>>,
    device: Option<String>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    params: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    limits: Limits,
    resume: Option<Spanned<String>>,
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{}: experiment file not found", path.display())
            }
            _ => format!("{}: cannot read: {e}", path.display()),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let at = |offset: usize| format!("{}:{}", path.display(), line_of(text, offset));
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let place = e.span().map_or(path.display().to_string(), |s| at(s.start));
            let message = e.message().replace('\n', " ");
            if message.contains("missing field `run`") {
                format!("{place}: no [[run]] table; add one with at least `plugin = \"...\"`")
            } else {
                format!("{place}: {message}")
            }
        })?;
        if file.run.is_empty() {
            return Err(format!(
                "{}: no [[run]] table; add one with at least `plugin = \"...\"`",
                path.display()
            ));
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut runs = Vec::with_capacity(file.run.len());
        for (index, spanned) in file.run.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let run = spanned.into_inner();
            let plugin_line = line_of(text, run.plugin.span().start);
            let plugin = run.plugin.into_inner();
            let name = run.name.unwrap_or_else(|| {
                Path::new(&plugin)
                    .file_stem()
                    .map_or(plugin.clone(), |s| s.to_string_lossy().into_owned())
            });
            if !is_run_name(&name) {
                return Err(format!(
                    "{}:{line}: run.name `{name}`: use letters, digits, '-', '_' or '.' (it names the run's directory)",
                    path.display()
                ));
            }
            let data = match run.data {
                None => BTreeMap::new(),
                Some(d) => {
                    let line = line_of(text, d.span().start);
                    parse_data(d.into_inner(), &base)
                        .map_err(|e| format!("{}:{line}: run.data: {e}", path.display()))?
                }
            };
            if run.limits.time_s.is_nan() || run.limits.time_s <= 0.0 {
                return Err(format!(
                    "{}:{line}: run.limits.time_s must be a positive number of seconds",
                    path.display()
                ));
            }
            if !(run.limits.stop_grace_s >= 0.0 && run.limits.stop_grace_s <= 3600.0) {
                return Err(format!(
                    "{}:{line}: run.limits.stop_grace_s must be between 0 and 3600 seconds",
                    path.display()
                ));
            }
            let resume = match run.resume {
                Some(r) if r.get_ref().trim().is_empty() => {
                    return Err(format!(
                        "{}: run.resume is empty; give the run directory to continue, e.g. resume = \"runs/sae-20261203-101500\"",
                        at(r.span().start)
                    ));
                }
                Some(r) => Some(AtLine {
                    line: line_of(text, r.span().start),
                    value: r.into_inner(),
                }),
                None => None,
            };
            let params = run
                .params
                .into_iter()
                .map(|(k, v)| {
                    let line = line_of(text, v.span().start);
                    (
                        k,
                        AtLine {
                            value: v.into_inner(),
                            line,
                        },
                    )
                })
                .collect();
            runs.push(RunConfig {
                index,
                name,
                line,
                plugin: AtLine {
                    value: plugin,
                    line: plugin_line,
                },
                model: run.model.map(|m| base.join(m)),
                data,
                device: run.device,
                seed: run.seed,
                params,
                limits: run.limits,
                resume,
            });
        }
        Ok(Experiment {
            path: path.to_path_buf(),
            runs,
        })
    }
}

fn is_run_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `data = "corpus.txt"`, `data = { path = "corpus.jsonl", seq_len = 64 }` (both named `default`),
/// or named datasets `[run.data.train]` / `data = { train = "a.txt", cached = "acts.safetensors" }`.
/// A directory (a saved SAE) is a dataset too: `data = { sae = "saes/topk" }`.
fn parse_data(value: toml::Value, base: &Path) -> Result<BTreeMap<String, DataSpec>, String> {
    let mut out = BTreeMap::new();
    match value {
        toml::Value::Table(t) if !t.contains_key("path") => {
            if t.is_empty() {
                return Err("an empty table; give a path, e.g. data = \"corpus.txt\"".into());
            }
            for (name, v) in t {
                let spec = parse_one(v, base).map_err(|e| format!("`{name}`: {e}"))?;
                out.insert(name, spec);
            }
        }
        other => {
            out.insert("default".to_string(), parse_one(other, base)?);
        }
    }
    Ok(out)
}

fn parse_one(value: toml::Value, base: &Path) -> Result<DataSpec, String> {
    let mut table = match value {
        toml::Value::String(path) => {
            let mut t = toml::Table::new();
            t.insert("path".into(), toml::Value::String(path));
            t
        }
        toml::Value::Table(t) => t,
        other => {
            return Err(format!(
                "expected a path or a table with `path`, got {}",
                other.type_str()
            ));
        }
    };
    let path = table
        .get("path")
        .and_then(toml::Value::as_str)
        .ok_or("a dataset table needs `path = \"...\"`")?
        .to_string();
    let ext = Path::new(&path)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase());
    let resolved = base.join(&path);
    match table.remove("kind") {
        None => {}
        Some(toml::Value::String(kind)) if kind == "images" => {
            let mut spec: ImageSpec = from_table(table)?;
            spec.path = resolved;
            spec.labels = spec.labels.map(|l| base.join(l));
            return Ok(DataSpec::Images(spec));
        }
        Some(other) => {
            return Err(format!(
                "`kind = {other}`: the only kind to declare is \"images\" (image files, an ImageFolder or pixel_values); text, activations and directories are told by their paths"
            ));
        }
    }
    // An existing directory wins over its extension (`sae.v2/`); a path with none that does not exist
    // yet is taken for a directory too, and loading says it is missing.
    let kind = if resolved.is_dir() {
        None
    } else {
        ext.as_deref()
    };
    match kind {
        Some("txt") | Some("jsonl") => {
            let mut spec: TextSpec = from_table(table)?;
            spec.path = resolved;
            Ok(DataSpec::Text(spec))
        }
        Some("safetensors") => {
            let mut spec: ActivationSpec = from_table(table)?;
            spec.path = resolved;
            Ok(DataSpec::Activations(spec))
        }
        None => {
            let mut spec: DirectorySpec = from_table(table)?;
            spec.path = resolved;
            Ok(DataSpec::Directory(spec))
        }
        Some(_) => Err(format!(
            "`{path}`: datasets are .txt or .jsonl text, .safetensors activations, or a directory"
        )),
    }
}

fn from_table<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Experiment, String> {
        Experiment::parse(Path::new("dir/exp.toml"), text)
    }

    #[test]
    fn a_full_run_table_resolves_paths_against_the_file() {
        let exp = parse(
            r#"
[[run]]
name = "first"
plugin = "act-stats"
model = "../models/tiny"
data = { path = "corpus.txt", seq_len = 16 }
seed = 7
[run.params]
hook = "blocks.0.mlp.hook_post"
top_k = 3
[run.limits]
time_s = 10

[[run]]
plugin = "x/custom.wasm"
data = { train = "a.jsonl", acts = "b.safetensors" }
"#,
        )
        .unwrap();
        assert_eq!(exp.runs.len(), 2);
        let r = &exp.runs[0];
        assert_eq!(r.name, "first");
        assert_eq!(r.model.as_deref(), Some(Path::new("dir/../models/tiny")));
        assert_eq!(r.seed, 7);
        assert_eq!(r.limits.time_s, 10.0);
        assert_eq!(r.limits.memory_mb, Limits::default().memory_mb);
        match &r.data["default"] {
            DataSpec::Text(t) => {
                assert_eq!(t.path, Path::new("dir/corpus.txt"));
                assert_eq!(t.seq_len, 16);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.params["top_k"].value, toml::Value::Integer(3));
        assert_eq!(r.params["top_k"].line, 10);
        let r = &exp.runs[1];
        assert_eq!(r.name, "custom");
        assert!(matches!(r.data["train"], DataSpec::Text(_)));
        assert!(matches!(r.data["acts"], DataSpec::Activations(_)));
    }

    #[test]
    fn directories_and_named_activation_tensors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sae.v2")).unwrap();
        let exp = Experiment::parse(
            &dir.path().join("exp.toml"),
            r#"
[[run]]
plugin = "sae-eval"
data = { sae = "../fixtures/saelens-topk", old = "sae.v2", x = { path = "ref.safetensors", tensor = "x" }, acts = "a.safetensors" }
"#,
        )
        .unwrap();
        let data = &exp.runs[0].data;
        match &data["sae"] {
            DataSpec::Directory(d) => {
                assert_eq!(d.path, dir.path().join("../fixtures/saelens-topk"))
            }
            other => panic!("{other:?}"),
        }
        // An existing directory is one whatever its name looks like.
        assert!(matches!(&data["old"], DataSpec::Directory(_)));
        match (&data["x"], &data["acts"]) {
            (DataSpec::Activations(x), DataSpec::Activations(acts)) => {
                assert_eq!(x.tensor, "x");
                assert_eq!(acts.tensor, "activations");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_that_do_not_fit_the_kind_are_errors() {
        let e = parse("[[run]]\nplugin = \"a\"\ndata = { path = \"sae\", tensor = \"x\" }\n")
            .unwrap_err();
        assert!(
            e.starts_with("dir/exp.toml:3: run.data:") && e.contains("tensor"),
            "{e}"
        );
        let e = parse("[[run]]\nplugin = \"a\"\ndata = { path = \"c.txt\", tensor = \"x\" }\n")
            .unwrap_err();
        assert!(e.contains("tensor"), "{e}");
        let e = parse(
            "[[run]]\nplugin = \"a\"\ndata = { x = { path = \"r.safetensors\", tensor = 3 } }\n",
        )
        .unwrap_err();
        assert!(e.contains("`x`"), "{e}");
        let e = parse("[[run]]\nplugin = \"a\"\ndata = \"weights.bin\"\n").unwrap_err();
        assert!(e.contains("or a directory"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[[run]]\nplugin = \"a\"\nsed = 3\n").unwrap_err();
        assert!(e.starts_with("dir/exp.toml:3:"), "{e}");
        assert!(e.contains("sed"), "{e}");
        let e = parse("[[run]]\nname = \"x\"\n").unwrap_err();
        assert!(e.contains("plugin"), "{e}");
        let e = parse("[[run]]\nplugin = \"a\"\ndata = \"corpus.csv\"\n").unwrap_err();
        assert!(e.starts_with("dir/exp.toml:3: run.data:"), "{e}");
        let e = parse("[[run]]\nplugin = \"a\"\n[run.data]\npath = \"c.txt\"\nseqlen = 3\n")
            .unwrap_err();
        assert!(e.contains("seqlen"), "{e}");
        let e = parse("[[run]]\nplugin = \"a\"\nseed = \"x\n").unwrap_err();
        assert!(e.starts_with("dir/exp.toml:3:"), "{e}");
        let e = parse("title = 1\n").unwrap_err();
        assert!(e.contains("title") || e.contains("[[run]]"), "{e}");
        let e = parse("").unwrap_err();
        assert!(e.contains("no [[run]]"), "{e}");
        let e = parse("[[run]]\nplugin = \"a\"\nname = \"../x\"\n").unwrap_err();
        assert!(e.contains("run.name"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn image_datasets_are_declared_by_kind() {
        let r = &parse(
            "[[run]]\nplugin = \"a\"\ndata = { path = \"digits/\", kind = \"images\", labels = \"l.json\" }\n",
        )
        .unwrap()
        .runs[0];
        match &r.data["default"] {
            DataSpec::Images(spec) => {
                assert_eq!(spec.path, Path::new("dir/digits/"));
                assert_eq!(spec.labels.as_deref(), Some(Path::new("dir/l.json")));
            }
            other => panic!("expected images, got {other:?}"),
        }
        // A tensor file of pixels is images when it says so, activations otherwise.
        let r = &parse(
            "[[run]]\nplugin = \"a\"\ndata = { px = { path = \"x.safetensors\", kind = \"images\" }, acts = \"x.safetensors\" }\n",
        )
        .unwrap()
        .runs[0];
        assert!(matches!(r.data["px"], DataSpec::Images(_)));
        assert!(matches!(r.data["acts"], DataSpec::Activations(_)));
        let e = parse("[[run]]\nplugin = \"a\"\ndata = { path = \"x/\", kind = \"pictures\" }\n")
            .unwrap_err();
        assert!(
            e.contains("\"pictures\"") && e.contains("\"images\""),
            "{e}"
        );
        let e = parse(
            "[[run]]\nplugin = \"a\"\ndata = { path = \"x/\", kind = \"images\", size = 3 }\n",
        )
        .unwrap_err();
        assert!(e.contains("size"), "{e}");
    }
}
