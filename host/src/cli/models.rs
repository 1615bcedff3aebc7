use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use loupe_kernels::Device;

use crate::model::Gpt2;
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
    let model = Gpt2::load(&dir, Device::Cpu)?;
    let config = &model.config;
    println!("architecture: gpt2");
    println!("parameters:   {}", model.parameter_count());
    println!("layers:       {}", config.n_layer);
    println!("d_model:      {}", config.d_model);
    println!(
        "heads:        {} × d_head {}",
        config.n_head,
        config.d_head()
    );
    println!("d_mlp:        {}", config.d_mlp);
    println!("vocab:        {}", config.vocab_size);
    println!("context:      {}", config.n_positions);
    println!("activation:   {}", config.activation_name);
    println!("hooks ({}):", model.hook_names().len());
    for name in model.hook_names() {
        println!("  {name}");
    }
    Ok(())
}
