//! The fixture checks: the reference GPT-2 (`gpt2-ref/`) and distilled DeiT (`deit-ref/`) of the
//! fixtures, made by Hugging Face transformers, run on a device, their logits, hooks and (DeiT) pixel
//! gradient compared with what transformers computed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use loupe_kernels::Device;
use safetensors::{Dtype, SafeTensors};

use crate::model::{Gpt2, GradSpec, Objective, RunSpec, Vit};

/// Agreement asked: |loupe − reference| ≤ 1e-4 · max(|reference|, 1) for every element.
pub const TOLERANCE: f32 = 1e-4;
/// Gradients: |loupe − reference| ≤ 1e-3 · max(|reference|, 1 % of the tensor's largest).
pub const GRAD_TOLERANCE: f32 = 1e-3;

/// A reference tensor: its shape and values (integers widened to i64 for the ids).
struct Reference {
    shape: Vec<usize>,
    floats: Vec<f32>,
    ints: Vec<i64>,
}

/// How the model did against the reference.
#[derive(Debug)]
pub struct FixtureParity {
    /// Tensors compared: the logits and every hook.
    pub compared: usize,
    /// The largest difference over all of them, as a fraction of the tolerance (≤ 1 passes).
    pub worst: f32,
    /// Each tensor that did not match, with its worst element.
    pub mismatches: Vec<String>,
}

/// Runs `gpt2-ref` (under `fixtures`) on `device` with every hook captured and compares.
pub fn gpt2_parity(fixtures: &Path, device: Device) -> Result<FixtureParity> {
    let dir = fixtures.join("gpt2-ref");
    let file = dir.join("reference.safetensors");
    let reference = read_reference(&file)?;
    let ids = reference
        .get("input_ids")
        .with_context(|| format!("{}: no `input_ids` tensor", file.display()))?;
    let (&[batch, seq], true) = (
        ids.shape.as_slice(),
        ids.ints.len() == ids.shape.iter().product::<usize>(),
    ) else {
        bail!(
            "{}: `input_ids` should be integer [batch, pos], is {:?}",
            file.display(),
            ids.shape
        );
    };
    let sequences: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            ids.ints[b * seq..(b + 1) * seq]
                .iter()
                .map(|&v| v as u32)
                .collect()
        })
        .collect();

    let model = Gpt2::load(&dir, device)?;
    let input = model.input_ids(&sequences)?;
    let out = model.forward(
        &input,
        &RunSpec {
            capture: vec!["*".into()],
            ..Default::default()
        },
    )?;

    let mut parity = FixtureParity {
        compared: 0,
        worst: 0.0,
        mismatches: Vec::new(),
    };
    for (name, expected) in &reference {
        if name == "input_ids" {
            continue;
        }
        let actual = if name == "logits" {
            out.logits.as_ref()
        } else {
            out.captures.get(name)
        };
        let Some(actual) = actual else {
            parity.mismatches.push(format!("{name}: not computed"));
            continue;
        };
        parity.compared += 1;
        if actual.dims() != expected.shape.as_slice() {
            parity.mismatches.push(format!(
                "{name}: shape {:?}, reference {:?}",
                actual.dims(),
                expected.shape
            ));
            continue;
        }
        let values = actual.to_vec_f32()?;
        let (worst, at) = worst_difference(&values, &expected.floats);
        parity.worst = parity.worst.max(worst);
        // `worst` is never NaN (`worst_difference` counts NaN as infinitely off).
        if worst > 1.0 {
            parity.mismatches.push(format!(
                "{name}: element {at} is {}, reference {}",
                values[at], expected.floats[at]
            ));
        }
    }
    if parity.compared == 0 {
        bail!("{}: holds no logits or hooks to compare", file.display());
    }
    Ok(parity)
}

