use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use loupe_kernels::{Device, StopSignal, Tensor};

use super::edits::{EditKind, parse_edit};
use super::input::ModelInput;
use crate::data::images::ImageBatch;
use crate::model::{Intervention, Model, ModelDir, RunSpec};
use crate::tensor_file::write_safetensors;
use crate::tokenizer::TextTokenizer;

/// The token input of `trace` and `grad`: a model and a batch of ids or texts.
#[derive(Args)]
pub struct TokenInput {
    /// Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Comma-separated token ids of one sequence; repeat for a batch (sequences of equal length).
    #[arg(long, value_name = "1,2,3", conflicts_with = "text")]
    ids: Vec<String>,
    /// Text to tokenize with the model's tokenizer; repeat for a batch (equal token counts).
    #[arg(long)]
    text: Vec<String>,
    /// Put the BOS token (`<|endoftext|>`) before each sequence, as TransformerLens's `to_tokens` does
    /// by default and as `loupe run` text datasets do (needs the model's tokenizer.json).
    #[arg(long)]
    prepend_bos: bool,
}

impl TokenInput {
    /// Whether any tokens were given (`--ids` or `--text`).
    pub fn given(&self) -> bool {
        !self.ids.is_empty() || !self.text.is_empty()
    }

    /// The batch of token sequences, tokenized and prefixed as asked.
    pub fn batch(&self) -> Result<Vec<Vec<u32>>> {
        let mut batch: Vec<Vec<u32>> = if !self.text.is_empty() {
            let tokenizer = TextTokenizer::load(&ModelDir::new(&self.model)?.tokenizer_path())?;
            self.text
                .iter()
                .map(|t| tokenizer.encode(t))
                .collect::<Result<_, _>>()?
        } else if !self.ids.is_empty() {
            self.ids
                .iter()
                .map(|s| super::parse_ids(s))
                .collect::<Result<_>>()?
        } else {
            bail!("give the input as --ids 1,2,3 or --text \"...\"");
        };
        if self.prepend_bos {
            let tokenizer = TextTokenizer::load(&ModelDir::new(&self.model)?.tokenizer_path())?;
            let bos = super::tokenize::bos(&tokenizer, &self.model)?;
            batch.iter_mut().for_each(|seq| seq.insert(0, bos));
        }
        Ok(batch)
    }
}

/// The edits `trace` and `grad` make to activations as the pass reaches their hooks.
#[derive(Args)]
pub struct EditFlags {
    /// Zero-ablate a hook: `HOOK[:heads=1,2][:pos=0,3]` (heads for attn.hook_q|k|v|z|pattern). Repeatable.
    #[arg(long, value_name = "HOOK[:heads=..][:pos=..]")]
    zero: Vec<String>,
    /// Multiply a hook's activation: `HOOK[:heads=..][:pos=..]:by=FACTOR`. Repeatable.
    #[arg(long, value_name = "HOOK[:heads=..][:pos=..]:by=F")]
    scale: Vec<String>,
    /// Activation patching: replace a hook's activation with the tensor of the same name in an earlier
    /// trace, `HOOK[:heads=..][:pos=..]:from=TRACE.safetensors`. Repeatable.
    #[arg(long, value_name = "HOOK[:heads=..][:pos=..]:from=FILE")]
    patch: Vec<String>,
}

impl EditFlags {
    pub fn interventions(&self, device: Device) -> Result<Vec<Intervention>> {
        let mut interventions = Vec::new();
        for (kind, specs) in [
            (EditKind::Zero, &self.zero),
            (EditKind::Scale, &self.scale),
            (EditKind::Patch, &self.patch),
        ] {
            for spec in specs {
                interventions.push(parse_edit(kind, spec, device)?);
            }
        }
        Ok(interventions)
    }
}

#[derive(Args)]
pub struct TraceArgs {
    #[command(flatten)]
    input: TokenInput,
    #[command(flatten)]
    images: super::images::ImageInput,
    /// Hook name or glob to save, e.g. `blocks.0.attn.hook_pattern`, `blocks.*.hook_resid_post`, `*`.
    #[arg(long, value_name = "GLOB")]
    capture: Vec<String>,
    #[command(flatten)]
    edits: EditFlags,
    /// Output safetensors file: `input_ids` (or `pixel_values`, and `labels` if the images have
    /// them), `logits` and each captured hook under its name.
    #[arg(long)]
    out: PathBuf,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: TraceArgs) -> Result<()> {
    let device = super::resolve_device(&args.device)?;
    let model = Model::load(&args.input.model, device)?;
    let input = ModelInput::load(&model, &args.input, &args.images, device)?;
    let mut tensors = vec![input.saved()];
    if let ModelInput::Images(ImageBatch {
        labels: Some(labels),
        ..
    }) = &input
    {
        let n = labels.len();
        tensors.push((
            "labels".into(),
            Tensor::from_vec_i32(labels.clone(), [n], device)?,
        ));
    }
    let spec = RunSpec {
        capture: args.capture,
        interventions: args.edits.interventions(device)?,
        skip_logits: false,
    };
    let output = model.forward_until(input.tensor(), &spec, &StopSignal::never())?;
    if let Some(logits) = output.logits {
        tensors.push(("logits".to_string(), logits));
    }
    let captured = output.captures.len();
    tensors.extend(output.captures);
    write_safetensors(&args.out, &tensors)?;
    eprintln!(
        "loupe: traced {}, captured {captured} hooks → {}",
        input.describe(),
        args.out.display()
    );
    Ok(())
}
