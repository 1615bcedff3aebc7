//! The `data` interface: the run's datasets, read in batches straight onto the device, and the files of
//! directory datasets, read whole.

use wasmtime::component::Resource;

use super::bindings::loupe::plugin::data as wit;
use super::bindings::{ApiError, ErrorKind};
use super::contain::fault_point;
use super::state::{RunState, TensorEntry, api_error};
use crate::data::{Dataset, DatasetKind, DirectoryDataset, FileError};

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

    /// The directory dataset `name`, or the error to answer with.
    fn directory(&self, op: &str, name: &str) -> Result<&DirectoryDataset, ApiError> {
        match self.ctx.datasets.get(name) {
            Some(Dataset::Directory(d)) => Ok(d),
            Some(other) => Err(api_error(
                ErrorKind::InvalidArgument,
                op,
                format!(
                    "dataset `{name}` is of kind `{}`; {op} reads directory datasets (a directory \
                     path in the experiment's `data`)",
                    other.info().kind
                ),
            )),
            None => Err(self.unknown_dataset(op, name)),
        }
    }
}

fn file_error(op: &str, e: FileError) -> ApiError {
    let kind = match &e {
        FileError::BadName { .. } => ErrorKind::InvalidArgument,
        FileError::NotFound { .. } => ErrorKind::NotFound,
        FileError::TooLarge { .. } => ErrorKind::OutOfQuota,
        FileError::Data(_) => ErrorKind::InvalidArgument,
    };
    api_error(kind, op, e.to_string())
}

impl wit::Host for RunState {
    fn datasets(&mut self) -> wasmtime::Result<Vec<wit::DatasetInfo>> {
        fault_point("data.datasets");
        // Image datasets have a kind this record cannot name (it predates them): `image-datasets`
        // lists them.
        Ok(self
            .ctx
            .datasets
            .iter()
            .filter_map(|(name, d)| {
                let info = d.info();
                let kind = match info.kind {
                    DatasetKind::Text => wit::DatasetKind::Text,
                    DatasetKind::Activations => wit::DatasetKind::Activations,
                    DatasetKind::Directory => wit::DatasetKind::Directory,
                    DatasetKind::Images => return None,
                };
                Some(wit::DatasetInfo {
                    name: name.clone(),
                    kind,
                    rows: info.rows,
                    width: info.width,
                })
            })
            .collect())
    }

    fn image_datasets(&mut self) -> wasmtime::Result<Vec<wit::ImageDatasetInfo>> {
        fault_point("data.image-datasets");
        Ok(self
            .ctx
            .datasets
            .iter()
            .filter_map(|(name, d)| match d {
                Dataset::Images(d) => Some(wit::ImageDatasetInfo {
                    name: name.clone(),
                    images: d.set().len() as u64,
                    labelled: d.set().labelled(),
                    classes: d.set().classes.clone(),
                }),
                _ => None,
            })
            .collect())
    }