/// Runs `deit-ref` (under `fixtures`) on `device` with gradients: its logits, the hooks the reference
/// stores and the gradient of the summed cross-entropy with respect to the pixels. The reference fed
/// its pixels unnormalised; loupe normalises inside the model, so it is fed `p · std + mean` and its
/// gradient divided back by `std`.
pub fn deit_parity(fixtures: &Path, device: Device) -> Result<FixtureParity> {
    let dir = fixtures.join("deit-ref");
    let file = dir.join("reference.safetensors");
    let reference = read_reference(&file)?;
    let get = |name: &str| {
        reference
            .get(name)
            .with_context(|| format!("{}: no `{name}` tensor", file.display()))
    };
    let model = Vit::load(&dir, device)?;
    let Some((mean, std)) = model.preprocessor.mean_std.clone() else {
        bail!("{}: the preprocessor does not normalise", dir.display());
    };
    let p = get("pixel_values")?;
    let (channels, plane) = (p.shape[1], p.shape[2] * p.shape[3]);
    let channel = |i: usize| (i / plane) % channels;
    let fed: Vec<f32> = p
        .floats
        .iter()
        .enumerate()
        .map(|(i, &v)| v * std[channel(i)] + mean[channel(i)])
        .collect();
    let pixels = loupe_kernels::Tensor::from_vec_f32(fed, p.shape.clone(), device)?;
    let labels: Vec<i32> = get("labels")?.ints.iter().map(|&l| l as i32).collect();
    let labels = loupe_kernels::Tensor::from_vec_i32(labels.clone(), [labels.len()], device)?;
    let hooks: Vec<String> = reference
        .keys()
        .filter(|n| n.starts_with("blocks.") || n.starts_with("ln_final."))
        .cloned()
        .collect();
    let out = model.forward_with_grad(
        &pixels,
        &RunSpec {
            capture: hooks.clone(),
            ..Default::default()
        },
        &GradSpec {
            objective: Objective::CrossEntropy {
                labels: Some(labels),
            },
            wrt: vec!["input".into()],
        },
        &loupe_kernels::StopSignal::never(),
    )?;
    let mut parity = FixtureParity {
        compared: 0,
        worst: 0.0,
        mismatches: Vec::new(),
    };
    let mut compare =
        |name: &str, actual: &loupe_kernels::Tensor, expected: &[f32], grad: bool| -> Result<()> {
            parity.compared += 1;
            let values = actual.to_vec_f32()?;
            if values.len() != expected.len() {
                parity
                    .mismatches
                    .push(format!("{name}: shape {:?}", actual.dims()));
                return Ok(());
            }
            let (worst, at) = if grad {
                worst_gradient_difference(&values, expected)
            } else {
                worst_difference(&values, expected)
            };
            parity.worst = parity.worst.max(worst);
            if worst > 1.0 {
                parity.mismatches.push(format!(
                    "{name}: element {at} is {}, reference {}",
                    values[at], expected[at]
                ));
            }
            Ok(())
        };
    let logits = out
        .run
        .logits
        .as_ref()
        .context("the pass returned no logits")?;
    compare("logits", logits, &get("logits")?.floats, false)?;
    for hook in &hooks {
        let actual = out
            .run
            .captures
            .get(hook)
            .with_context(|| format!("`{hook}` was not captured"))?;
        compare(hook, actual, &get(hook)?.floats, false)?;
    }
    let expected: Vec<f32> = get("grad.pixel_values")?
        .floats
        .iter()
        .enumerate()
        .map(|(i, &g)| g / std[channel(i)])
        .collect();
    let grad = out.grads.get("input").context("no pixel gradient")?;
    compare("grad.pixel_values", grad, &expected, true)?;
    Ok(parity)
}

/// [`worst_difference`] for gradients, at [`GRAD_TOLERANCE`] with a floor of 1 % of the largest
/// reference value (entries near zero carry cancellation noise).
fn worst_gradient_difference(actual: &[f32], expected: &[f32]) -> (f32, usize) {
    let floor = 0.01 * expected.iter().fold(0f32, |m, e| m.max(e.abs()));
    let mut worst = (0.0f32, 0);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let off = (a - e).abs() / (GRAD_TOLERANCE * e.abs().max(floor).max(f32::MIN_POSITIVE));
        let off = if off.is_nan() { f32::INFINITY } else { off };
        if off > worst.0 {
            worst = (off, i);
        }
    }
    worst
}

/// The largest |a − e| / (TOLERANCE · max(|e|, 1)) and where; NaN anywhere counts as infinitely off.
fn worst_difference(actual: &[f32], expected: &[f32]) -> (f32, usize) {
    let mut worst = (0.0f32, 0);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let off = (a - e).abs() / (TOLERANCE * e.abs().max(1.0));
        let off = if off.is_nan() { f32::INFINITY } else { off };
        if off > worst.0 {
            worst = (off, i);
        }
    }
    worst
}

fn read_reference(file: &Path) -> Result<BTreeMap<String, Reference>> {
    let bytes = std::fs::read(file).with_context(|| {
        format!(
            "{}: cannot read the reference (is --fixtures the folder holding gpt2-ref/ and deit-ref/?)",
            file.display()
        )
    })?;
    let tensors = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", file.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        let data = view.data();
        let (floats, ints) = match view.dtype() {
            Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Vec::new(),
            ),
            Dtype::I32 => (
                Vec::new(),
                data.chunks_exact(4)
                    .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            ),
            Dtype::I64 => (
                Vec::new(),
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            other => bail!(
                "{}: tensor `{name}` is {other:?}; the reference holds f32 values and integer ids",
                file.display()
            ),
        };
        out.insert(
            name,
            Reference {
                shape: view.shape().to_vec(),
                floats,
                ints,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_difference_is_scaled_by_the_tolerance_and_nan_is_off() {
        let (worst, at) = worst_difference(&[1.0, 2.0 + 1e-4, 100.0], &[1.0, 2.0, 100.0]);
        assert_eq!(at, 1);
        assert!((worst - 0.5).abs() < 0.01, "{worst}");
        assert_eq!(worst_difference(&[f32::NAN], &[0.0]).0, f32::INFINITY);
    }
}
