//! The `report`, `runtime` and `types` interfaces: events and artifacts of the run, facts about it,
//! and the stop request.

use wasmtime::component::Resource;

use super::bindings::loupe::plugin::{report as wit, runtime, types};
use super::bindings::{ApiError, ErrorKind};
use super::state::{RunState, TensorEntry, api_error};
use crate::artifacts::ArtifactError;
use crate::events::{EventBody, Level};

type Answer<T> = wasmtime::Result<Result<T, ApiError>>;

impl From<wit::Level> for Level {
    fn from(l: wit::Level) -> Self {
        match l {
            wit::Level::Debug => Level::Debug,
            wit::Level::Info => Level::Info,
            wit::Level::Warn => Level::Warn,
            wit::Level::Error => Level::Error,
        }
    }
}

impl RunState {
    /// Records the artifact on success; maps the failure to an error value.
    fn artifact_written(
        &mut self,
        op: &str,
        name: &str,
        result: Result<u64, ArtifactError>,
    ) -> Answer<()> {
        match result {
            Ok(bytes) => {
                // The plugin decides how many artifacts it writes: their events count as its own.
                self.ctx.recorder.plugin_event(EventBody::Artifact {
                    name: name.to_string(),
                    bytes,
                });
                Ok(Ok(()))
            }
            Err(e) => {
                let kind = match e {
                    ArtifactError::Io { .. }
                    | ArtifactError::Encode { .. }
                    | ArtifactError::TensorRead { .. } => ErrorKind::Io,
                    ArtifactError::BudgetExceeded { .. } | ArtifactError::OverBudget { .. } => {
                        ErrorKind::OutOfQuota
                    }
                    _ => ErrorKind::InvalidArgument,
                };
                Ok(Err(api_error(kind, op, e.to_string())))
            }
        }
    }
}

impl wit::Host for RunState {
    fn log(&mut self, level: wit::Level, message: String) -> wasmtime::Result<()> {
        self.ctx.recorder.plugin_event(EventBody::Log {
            level: level.into(),
            message,
        });
        Ok(())
    }

    fn progress(&mut self, stage: String, done: u64, total: u64) -> wasmtime::Result<()> {
        self.ctx
            .recorder
            .plugin_event(EventBody::Progress { stage, done, total });
        Ok(())
    }

    fn metric(&mut self, name: String, step: u64, value: f64) -> wasmtime::Result<()> {
        self.ctx
            .recorder
            .plugin_event(EventBody::Metric { name, step, value });
        Ok(())
    }

    fn save_tensors(
        &mut self,
        name: String,
        tensors: Vec<(String, Resource<TensorEntry>)>,
    ) -> Answer<()> {
        let tensors = tensors
            .iter()
            .map(|(n, h)| Ok((n.clone(), self.tensor(h)?)))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        let result = self.ctx.artifacts.write_tensors(&name, &tensors);
        self.artifact_written("report.save-tensors", &name, result)
    }

    fn save_json(&mut self, name: String, json: String) -> Answer<()> {
        let result = self.ctx.artifacts.write_json(&name, &json);
        self.artifact_written("report.save-json", &name, result)
    }

    fn save_csv(
        &mut self,
        name: String,
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Answer<()> {
        let result = self.ctx.artifacts.write_csv(&name, &header, &rows);
        self.artifact_written("report.save-csv", &name, result)
    }

    fn save_png(&mut self, name: String, image: Resource<TensorEntry>) -> Answer<()> {
        let image = self.tensor(&image)?;
        let result = self.ctx.artifacts.write_png(&name, &image);
        self.artifact_written("report.save-png", &name, result)
    }

    fn save_text(&mut self, name: String, text: String) -> Answer<()> {
        let result = self.ctx.artifacts.write_text(&name, &text);
        self.artifact_written("report.save-text", &name, result)
    }
}

impl runtime::Host for RunState {
    fn info(&mut self) -> wasmtime::Result<runtime::RunInfo> {
        Ok(runtime::RunInfo {
            id: self.ctx.id.clone(),
            seed: self.ctx.seed,
            device: self.ctx.device.to_string(),
            api_version: loupe_plugin_api::API_VERSION.to_string(),
            resumed_from: self.ctx.resumed_from.clone(),
        })
    }

    fn stop_requested(&mut self) -> wasmtime::Result<bool> {
        let Some(switch) = &self.ctx.cancel else {
            return Ok(false);
        };
        // A plugin that looks has shown it will wind down: it gets the grace period to do so.
        switch.grant_grace(self.stop_grace);
        Ok(switch.requested())
    }
}

impl types::Host for RunState {}
