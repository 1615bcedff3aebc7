//! The GPT-2 fixture check: the reference GPT-2 of the fixtures (`gpt2-ref/`, made by Hugging Face
//! transformers) run on a device, its logits and every hook compared with what transformers computed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use loupe_kernels::Device;
use safetensors::{Dtype, SafeTensors};

use crate::model::{Gpt2, RunSpec};

/// Agreement asked: |loupe − reference| ≤ 1e-4 · max(|reference|, 1) for every element.
pub const TOLERANCE: f32 = 1e-4;

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
            "{}: cannot read the reference (is --fixtures the folder holding gpt2-ref/?)",
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
