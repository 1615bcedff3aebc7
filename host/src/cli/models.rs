use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use loupe_kernels::Device;

use crate::model::Model;
use crate::model::preprocess::{Preprocessor, Resize};
use crate::model::random::{Preset, StorageDtype, write_random_model};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Print a model directory's architecture, sizes and hook names.
    Inspect {
        /// Hugging Face model directory.
        dir: PathBuf,
    },
    /// Write a random-weight model directory (HF layout, with a tokenizer) for tests and benchmarks.
    Random(RandomArgs),
}

#[derive(Args)]
pub struct RandomArgs {
    /// Model size.
    #[arg(long, value_enum)]
    preset: Preset,
    /// Seed for the weights: the same seed writes the same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How the weights are stored.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: StorageDtype,
    /// Directory to create.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::Inspect { dir } => inspect(dir),
        ModelsCommand::Random(args) => {
            write_random_model(args.preset, args.seed, args.dtype, &args.out)?;
            eprintln!(
                "loupe: wrote a random {} model to {}",
                args.preset.name(),
                args.out.display()
            );
            Ok(())
        }
    }
}

fn inspect(dir: PathBuf) -> Result<()> {
    let model = Model::load(&dir, Device::Cpu)?;
    let (n_layer, d_model, n_head, d_mlp) = model.sizes();
    println!(
        "architecture: {} ({})",
        model.model_type(),
        model.architecture()
    );
    println!("parameters:   {}", model.parameter_count());
    println!("layers:       {n_layer}");
    println!("d_model:      {d_model}");
    println!(
        "heads:        {n_head} × d_head {}",
        d_model / n_head.max(1)
    );
    println!("d_mlp:        {d_mlp}");
    match &model {
        Model::Gpt2(m) => {
            let config = &m.config;
            println!("input:        tokens");
            println!("vocab:        {}", config.vocab_size);
            println!("context:      {}", config.n_positions);
            println!("activation:   {}", config.activation_name);
        }
        Model::Vit(m) => {
            let c = &m.config;
            println!(
                "input:        pixels [batch, {}, {}, {}] in [0, 1]",
                c.channels, c.image_size, c.image_size
            );
            println!(
                "patches:      {}×{} of {} px, sequence {} (CLS at 0{})",
                c.grid(),
                c.grid(),
                c.patch_size,
                c.seq_len(),
                if c.distillation_token {
                    ", distillation at 1"
                } else {
                    ""
                }
            );
            println!("activation:   {}", c.activation_name);
            let shown: Vec<&str> = c.labels.iter().take(8).map(String::as_str).collect();
            let more = c.labels.len().saturating_sub(shown.len());
            println!(
                "classes:      {} ({}{})",
                c.labels.len(),
                shown.join(", "),
                if more > 0 {
                    format!(", … {more} more")
                } else {
                    String::new()
                }
            );
            println!("preprocess:   {}", describe(&m.preprocessor));
        }
    }
    println!("hooks ({}):", model.hook_names().len());
    for name in model.hook_names() {
        println!("  {name}");
    }
    Ok(())
}

/// The preprocessor in one line: resize, crop, normalisation.
fn describe(p: &Preprocessor) -> String {
    let mut steps = Vec::new();
    match p.resize {
        Some(Resize::Exact { height, width }) => {
            steps.push(format!("resize {width}×{height} ({:?})", p.resample))
        }
        Some(Resize::ShortestEdge(e)) => {
            steps.push(format!("shortest edge {e} ({:?})", p.resample))
        }
        None => {}
    }
    if let Some((h, w)) = p.crop {
        steps.push(format!("centre crop {w}×{h}"));
    }
    match &p.mean_std {
        Some((mean, std)) => steps.push(format!(
            "normalise mean {mean:?} std {std:?} (inside the model)"
        )),
        None => steps.push("no normalisation".into()),
    }
    let source = if p.from_file {
        "preprocessor_config.json"
    } else {
        "no preprocessor_config.json"
    };
    format!("{} [{source}]", steps.join(", "))
}