    fn next_images(&mut self, dataset: String, count: u32) -> Answer<Option<wit::ImageBatch>> {
        const OP: &str = "data.next-images";
        let device = self.ctx.device;
        let d = match self.ctx.datasets.get_mut(&dataset) {
            Some(Dataset::Images(d)) => d,
            Some(other) => {
                let kind = other.info().kind;
                return Ok(Err(api_error(
                    ErrorKind::InvalidArgument,
                    OP,
                    format!(
                        "dataset `{dataset}` is of kind `{kind}`; declare image datasets with `kind = \"images\"`"
                    ),
                )));
            }
            None => return Ok(Err(self.unknown_dataset(OP, &dataset))),
        };
        // Refuse a batch over the quota before decoding it.
        let bytes = d.batch_bytes(count as usize);
        if let Err(e) = self.quota.check(OP, &[count as usize], bytes) {
            return Ok(Err(e));
        }
        let Some(Dataset::Images(d)) = self.ctx.datasets.get_mut(&dataset) else {
            return Ok(Err(self.unknown_dataset(OP, &dataset)));
        };
        let batch = match d.next_images(count as usize, device) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Ok(None)),
            Err(e) => {
                return Ok(Err(api_error(
                    ErrorKind::InvalidArgument,
                    OP,
                    e.to_string(),
                )));
            }
        };
        let pixels = match self.hand_out(OP, batch.pixels)? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(Some(wit::ImageBatch {
            pixels,
            labels: batch.labels,
            names: batch.names,
        })))
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
        const OP: &str = "data.reset";
        match self.ctx.datasets.get_mut(&dataset) {
            Some(d) => Ok(d
                .reset()
                .map_err(|e| api_error(ErrorKind::InvalidArgument, OP, e.to_string()))),
            None => Ok(Err(self.unknown_dataset(OP, &dataset))),
        }
    }

    fn list_files(&mut self, dataset: String) -> Answer<Vec<String>> {
        Ok(self
            .directory("data.list-files", &dataset)
            .map(|d| d.files().to_vec()))
    }

    fn read_text(&mut self, dataset: String, file: String) -> Answer<String> {
        const OP: &str = "data.read-text";
        Ok(self
            .directory(OP, &dataset)
            .and_then(|d| d.read_text(&file).map_err(|e| file_error(OP, e))))
    }

    fn read_tensors(
        &mut self,
        dataset: String,
        file: String,
    ) -> Answer<Vec<(String, Resource<TensorEntry>)>> {
        const OP: &str = "data.read-tensors";
        let tensors = match self.directory(OP, &dataset) {
            Ok(d) => d.open_tensors(&file).map_err(|e| file_error(OP, e)),
            Err(e) => Err(e),
        };
        let tensors = match tensors {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        // Refuse a file over the quota before converting any of it: every element becomes 4 bytes.
        let (count, elements) = match tensors.size() {
            Ok(size) => size,
            Err(e) => return Ok(Err(file_error(OP, e.into()))),
        };
        let what = format_args!("`{file}` ({count} tensors, {elements} elements)");
        if let Err(e) = self.quota.check_for(OP, what, elements.saturating_mul(4)) {
            return Ok(Err(e));
        }
        let (names, values): (Vec<String>, Vec<_>) = match tensors.read_all(self.ctx.device) {
            Ok(read) => read.into_iter().unzip(),
            Err(e) => return Ok(Err(file_error(OP, e.into()))),
        };
        Ok(self
            .hand_out_all(OP, values)?
            .map(|handles| names.into_iter().zip(handles).collect()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use loupe_kernels::DType;
    use safetensors::Dtype;
    use safetensors::tensor::TensorView;
    use wit::Host as _;

    use super::*;
    use crate::data::{ActivationDataset, ActivationSpec, DirectorySpec};
    use crate::plugin::limits::Limits;
    use crate::plugin::state::RunContext;

    /// Writes `tensors` (name, dtype, shape, little-endian bytes) to `dir/name`.
    fn write(dir: &Path, name: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, dtype, shape, bytes)| {
                let view = TensorView::new(*dtype, shape.clone(), bytes).unwrap();
                (n.to_string(), view)
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(name)).unwrap();
    }

    fn le<const N: usize, T>(values: &[T], bytes: impl Fn(&T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(bytes).collect()
    }

    /// A run with a directory dataset `sae` (a config and two weight files) and an activation
    /// dataset `acts`, under a tensor quota of `tensor_mb`.
    fn run(dir: &Path, tensor_mb: u64) -> RunState {
        let sae = dir.join("sae");
        std::fs::create_dir(&sae).unwrap();
        std::fs::write(sae.join("cfg.json"), r#"{"k": 2}"#).unwrap();
        write(
            &sae,
            "weights.safetensors",
            &[
                (
                    "W_enc",
                    Dtype::F16,
                    vec![2, 2],
                    le(&[1.0f32, -0.5, 2.0, 0.0], |v| {
                        half::f16::from_f32(*v).to_le_bytes()
                    }),
                ),
                (
                    "b_dec",
                    Dtype::F64,
                    vec![2],
                    le(&[0.25f64, -1.0], |v| v.to_le_bytes()),
                ),
                (
                    "ids",
                    Dtype::I64,
                    vec![3],
                    le(&[7i64, -3, 0], |v| v.to_le_bytes()),
                ),
                ("mask", Dtype::U8, vec![2], vec![1, 0]),
            ],
        );
        write(
            &sae,
            "huge_ids.safetensors",
            &[(
                "ids",
                Dtype::I64,
                vec![2],
                le(&[1i64, 1 << 40], |v| v.to_le_bytes()),
            )],
        );
        write(
            dir,
            "acts.safetensors",
            &[(
                "x",
                Dtype::F32,
                vec![1, 2],
                le(&[1.0f32, 2.0], |v| v.to_le_bytes()),
            )],
        );
        let mut ctx = RunContext::inert();
        let directory = DirectoryDataset::load(&DirectorySpec { path: sae }).unwrap();
        ctx.datasets
            .insert("sae".into(), Dataset::Directory(directory));
        let acts = ActivationSpec {
            tensor: "x".into(),
            ..ActivationSpec::new(dir.join("acts.safetensors"))
        };
        ctx.datasets.insert(
            "acts".into(),
            Dataset::Activations(ActivationDataset::load(&acts).unwrap()),
        );
        let limits = Limits {
            tensor_mb,
            ..Limits::default()
        };
        RunState::new(ctx, &limits)
    }

    fn error<T: std::fmt::Debug>(answer: Answer<T>) -> ApiError {
        answer.expect("no trap").expect_err("an API error")
    }

    #[test]
    fn a_directory_dataset_lists_and_reads_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = run(dir.path(), 64);
        let info = s.datasets().unwrap();
        let sae = info.iter().find(|d| d.name == "sae").unwrap();
        assert_eq!(
            (sae.kind, sae.rows, sae.width),
            (wit::DatasetKind::Directory, 3, 0)
        );
        assert_eq!(
            s.list_files("sae".into()).unwrap().unwrap(),
            ["cfg.json", "huge_ids.safetensors", "weights.safetensors"]
        );
        assert_eq!(
            s.read_text("sae".into(), "cfg.json".into())
                .unwrap()
                .unwrap(),
            r#"{"k": 2}"#
        );

        let read = s
            .read_tensors("sae".into(), "weights.safetensors".into())
            .unwrap()
            .unwrap();
        let names: Vec<&str> = read.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["W_enc", "b_dec", "ids", "mask"]);
        let tensor = |i: usize| s.table.get(&read[i].1).unwrap().tensor.clone();
        let (w, b, ids, mask) = (tensor(0), tensor(1), tensor(2), tensor(3));
        assert_eq!((w.dims(), w.dtype()), (&[2, 2][..], DType::F32));
        assert_eq!(w.to_vec_f32().unwrap(), [1.0, -0.5, 2.0, 0.0]);
        assert_eq!(b.to_vec_f32().unwrap(), [0.25, -1.0]);
        assert_eq!(ids.dtype(), DType::I32);
        assert_eq!(ids.to_vec_i32().unwrap(), [7, -3, 0]);
        assert_eq!(mask.to_vec_i32().unwrap(), [1, 0]);
        // Counted like any other tensor: 4 + 2 + 3 + 2 elements of 4 bytes.
        assert_eq!(s.quota.used(), 44);
    }

    #[test]
    fn bad_requests_are_error_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = run(dir.path(), 64);
        let e = error(s.read_text("sae".into(), "missing.json".into()));
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::NotFound, "data.read-text")
        );
        assert!(
            e.message
                .contains("it holds `cfg.json`, `huge_ids.safetensors`"),
            "{}",
            e.message
        );
        let e = error(s.read_text("sae".into(), "../acts.safetensors".into()));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = error(s.read_text("sae".into(), "weights.safetensors".into()));
        assert!(e.message.contains("not UTF-8"), "{}", e.message);
        let e = error(s.read_tensors("sae".into(), "cfg.json".into()));
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::InvalidArgument, "data.read-tensors")
        );
        assert!(
            e.message.contains("cfg.json: not a valid safetensors file"),
            "{}",
            e.message
        );
        let e = error(s.read_tensors("sae".into(), "huge_ids.safetensors".into()));
        assert!(
            e.message
                .contains("tensor `ids` (I64) holds 1099511627776 at element 1"),
            "{}",
            e.message
        );

        // The other dataset kinds and unknown names.
        let e = error(s.list_files("acts".into()));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("`acts` is of kind `activations`"),
            "{}",
            e.message
        );
        let e = error(s.list_files("nope".into()));
        assert_eq!(e.kind, ErrorKind::NotFound);

        // A directory has no batches.
        for e in [
            error(s.next_batch("sae".into(), 4)),
            error(s.reset("sae".into())),
        ] {
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(
                e.message.contains("is a directory dataset") && e.message.contains("read-text"),
                "{}",
                e.message
            );
        }
        assert_eq!(s.quota.used(), 0);
    }

    #[test]
    fn read_tensors_is_refused_over_the_quota_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = run(dir.path(), 1);
        let filler = RunState::hand_out(
            &mut s,
            "test",
            loupe_kernels::Tensor::zeros([(1 << 18) - 8], loupe_kernels::Device::Cpu).unwrap(),
        )
        .unwrap()
        .unwrap();
        let e = error(s.read_tensors("sae".into(), "weights.safetensors".into()));
        assert_eq!(e.kind, ErrorKind::OutOfQuota);
        assert!(
            e.message
                .contains("`weights.safetensors` (4 tensors, 11 elements) needs 1 MiB"),
            "{}",
            e.message
        );
        s.release(filler).unwrap();
        assert!(
            s.read_tensors("sae".into(), "weights.safetensors".into())
                .unwrap()
                .is_ok()
        );
    }
}
