//! Short timings for the self-test and the benchmarks: matrix products and forward passes, each timed
//! after an untimed warm-up (kernel compilation and first-touch costs stay out), waiting for the device
//! to finish every timed piece of work.

use std::time::Instant;

use anyhow::Result;
use loupe_kernels::{Device, MatmulPrecision, Tensor};

use crate::model::{Gpt2, RunSpec};

/// The seconds of `iters` timed runs of `f` (at least one), sorted, after `warmup` untimed runs.
pub fn sorted_seconds(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// The median of `iters` timed runs of `f` (at least one), in seconds.
fn median_seconds(iters: usize, f: impl FnMut() -> Result<()>) -> Result<f64> {
    let times = sorted_seconds(0, iters, f)?;
    Ok(times[times.len() / 2])
}

/// The median seconds of an n×n · n×n product on `device` in `precision`, after one untimed product.
pub fn gemm_seconds(
    n: usize,
    precision: MatmulPrecision,
    device: Device,
    iters: usize,
) -> Result<f64> {
    let a = Tensor::randn([n, n], 0.0, 1.0, 1, device)?;
    let b = Tensor::randn([n, n], 0.0, 1.0, 2, device)?;
    a.matmul_with_precision(&b, false, false, precision)?;
    device.synchronize()?;
    median_seconds(iters, || {
        let c = a.matmul_with_precision(&b, false, false, precision)?;
        device.synchronize()?;
        drop(c);
        Ok(())
    })
}

/// TFLOP/s of an n×n · n×n product done in `seconds`.
pub fn gemm_tflops(n: usize, seconds: f64) -> f64 {
    2.0 * (n as f64).powi(3) / seconds / 1e12
}

/// Token ids spread over the vocabulary, the same on every call: `[batch, seq]` on the model's device.
pub fn spread_ids(model: &Gpt2, batch: usize, seq: usize) -> Result<Tensor> {
    let vocab = model.config.vocab_size as u64;
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            (0..seq)
                .map(|t| ((b * 7919 + t * 104_729) as u64 % vocab) as u32)
                .collect()
        })
        .collect();
    Ok(model.input_ids(&ids)?)
}

/// Every timed forward pass's seconds, sorted, after `warmup` untimed passes.
pub fn forward_seconds(
    model: &Gpt2,
    ids: &Tensor,
    spec: &RunSpec,
    warmup: usize,
    iters: usize,
) -> Result<Vec<f64>> {
    sorted_seconds(warmup, iters, || forward_once(model, ids, spec))
}

/// One pass, finished: on a GPU, timing waits for the device to complete the queued work.
fn forward_once(model: &Gpt2, ids: &Tensor, spec: &RunSpec) -> Result<()> {
    let out = model.forward(ids, spec)?;
    if let Some(logits) = &out.logits {
        std::hint::black_box(logits.numel());
    }
    std::hint::black_box(out.captures.len());
    ids.device().synchronize()?;
    Ok(())
}
