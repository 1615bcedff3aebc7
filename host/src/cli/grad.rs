//! `loupe grad`: gradients of an objective through a model, written as safetensors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use loupe_kernels::{Device, StopSignal, Tensor};
use safetensors::SafeTensors;

use super::images::ImageInput;
use super::input::ModelInput;
use super::trace::{EditFlags, TokenInput};
use crate::model::{GradSpec, Model, Objective, RunSpec};
use crate::tensor_file::write_safetensors;

#[derive(Args)]
pub struct GradArgs {
    #[command(flatten)]
    input: TokenInput,
    #[command(flatten)]
    images: ImageInput,
    /// Labels for the cross-entropy. A language model: comma-separated token ids, one per position
    /// (-100 leaves a position out), repeated once per sequence; without them, next-token labels. A
    /// classifier: one comma-separated list of class indices, one per image; without it, the labels
    /// of the image folder or tensor file.
    #[arg(long, value_name = "7,-100,3")]
    labels: Vec<String>,
    /// What to differentiate: `cross-entropy` (summed over the labelled positions or images), or a
    /// safetensors file holding one f32 tensor named after a hook (or `logits`): the cotangent there,
    /// giving the vector–Jacobian product ⟨value at that hook, tensor⟩.
    #[arg(
        long,
        default_value = "cross-entropy",
        value_name = "cross-entropy|FILE"
    )]
    objective: String,
    /// What to take gradients with respect to: `input` (the token embeddings of a language model, the
    /// pixels of a vision model, in [0, 1] pixel space), a hook name or a weight name
    /// (`h.0.mlp.c_fc.weight`), globs allowed (`blocks.*.hook_resid_post`). Repeatable.
    #[arg(long, value_name = "GLOB", required = true)]
    wrt: Vec<String>,
    /// Hook name or glob whose activation to save beside the gradients.
    #[arg(long, value_name = "GLOB")]
    capture: Vec<String>,
    #[command(flatten)]
    edits: EditFlags,
    /// Output safetensors file: `input_ids` (or `pixel_values` and `labels`), `objective` (its value)
    /// and `grad.NAME` for each gradient (each shaped as what it differentiates by), plus the captured
    /// hooks.
    #[arg(long)]
    out: PathBuf,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: GradArgs) -> Result<()> {
    let device = super::resolve_device(&args.device)?;
    let model = Model::load(&args.input.model, device)?;
    let input = ModelInput::load(&model, &args.input, &args.images, device)?;
    let objective = match &input {
        ModelInput::Tokens { batch, .. } => {
            objective(&args, device, |lists| token_labels(lists, batch, device))?
        }
        ModelInput::Images(images) => {
            let n = images.names.len();
            match objective(&args, device, |lists| class_labels(lists, n, device))? {
                Objective::CrossEntropy { labels: None } => match &images.labels {
                    Some(l) => Objective::CrossEntropy {
                        labels: Some(Tensor::from_vec_i32(l.clone(), [n], device)?),
                    },
                    None => bail!(
                        "the cross-entropy of a classifier needs labels: give --labels (one class per image) or a labelled folder or tensor file"
                    ),
                },
                other => other,
            }
        }
    };
    let mut inputs = vec![input.saved()];
    if let (ModelInput::Images(_), Objective::CrossEntropy { labels: Some(l) }) =
        (&input, &objective)
    {
        inputs.push(("labels".into(), l.clone()));
    }
    let described = match &objective {
        Objective::CrossEntropy { labels: None } => "next-token cross-entropy (summed)".to_string(),
        Objective::CrossEntropy { .. } => "cross-entropy against the labels (summed)".to_string(),
        Objective::Cotangent { at, .. } => format!("⟨{at}, cotangent from {}⟩", args.objective),
    };
    let reads_logits = matches!(&objective, Objective::CrossEntropy { .. })
        || matches!(&objective, Objective::Cotangent { at, .. } if at == "logits");
    let spec = RunSpec {
        capture: args.capture.clone(),
        interventions: args.edits.interventions(device)?,
        skip_logits: !reads_logits,
    };
    let grad = GradSpec {
        objective,
        wrt: args.wrt.clone(),
    };
    let out = model.forward_with_grad(input.tensor(), &spec, &grad, &StopSignal::never())?;

    let mut tensors = inputs;
    tensors.push((
        "objective".to_string(),
        Tensor::from_vec_f32(vec![out.value], [1usize], Device::Cpu)?,
    ));
    eprintln!("loupe: {described} = {}", out.value);
    let width = out
        .grads
        .keys()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    eprintln!("  {:<width$} {:<18} {:>12}", "gradient", "shape", "L2 norm");
    for (name, g) in &out.grads {
        let norm = g
            .to_vec_f32()?
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        eprintln!(
            "  {name:<width$} {:<18} {norm:>12.6}",
            g.shape().to_string()
        );
    }
    let count = out.grads.len();
    tensors.extend(out.grads.into_iter().map(|(n, g)| (format!("grad.{n}"), g)));
    tensors.extend(out.run.captures);
    write_safetensors(&args.out, &tensors)?;
    eprintln!(
        "loupe: {count} gradients of {} → {}",
        input.describe(),
        args.out.display()
    );
    Ok(())
}

