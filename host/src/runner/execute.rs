//! Running an experiment: every `[[run]]` is checked before any starts — its plugin loaded, parameters
//! resolved against the plugin's schema, device, model and datasets opened, hook parameters looked up
//! in the model — and a file with any problem is refused whole, each problem on a line with its place,
//! so a typo in the third run does not surface after two hours of the first. Then each run goes in
//! turn in a fresh plugin instance with its own directory; a run that fails inside the plugin is
//! recorded as failed and the next one goes on.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use loupe_kernels::Device;
use serde_json::{Map, Value, json};

use super::cancel::Cancellations;
use super::experiment::{DataSpec, Experiment, RunConfig};
use super::params::{Override, check_overrides_used, resolve};
use super::recorder::{Recorder, SharedSink};
use super::resume::RESUME_DATASET;
use super::rundir::RunDir;
use super::slots::DeviceSlots;
use crate::artifacts::ArtifactDir;
use crate::data::{ActivationDataset, Dataset, DirectoryDataset, TextDataset};
use crate::device::resolve_device;
use crate::events::EventBody;
use crate::model::LoadedModel;
use crate::plugin::{
    CancelFlag, LoadedPlugin, PluginEngine, PluginRegistry, RunContext, find_plugins,
};
use crate::suggest::closest_names;
use crate::text::shown;

/// The largest `summary.json` a plugin's returned summary may make, pretty-printed; a bigger one
/// fails the run (results that size belong in artifacts).
pub const MAX_SUMMARY_BYTES: u64 = 16 << 20;

/// The longest error message a run keeps, in bytes: a plugin's error text is cut to it, with a marker.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

pub struct RunnerOptions {
    /// Where plugins are looked up by name.
    pub plugins_dir: PathBuf,
    /// Where run directories are created.
    pub out_dir: PathBuf,
    /// Overrides every run's `device`.
    pub device: Option<String>,
    pub overrides: Vec<Override>,
    pub sinks: Vec<SharedSink>,
    /// Plugins in service (hot-loaded by `loupe watch`): names are looked up here instead of in
    /// `plugins_dir`, so a run gets the version in service when it starts.
    pub registry: Option<Arc<Mutex<PluginRegistry>>>,
    /// Runs can be cancelled through this (the dashboard); none: they cannot.
    pub cancellations: Option<Arc<Cancellations>>,
    /// Shared with other runners, a run waits for a slot of its device; none: no waiting.
    pub slots: Option<Arc<DeviceSlots>>,
}

/// How one run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub id: String,
    pub name: String,
    pub dir: PathBuf,
    pub ok: bool,
    pub error: Option<String>,
}

/// A run ready to go: its plugin loaded, its parameters resolved, its model and datasets open.
struct Prepared {
    plugin: Arc<LoadedPlugin>,
    params: Map<String, Value>,
    device: Device,
    model: Option<Arc<LoadedModel>>,
    datasets: BTreeMap<String, Dataset>,
    /// The run continued, when `resume` is set: its id and directory.
    resumed: Option<(String, PathBuf)>,
}

/// A plugin parameter `model_name` left empty is filled with the name of the run's model directory
/// (`gpt2-small` for `models/gpt2-small`): what the plugin records as the model it ran on (an SAE's
/// `cfg.json`), and what `config.json` keeps for reproducing the run.
fn fill_model_name(params: &mut Map<String, Value>, model: Option<&Path>) {
    let name = model
        .and_then(|m| m.canonicalize().ok().or_else(|| Some(m.to_path_buf())))
        .and_then(|m| m.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let (Some(Value::String(given)), Some(name)) = (params.get_mut("model_name"), name)
        && given.is_empty()
    {
        *given = name;
    }
}

/// Whether a parameter names hooks of the run's model and is checked against them up front:
/// `hook`, `hooks`, or a name ending in `_hook` / `_hooks` (a convention plugins follow).
fn names_hooks(param: &str) -> bool {
    param == "hook" || param == "hooks" || param.ends_with("_hook") || param.ends_with("_hooks")
}

/// Every hook a run's hook parameters name (exact names or globs) must exist in its model; an empty
/// string means "none" and is left to the plugin.
fn check_hook_params(
    params: &Map<String, Value>,
    run: &RunConfig,
    model: &LoadedModel,
    place: &str,
) -> Result<(), String> {
    for (name, value) in params.iter().filter(|(name, _)| names_hooks(name)) {
        let patterns: Vec<String> = match value {
            Value::String(s) if !s.is_empty() => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => continue,
        };
        if let Err(e) = crate::model::select_hooks(model.model.hook_names(), &patterns) {
            let line = run.params.get(name).map_or(run.line, |p| p.line);
            return Err(format!("{place}:{line}: params.{name}: {e}"));
        }
    }
    Ok(())
}

pub struct Runner<'e> {
    engine: &'e PluginEngine,
    options: RunnerOptions,
    plugins: HashMap<PathBuf, Arc<LoadedPlugin>>,
    /// Without a shared registry: the plugin directory put in service as `loupe watch` would (same
    /// rules, same choice between two files claiming one name), scanned at the first name looked up.
    scanned: Option<PluginRegistry>,
    models: HashMap<(PathBuf, String), Arc<LoadedModel>>,
}

