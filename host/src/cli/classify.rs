//! `loupe classify`: the top classes of a vision model for some images, the first smoke test a vision
//! user reaches for.

use anyhow::{Result, bail};
use clap::Args;
use loupe_kernels::StopSignal;

use super::images::ImageInput;
use crate::model::{Model, RunSpec};

#[derive(Args)]
pub struct ClassifyArgs {
    /// Hugging Face image-classifier directory (config.json, model.safetensors, optional
    /// preprocessor_config.json).
    #[arg(long)]
    model: std::path::PathBuf,
    #[command(flatten)]
    images: ImageInput,
    /// Classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: ClassifyArgs) -> Result<()> {
    if !args.images.given() {
        bail!("give the images as --images PATH... or --pixels FILE.safetensors");
    }
    if args.top == 0 || args.batch == 0 {
        bail!("--top and --batch must be at least 1");
    }
    let device = super::resolve_device(&args.device)?;
    let model = Model::load(&args.model, device)?;
    let Model::Vit(vit) = &model else {
        bail!(
            "{} is a language model ({}); `loupe classify` takes an image classifier",
            args.model.display(),
            model.model_type()
        );
    };
    let (set, shape) = args.images.open(vit)?;
    let labels = &vit.config.labels;
    let top = args.top.min(labels.len());
    let (mut correct, mut labelled) = (0usize, 0usize);
    for start in (0..set.len()).step_by(args.batch) {
        let batch = set.batch(start..start + args.batch, &vit.preprocessor, shape, device)?;
        let logits = model
            .forward_until(&batch.pixels, &RunSpec::default(), &StopSignal::never())?
            .logits
            .ok_or_else(|| anyhow::anyhow!("the model returned no logits"))?;
        let probs = logits.softmax(-1)?.to_vec_f32()?;
        for (i, name) in batch.names.iter().enumerate() {
            let row = &probs[i * labels.len()..(i + 1) * labels.len()];
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let truth = batch.labels.as_ref().map(|l| l[i]);
            let verdict = match truth {
                Some(t) => {
                    labelled += 1;
                    let hit = order[0] as i32 == t;
                    correct += usize::from(hit);
                    let name = usize::try_from(t)
                        .ok()
                        .and_then(|t| labels.get(t))
                        .map_or("?", String::as_str);
                    format!(
                        "  (label {t} {name}: {})",
                        if hit { "correct" } else { "wrong" }
                    )
                }
                None => String::new(),
            };
            println!("{name}{verdict}");
            for &c in &order[..top] {
                println!("  {:>6.2} %  {c:>4}  {}", 100.0 * row[c], labels[c]);
            }
        }
    }
    if labelled > 0 {
        println!(
            "top-1 accuracy: {correct}/{labelled} ({:.1} %)",
            100.0 * correct as f64 / labelled as f64
        );
        if labelled < 30 {
            println!("  (on {labelled} images: too few for an accuracy to mean much)");
        }
    }
    Ok(())
}
