//! Interventions from the command line: `HOOK[:heads=1,2][:pos=0,3][:by=F][:from=FILE]`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use loupe_kernels::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use crate::model::{Intervention, InterventionAction};

/// Which edit a flag asks for.
#[derive(Clone, Copy)]
pub enum EditKind {
    /// `--zero`: ablate.
    Zero,
    /// `--scale …:by=F`: multiply.
    Scale,
    /// `--patch …:from=FILE`: replace with the tensor of the same name from a trace file.
    Patch,
}

impl EditKind {
    fn flag(self) -> &'static str {
        match self {
            EditKind::Zero => "--zero",
            EditKind::Scale => "--scale",
            EditKind::Patch => "--patch",
        }
    }
}

/// Parses one edit flag's value into an intervention on `device`.
pub fn parse_edit(kind: EditKind, spec: &str, device: Device) -> Result<Intervention> {
    let flag = kind.flag();
    let mut parts = spec.split(':');
    let hook = parts
        .next()
        .filter(|h| !h.is_empty())
        .with_context(|| format!("{flag} `{spec}`: missing the hook name"))?;
    let (mut heads, mut positions, mut factor, mut source) = (None, None, None, None);
    for part in parts {
        let (key, value) = part.split_once('=').with_context(|| {
            format!("{flag} `{spec}`: `{part}` should be key=value (heads=, pos=, by=, from=)")
        })?;
        match key {
            "heads" => heads = Some(index_list(flag, spec, value)?),
            "pos" => positions = Some(index_list(flag, spec, value)?),
            "by" => {
                factor = Some(
                    value
                        .parse::<f32>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .with_context(|| format!("{flag} `{spec}`: by={value} is not a number"))?,
                )
            }
            "from" => source = Some(value),
            other => bail!("{flag} `{spec}`: unknown key `{other}` (use heads=, pos=, by=, from=)"),
        }
    }
    let action = match kind {
        EditKind::Zero => InterventionAction::Zero,
        EditKind::Scale => InterventionAction::Scale(
            factor.with_context(|| format!("{flag} `{spec}`: add :by=FACTOR"))?,
        ),
        EditKind::Patch => {
            let file =
                source.with_context(|| format!("{flag} `{spec}`: add :from=TRACE.safetensors"))?;
            InterventionAction::Replace(read_tensor(Path::new(file), hook, device)?)
        }
    };
    Ok(Intervention {
        hook: hook.to_string(),
        action,
        heads,
        positions,
    })
}

fn index_list(flag: &str, spec: &str, value: &str) -> Result<Vec<usize>> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .with_context(|| format!("{flag} `{spec}`: `{v}` is not an index"))
        })
        .collect()
}

/// The f32 tensor `name` from a safetensors file (such as one `loupe trace` wrote).
pub(super) fn read_tensor(path: &Path, name: &str, device: Device) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let view = file.tensor(name).map_err(|_| {
        anyhow::anyhow!(
            "{}: has no tensor `{name}`; capture it first with `loupe trace --capture {name}`",
            path.display()
        )
    })?;
    if view.dtype() != Dtype::F32 {
        bail!(
            "{}: tensor `{name}` is {:?}, expected F32",
            path.display(),
            view.dtype()
        );
    }
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Tensor::from_vec_f32(values, view.shape(), device)?)
}
