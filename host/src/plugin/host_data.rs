//! The `data` interface: the run's datasets, read in batches straight onto the device.

use wasmtime::component::Resource;

use super::bindings::loupe::plugin::data as wit;
use super::bindings::{ApiError, ErrorKind};
use super::state::{RunState, TensorEntry, api_error};
use crate::data::DatasetKind;

type Answer<T> = wasmtime::Result<Result<T, ApiError>>;

impl RunState {
    fn unknown_dataset(&self, op: &str, name: &str) -> ApiError {
        let names: Vec<&String> = self.ctx.datasets.keys().collect();
        api_error(
            ErrorKind::NotFound,
            op,
            if names.is_empty() {
                format!(
                    "no dataset `{name}`: the run declares none; add `data = \"corpus.txt\"` to its [[run]]"
                )
            } else {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                format!("no dataset `{name}`; the run declares {}", names.join(", "))
            },
        )
    }
}

impl wit::Host for RunState {
    fn datasets(&mut self) -> wasmtime::Result<Vec<wit::DatasetInfo>> {
        Ok(self
            .ctx
            .datasets
            .iter()
            .map(|(name, d)| {
                let info = d.info();
                wit::DatasetInfo {
                    name: name.clone(),
                    kind: match info.kind {
                        DatasetKind::Text => wit::DatasetKind::Text,
                        DatasetKind::Activations => wit::DatasetKind::Activations,
                    },
                    rows: info.rows,
                    width: info.width,
                }
            })
            .collect())
    }

    fn next_batch(&mut self, dataset: String, rows: u32) -> Answer<Option<Resource<TensorEntry>>> {
        const OP: &str = "data.next-batch";
        let device = self.ctx.device;
        let Some(d) = self.ctx.datasets.get_mut(&dataset) else {
            return Ok(Err(self.unknown_dataset(OP, &dataset)));
        };
        let width = d.info().width as usize;
        // Refuse a batch over the quota before reading it.
        let shape = [rows as usize, width];
        if let Err(e) = self
            .quota
            .check(OP, &shape, (rows as u64) * (width as u64) * 4)
        {
            return Ok(Err(e));
        }
        let Some(d) = self.ctx.datasets.get_mut(&dataset) else {
            return Ok(Err(self.unknown_dataset(OP, &dataset)));
        };
        match d.next_batch(rows as usize, device) {
            Ok(Some(t)) => Ok(self.hand_out(OP, t)?.map(Some)),
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(api_error(
                ErrorKind::InvalidArgument,
                OP,
                e.to_string(),
            ))),
        }
    }

    fn reset(&mut self, dataset: String) -> Answer<()> {
        match self.ctx.datasets.get_mut(&dataset) {
            Some(d) => {
                d.reset();
                Ok(Ok(()))
            }
            None => Ok(Err(self.unknown_dataset("data.reset", &dataset))),
        }
    }
}