impl<'e> Runner<'e> {
    pub fn new(engine: &'e PluginEngine, options: RunnerOptions) -> Self {
        Runner {
            engine,
            options,
            plugins: HashMap::new(),
            scanned: None,
            models: HashMap::new(),
        }
    }

    /// Runs every `[[run]]` of `exp`. `Err` only for mistakes that concern the whole command (a
    /// `--set` no plugin takes); each run's own failure is in its report.
    pub fn run_experiment(&mut self, exp: &Experiment) -> Result<Vec<RunReport>, String> {
        let place = exp.path.display().to_string();
        let prepared = self.prepare_all(exp, &place, self.forced_device()?)?;
        let mut reports = Vec::with_capacity(exp.runs.len());
        for (run, prep) in exp.runs.iter().zip(prepared) {
            reports.push(self.execute(exp, run, prep)?);
        }
        Ok(reports)
    }

    /// Checks every `[[run]]` of `exp` as [`run_experiment`](Self::run_experiment) would before
    /// starting them, starting none: a line per run saying what it would run on.
    pub fn check_experiment(&mut self, exp: &Experiment) -> Result<Vec<String>, String> {
        let place = exp.path.display().to_string();
        let prepared = self.prepare_all(exp, &place, self.forced_device()?)?;
        Ok(exp
            .runs
            .iter()
            .zip(&prepared)
            .map(|(run, p)| {
                let data: Vec<String> = p
                    .datasets
                    .iter()
                    .map(|(name, d)| format!("{name} ({} rows)", d.info().rows))
                    .collect();
                format!(
                    "{}: {} {} on {}{}{}",
                    run.name,
                    shown(&p.plugin.manifest.name),
                    shown(&p.plugin.manifest.version),
                    p.device,
                    run.model
                        .as_ref()
                        .map_or(String::new(), |m| format!(", model {}", m.display())),
                    if data.is_empty() {
                        String::new()
                    } else {
                        format!(", data {}", data.join(", "))
                    },
                )
            })
            .collect())
    }

    /// `--device`, which concerns every run: a bad one is refused before any starts.
    fn forced_device(&self) -> Result<Option<Device>, String> {
        match &self.options.device {
            Some(flag) => Ok(Some(resolve_device(flag).map_err(|e| format!("--{e}"))?)),
            None => Ok(None),
        }
    }