/// The objective `--objective` names; `labels` parses `--labels` when they are given.
fn objective(
    args: &GradArgs,
    device: Device,
    labels: impl FnOnce(&[String]) -> Result<Tensor>,
) -> Result<Objective> {
    if args.objective == "cross-entropy" {
        let labels = if args.labels.is_empty() {
            None
        } else {
            Some(labels(&args.labels)?)
        };
        return Ok(Objective::CrossEntropy { labels });
    }
    if !args.labels.is_empty() {
        bail!("--labels belong to --objective cross-entropy; a cotangent file needs none");
    }
    let (at, direction) = cotangent_file(Path::new(&args.objective), device)?;
    Ok(Objective::Cotangent { at, direction })
}

/// `--labels` of a classifier: one list with a class index per image.
fn class_labels(lists: &[String], images: usize, device: Device) -> Result<Tensor> {
    let [list] = lists else {
        bail!("--labels: give one comma-separated list, a class index per image");
    };
    let row: Vec<i32> = list
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<i32>()
                .map_err(|_| anyhow::anyhow!("--labels: `{s}` is not a class index"))
        })
        .collect::<Result<_>>()?;
    if row.len() != images {
        bail!(
            "--labels: {} labels for {images} images; give one class index per image",
            row.len()
        );
    }
    Ok(Tensor::from_vec_i32(row, [images], device)?)
}

/// `--labels` of a language model: one list per sequence, each as long as its sequence.
fn token_labels(lists: &[String], batch: &[Vec<u32>], device: Device) -> Result<Tensor> {
    if lists.len() != batch.len() {
        bail!(
            "--labels: {} lists for {} sequences; give one per sequence",
            lists.len(),
            batch.len()
        );
    }
    let mut flat = Vec::new();
    for (b, (list, seq)) in lists.iter().zip(batch).enumerate() {
        let row: Vec<i32> = list
            .split(',')
            .map(|s| {
                s.trim().parse::<i32>().map_err(|_| {
                    anyhow::anyhow!("--labels: `{s}` is not a token id or -100 (sequence {b})")
                })
            })
            .collect::<Result<_>>()?;
        if row.len() != seq.len() {
            bail!(
                "--labels: sequence {b} has {} tokens but {} labels; give one per position (-100 to leave one out)",
                seq.len(),
                row.len()
            );
        }
        flat.extend(row);
    }
    Ok(Tensor::from_vec_i32(
        flat,
        [batch.len(), batch[0].len()],
        device,
    )?)
}

/// The one tensor of a cotangent file, and the hook (or `logits`) it is named after.
fn cotangent_file(path: &Path, device: Device) -> Result<(String, Tensor)> {
    if !path.exists() {
        bail!(
            "--objective `{}`: neither `cross-entropy` nor an existing safetensors file",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let names = file.names();
    let [name] = names.as_slice() else {
        bail!(
            "{}: a cotangent file holds exactly one tensor, named after its hook (or `logits`); this one holds {}",
            path.display(),
            names.len()
        );
    };
    let name = name.to_string();
    let tensor = super::edits::read_tensor(path, &name, device)?;
    Ok((name, tensor))
}
