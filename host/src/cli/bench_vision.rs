//! `loupe bench vision`: a vision model's forward pass, or the gradient of the summed cross-entropy
//! with respect to the pixels (what saliency maps and level set traversal need), on deterministic
//! pixels; images/s and peak memory. `bench/torch_vision.py` is its PyTorch twin.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use loupe_kernels::{Device, StopSignal, Tensor};

use crate::model::{GradSpec, Model, Objective, RunSpec, Vit};
use crate::selftest::timing::sorted_seconds;

#[derive(Args)]
pub struct VisionArgs {
    /// Hugging Face image-classifier directory (`loupe models random --preset vit-base`).
    #[arg(long)]
    model: PathBuf,
    /// Images per pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed passes.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed passes first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Time forward + backward to the pixels instead of the forward pass alone.
    #[arg(long)]
    grad: bool,
    /// Where to run: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The pixels both benchmarks feed: `((b · 7919 + i · 104729) mod 1000) / 1000` at flat index `i` of
/// image `b`, so loupe and PyTorch see the same input without sharing a file.
pub fn spread_pixels(model: &Vit, batch: usize, device: Device) -> Result<Tensor> {
    let c = &model.config;
    let per = c.channels * c.image_size * c.image_size;
    let values = (0..batch)
        .flat_map(|b| (0..per).map(move |i| ((b * 7919 + i * 104729) % 1000) as f32 / 1000.0))
        .collect();
    Ok(Tensor::from_vec_f32(
        values,
        [batch, c.channels, c.image_size, c.image_size],
        device,
    )?)
}

pub fn run(args: VisionArgs) -> Result<()> {
    let device = super::resolve_device(&args.device)?;
    let start = Instant::now();
    let model = Model::load(&args.model, device)?;
    let load_s = start.elapsed().as_secs_f64();
    let Model::Vit(vit) = &model else {
        bail!(
            "{} is not a vision model; use `loupe bench forward`",
            args.model.display()
        );
    };
    let pixels = spread_pixels(vit, args.batch, device)?;
    let classes = vit.config.labels.len() as i32;
    let labels: Vec<i32> = (0..args.batch as i32).map(|b| b % classes).collect();
    let grad = GradSpec {
        objective: Objective::CrossEntropy {
            labels: Some(Tensor::from_vec_i32(labels, [args.batch], device)?),
        },
        wrt: vec!["input".into()],
    };
    let spec = RunSpec::default();
    let times = sorted_seconds(args.warmup, args.iters, || {
        if args.grad {
            let out = vit.forward_with_grad(&pixels, &spec, &grad, &StopSignal::never())?;
            std::hint::black_box(out.grads.len());
        } else {
            let out = vit.forward_until(&pixels, &spec, &StopSignal::never())?;
            std::hint::black_box(out.logits);
        }
        device.synchronize()?;
        Ok(())
    })?;
    let median = times[times.len() / 2];
    let c = &vit.config;
    println!(
        "model:          {} ({})",
        args.model.display(),
        c.architecture
    );
    println!(
        "device:         {device}, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "batch:          {} × {}×{}",
        args.batch, c.image_size, c.image_size
    );
    println!("load:           {load_s:.2} s");
    println!(
        "{}median {:.1} ms, best {:.1} ms over {} passes",
        if args.grad {
            "grad(pixels):   "
        } else {
            "forward:        "
        },
        median * 1e3,
        times[0] * 1e3,
        times.len()
    );
    println!("images/s:       {:.1}", args.batch as f64 / median);
    println!(
        "peak RSS:       {:.0} MiB",
        super::bench::memory_kib("VmHWM") / 1024.0
    );
    Ok(())
}