    /// Prepares every run; any problem refuses the whole file, naming each problem on its own line.
    fn prepare_all(
        &mut self,
        exp: &Experiment,
        place: &str,
        forced: Option<Device>,
    ) -> Result<Vec<Prepared>, String> {
        let prepared: Vec<Result<Prepared, String>> = exp
            .runs
            .iter()
            .map(|run| self.prepare(exp, run, place, forced))
            .collect();
        let manifests: Vec<_> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|p| &p.plugin.manifest))
            .collect();
        if !manifests.is_empty() {
            check_overrides_used(&self.options.overrides, &manifests)?;
        }
        let problems: Vec<String> = prepared
            .iter()
            .filter_map(|p| p.as_ref().err().map(|e| format!("  {e}")))
            .collect();
        if !problems.is_empty() {
            let runs = exp.runs.len();
            return Err(format!(
                "{place}: {} of {runs} run{} cannot start, so none was started:\n{}",
                problems.len(),
                if runs == 1 { "" } else { "s" },
                problems.join("\n")
            ));
        }
        Ok(prepared.into_iter().filter_map(Result::ok).collect())
    }

    fn prepare(
        &mut self,
        exp: &Experiment,
        run: &RunConfig,
        place: &str,
        forced: Option<Device>,
    ) -> Result<Prepared, String> {
        let base = exp.path.parent().unwrap_or(Path::new("."));
        let plugin = self
            .find_plugin(&run.plugin.value, base)
            .map_err(|e| format!("{place}:{}: run.plugin: {e}", run.plugin.line))?;
        let mut params = resolve(
            &plugin.manifest,
            &run.params,
            &self.options.overrides,
            place,
            run.line,
        )?;
        fill_model_name(&mut params, run.model.as_deref());
        let device = match (forced, &run.device) {
            (Some(device), _) => device,
            (None, Some(own)) => {
                resolve_device(own).map_err(|e| format!("{place}:{}: run.{e}", run.line))?
            }
            (None, None) => resolve_device("auto")?,
        };
        let model = match &run.model {
            None => None,
            Some(m) => Some(
                self.model(m, device)
                    .map_err(|e| format!("{place}:{}: run.model: {e}", run.line))?,
            ),
        };
        let mut datasets = self
            .datasets(&run.data, model.as_deref())
            .map_err(|e| format!("{place}:{}: run.data: {e}", run.line))?;
        if let Some(model) = &model {
            check_hook_params(&params, run, model, place)?;
        }
        let resumed = match &run.resume {
            None => None,
            Some(spec) => {
                let at = |e: String| format!("{place}:{}: run.{e}", spec.line);
                if datasets.contains_key(RESUME_DATASET) {
                    return Err(at(format!(
                        "resume: the run also declares a dataset named `{RESUME_DATASET}`, the name its checkpoint is given; rename that dataset"
                    )));
                }
                let r = super::resume::find(
                    &spec.value,
                    base,
                    &self.options.out_dir,
                    &plugin.manifest.name,
                )
                .map_err(at)?;
                datasets.insert(RESUME_DATASET.into(), Dataset::Directory(r.checkpoint));
                Some((r.id, r.dir))
            }
        };
        Ok(Prepared {
            plugin,
            params,
            device,
            model,
            datasets,
            resumed,
        })
    }

    fn load_plugin(&mut self, path: &Path) -> Result<Arc<LoadedPlugin>, String> {
        if let Some(p) = self.plugins.get(path) {
            return Ok(p.clone());
        }
        let loaded = Arc::new(self.engine.load(path).map_err(|e| e.to_string())?);
        self.plugins.insert(path.to_path_buf(), loaded.clone());
        Ok(loaded)
    }

    /// A path (`x/plugin.wasm`, relative to the experiment file) or a name looked up in the plugin
    /// directory as the registry resolves it: a manifest's name, else a file's stem.
    fn find_plugin(&mut self, spec: &str, base: &Path) -> Result<Arc<LoadedPlugin>, String> {
        if spec.ends_with(".wasm") || spec.contains('/') {
            return self.load_plugin(&base.join(spec));
        }
        if let Some(registry) = &self.options.registry {
            let registry = registry.lock().unwrap_or_else(|e| e.into_inner());
            return registry.get(spec).ok_or_else(|| {
                let names = registry.names();
                if names.is_empty() {
                    format!(
                        "no plugin `{spec}`: none is in service in {}; drop its .wasm file there",
                        self.options.plugins_dir.display()
                    )
                } else {
                    format!(
                        "no plugin `{spec}` in service; closest: {} (in service: {})",
                        closest_names(spec, &names).join(", "),
                        names.join(", ")
                    )
                }
            });
        }
        let dir = self.options.plugins_dir.clone();
        if self.scanned.is_none() {
            // The directory itself must be there: its absence is the message, not "no plugin".
            let files = find_plugins(&dir).map_err(|e| e.to_string())?;
            let mut registry = PluginRegistry::new();
            for file in &files {
                registry.load(self.engine, file);
            }
            self.scanned = Some(registry);
        }
        let registry = self
            .scanned
            .as_ref()
            .ok_or("the plugin directory was not scanned")?;
        // A second file claiming the name is refused, as `loupe watch` refuses it: say so.
        for entry in registry.entries() {
            if registry.waiting_for(&entry.path) == Some(spec)
                && let Some(error) = &entry.error
            {
                eprintln!("loupe: warning: {}", shown(error));
            }
        }
        if let Some(plugin) = registry.get(spec) {
            return Ok(plugin);
        }
        let names = registry.names();
        Err(if names.is_empty() {
            format!(
                "no plugin `{spec}`: {} holds no loadable plugins; build them with scripts/build-plugins.sh",
                dir.display()
            )
        } else {
            format!(
                "no plugin `{spec}` in {}; closest: {} (`loupe plugins list` shows them all)",
                dir.display(),
                closest_names(spec, &names).join(", ")
            )
        })
    }

    fn model(&mut self, dir: &Path, device: Device) -> Result<Arc<LoadedModel>, String> {
        let key = (dir.to_path_buf(), device.to_string());
        if let Some(m) = self.models.get(&key) {
            return Ok(m.clone());
        }
        let loaded = Arc::new(LoadedModel::load(dir, device).map_err(|e| e.to_string())?);
        self.models.insert(key, loaded.clone());
        Ok(loaded)
    }

    fn datasets(
        &self,
        specs: &BTreeMap<String, DataSpec>,
        model: Option<&LoadedModel>,
    ) -> Result<BTreeMap<String, Dataset>, String> {
        let mut out = BTreeMap::new();
        for (name, spec) in specs {
            let dataset = match spec {
                DataSpec::Text(t) => {
                    let model = model.ok_or_else(|| {
                        format!("dataset `{name}`: text needs the run's model (its tokenizer); add `model = ...`")
                    })?;
                    let tokenizer = model.tokenizer.as_ref().ok_or_else(|| {
                        format!(
                            "dataset `{name}`: {} has no tokenizer.json to tokenize text with",
                            model.dir.display()
                        )
                    })?;
                    Dataset::Text(
                        TextDataset::load(t, tokenizer, model.bos).map_err(|e| e.to_string())?,
                    )
                }
                DataSpec::Activations(a) => {
                    Dataset::Activations(ActivationDataset::load(a).map_err(|e| e.to_string())?)
                }
                // Its path has no extension to tell the user what loupe took it for: name the dataset.
                DataSpec::Directory(d) => Dataset::Directory(
                    DirectoryDataset::load(d).map_err(|e| format!("dataset `{name}`: {e}"))?,
                ),
                DataSpec::Images(spec) => {
                    let vision = model.and_then(|m| match &m.model {
                        crate::model::Model::Vit(v) => Some(v),
                        _ => None,
                    });
                    let vit = vision.ok_or_else(|| {
                        format!(
                            "dataset `{name}`: images are prepared for the run's model, which must be a vision model (ViT, DeiT); set `model = ...`"
                        )
                    })?;
                    let shape = crate::data::images::PixelShape::of(vit);
                    Dataset::Images(
                        crate::data::images::ImageDataset::load(
                            spec,
                            &vit.preprocessor,
                            shape,
                            &vit.config.labels,
                        )
                        .map_err(|e| format!("dataset `{name}`: {e}"))?,
                    )
                }
            };
            out.insert(name.clone(), dataset);
        }
        Ok(out)
    }

    fn execute(
        &mut self,
        exp: &Experiment,
        run: &RunConfig,
        p: Prepared,
    ) -> Result<RunReport, String> {
        let dir = RunDir::create(&self.options.out_dir, &run.name)?;
        let mut recorder = Recorder::new(&dir.id, &dir.events(), self.options.sinks.clone())
            .map_err(|e| format!("{}: cannot create: {e}", dir.events().display()))?;
        let mut config = json!({
            "loupe_version": env!("CARGO_PKG_VERSION"),
            "experiment": exp.path.display().to_string(),
            "index": run.index,
            "name": run.name,
            "model": run.model.as_ref().map(|m| m.display().to_string()),
            "data": run.data,
            "seed": run.seed,
            "limits": run.limits,
            "resumed_from": p.resumed.as_ref().map(|(id, dir)| json!({ "id": id, "dir": dir.display().to_string() })),
        });
        // What the run resolved to.
        config["device"] = json!(p.device.to_string());
        config["params"] = Value::Object(p.params.clone());
        config["plugin"] = json!({
            "requested": run.plugin.value,
            "file": p.plugin.path.display().to_string(),
            "name": p.plugin.manifest.name,
            "version": p.plugin.manifest.version,
            "method": p.plugin.manifest.method,
            "sha256": p.plugin.sha256,
            "api_version": p.plugin.api_version,
        });
        dir.write_json("config.json", &config)?;
        // Held until the run ends.
        let _slot = self
            .options
            .slots
            .as_ref()
            .map(|s| s.acquire(&p.device.to_string()));
        // Cancellable from the moment it is announced.
        let cancel = self
            .options
            .cancellations
            .as_ref()
            .map(|c| c.register(&dir.id));
        recorder.emit(EventBody::Started {
            plugin: p.plugin.manifest.name.clone(),
            plugin_version: p.plugin.manifest.version.clone(),
            method: p.plugin.manifest.method.clone(),
            model: run.model.as_ref().map(|m| m.display().to_string()),
            device: p.device.to_string(),
            dir: dir.path.display().to_string(),
        });
        let cancelled = cancel.clone();
        let (rec, outcome) = self.run_plugin(run, &dir, p, recorder, cancel);
        if let Some(c) = &self.options.cancellations {
            c.finish(&dir.id);
        }
        recorder = rec;
        let elapsed_s = recorder.elapsed();
        let outcome = outcome.and_then(|summary| {
            match super::rundir::pretty_json_size(&summary, MAX_SUMMARY_BYTES) {
                Some(_) => Ok(summary),
                None => Err(format!(
                    "the plugin's summary is over {} MiB as summary.json; return a smaller summary and save large results as artifacts",
                    MAX_SUMMARY_BYTES >> 20
                )),
            }
        });
        let stop_asked = cancelled.as_ref().is_some_and(|c| c.requested());
        let (ok, error, summary) = match outcome {
            // Asked to stop, the plugin saved what it had and said so: cancelled, not done, but
            // with its summary.
            Ok(summary) if stop_asked && summary["partial"] == json!(true) => (
                false,
                Some(
                    "cancelled by the user: the plugin stopped early and saved what it had (its summary is marked partial)"
                        .to_string(),
                ),
                summary,
            ),
            Ok(summary) => (true, None, summary),
            // The message may quote the plugin at any length: it is kept, cut, in three places.
            Err(e) => (
                false,
                Some(crate::text::cut(&e, MAX_ERROR_BYTES).into_owned()),
                Value::Null,
            ),
        };
        recorder.emit(EventBody::Finished {
            ok,
            elapsed_s,
            error: error.clone(),
        });
        // How it ended, in a word a script can test: a cancelled run (the dashboard's `c`, Ctrl-C)
        // is told apart from one that failed.
        let ended = match (ok, stop_asked) {
            (true, _) => "done",
            (false, true) => "cancelled",
            (false, false) => "failed",
        };
        dir.write_json(
            "summary.json",
            &json!({
                "run": dir.id,
                "name": run.name,
                "ok": ok,
                "ended": ended,
                "error": error,
                "elapsed_s": elapsed_s,
                "dropped_events": recorder.dropped(),
                "summary": summary,
            }),
        )?;
        Ok(RunReport {
            id: dir.id.clone(),
            name: run.name.clone(),
            dir: dir.path.clone(),
            ok,
            error,
        })
    }

    /// Runs the plugin on the run's model and data. The recorder comes back in every case.
    fn run_plugin(
        &mut self,
        run: &RunConfig,
        dir: &RunDir,
        p: Prepared,
        recorder: Recorder,
        cancel: Option<CancelFlag>,
    ) -> (Recorder, Result<Value, String>) {
        let ctx = RunContext {
            id: dir.id.clone(),
            seed: run.seed,
            device: p.device,
            model: p.model,
            datasets: p.datasets,
            recorder,
            artifacts: ArtifactDir::new(dir.artifacts()),
            cancel,
            resumed_from: p.resumed.map(|(id, _)| id),
        };
        let params = Value::Object(p.params).to_string();
        let (ctx, result) = p.plugin.run(self.engine, ctx, &run.limits, &params);
        (ctx.recorder, result.map_err(|f| f.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Map, json};

    use super::{fill_model_name, names_hooks};

    #[test]
    fn an_empty_model_name_names_the_model_directory() {
        let mut params = Map::new();
        params.insert("model_name".into(), json!(""));
        fill_model_name(&mut params, Some(Path::new("models/gpt2-small")));
        assert_eq!(params["model_name"], "gpt2-small");
        // A name given is kept; without a model nothing is filled.
        fill_model_name(&mut params, Some(Path::new("other")));
        assert_eq!(params["model_name"], "gpt2-small");
        let mut params = Map::new();
        params.insert("model_name".into(), json!(""));
        fill_model_name(&mut params, None);
        assert_eq!(params["model_name"], "");
    }

    #[test]
    fn hook_parameters_are_known_by_their_names() {
        for name in ["hook", "hooks", "source_hook", "target_hooks"] {
            assert!(names_hooks(name), "{name}");
        }
        for name in ["site", "hookup", "hook_count"] {
            assert!(!names_hooks(name), "{name}");
        }
    }
}
