//! Checkpoints: what a later run needs to continue a training (`resume = "runs/<id>"`), written to
//! `artifacts/checkpoint/` every `checkpoint_every` steps and when the user asks the run to stop.
//!
//! The directory is a SAELens SAE in its own right (`cfg.json`, `sae_weights.safetensors`: the SAE so
//! far, marked partial), plus the trainer's state: `training_state.safetensors` (parameters in
//! training units, Adam moments, steps since each latent fired, the step) and `training_state.json`
//! (settings it must be resumed with, the input scale, where the data stream stood). The JSON is
//! written last and names the step the tensors hold, so a checkpoint cut short by a kill is caught.

use loupe_plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

use crate::arch::Sae;
use crate::saelens::{self, SaveInfo};
use crate::train::{TrainConfig, Trainer, TrainerScalars};

/// Under the run's artifacts; the host hands it to a resuming run as the dataset `resume`.
pub const DIR: &str = "checkpoint";
const RESUME_DATASET: &str = "resume";
const STATE_TENSORS: &str = "training_state.safetensors";
const STATE_JSON: &str = "training_state.json";
const FORMAT: &str = "loupe-sae-training-state";
const VERSION: u32 = 1;

/// The settings and position a checkpoint was written at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    pub version: u32,
    /// The run that wrote it.
    pub run: String,
    pub architecture: String,
    pub d_in: usize,
    pub d_sae: usize,
    pub k: usize,
    pub hook: String,
    pub dataset: String,
    pub batch_size: usize,
    /// The factor training multiplies activations by (kept: a resumed run must not re-estimate it).
    pub input_scale: f64,
    pub steps_planned: u64,
    /// Dataset rows held out for evaluation before the training rows.
    pub held_out_rows: u64,
    /// The dataset row training would read next (rows already in the shuffling buffer are skipped
    /// on resume).
    pub source_position: u64,
    pub epochs_restarted: u32,
    pub trainer: TrainerScalars,
}

impl State {
    /// Refuses to continue a checkpoint with different settings: the SAE would not be the one the
    /// settings describe.
    pub fn check_matches(&self, want: &State) -> Result<()> {
        let mismatch = |what: &str, was: String, now: String| {
            Err(Error::invalid(
                "sae.resume",
                format!(
                    "the checkpoint of run `{}` was trained with {what} = {was}, this run asks for {now}: resume with the settings of the run it continues",
                    self.run
                ),
            ))
        };
        if self.architecture != want.architecture {
            return mismatch(
                "architecture",
                self.architecture.clone(),
                want.architecture.clone(),
            );
        }
        if self.hook != want.hook {
            return mismatch("hook", self.hook.clone(), want.hook.clone());
        }
        if (self.d_in, self.d_sae) != (want.d_in, want.d_sae) {
            return mismatch(
                "d_in → d_sae",
                format!("{} → {}", self.d_in, self.d_sae),
                format!("{} → {}", want.d_in, want.d_sae),
            );
        }
        if self.k != want.k {
            return mismatch("k", self.k.to_string(), want.k.to_string());
        }
        if self.batch_size != want.batch_size {
            return mismatch(
                "batch_size",
                self.batch_size.to_string(),
                want.batch_size.to_string(),
            );
        }
        if self.held_out_rows != want.held_out_rows {
            return mismatch(
                "the held-out slice (eval_tokens)",
                format!("{} rows", self.held_out_rows),
                format!("{} rows", want.held_out_rows),
            );
        }
        Ok(())
    }
}

/// Writes the checkpoint: the SAE so far in SAELens form (`info.loupe` should mark it partial), the
/// trainer's tensors, then the state.
pub fn save(trainer: &Trainer, state: &State, sae: &Sae, info: &SaveInfo) -> Result<()> {
    saelens::save(DIR, sae, info, None)?;
    let (mut tensors, _) = trainer.snapshot();
    let step = Tensor::from_f32(&[state.trainer.step as f32], &[1])?;
    tensors.push(("step".to_string(), &step));
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    report::save_tensors(&format!("{DIR}/{STATE_TENSORS}"), &named)?;
    report::save_json(&format!("{DIR}/{STATE_JSON}"), state)
}

/// A checkpoint read back for a resumed run.
pub struct Resumed {
    pub state: State,
    tensors: Vec<(String, Tensor)>,
}

/// The checkpoint of the run this one continues, if it continues one.
pub fn load() -> Result<Option<Resumed>> {
    let Some(run) = runtime::resumed_from() else {
        return Ok(None);
    };
    let what = format!("the checkpoint of run `{run}`");
    let dir = Directory::open(RESUME_DATASET)?;
    let files = dir.files()?;
    if !files.iter().any(|f| f == STATE_JSON) {
        return Err(Error::invalid(
            "sae.resume",
            format!(
                "{what} has no {STATE_JSON}: it is not an SAE training checkpoint (or was cut short); resume from a run that wrote one"
            ),
        ));
    }
    let state: State = serde_json::from_str(&dir.read_text(STATE_JSON)?).map_err(|e| {
        Error::invalid(
            "sae.resume",
            format!("{what}: {STATE_JSON} is not readable: {e}"),
        )
    })?;
    if state.format != FORMAT || state.version != VERSION {
        return Err(Error::invalid(
            "sae.resume",
            format!(
                "{what}: {STATE_JSON} is {} version {}; this plugin reads {FORMAT} version {VERSION}",
                state.format, state.version
            ),
        ));
    }
    let mut tensors = dir.read_tensors(STATE_TENSORS)?;
    let step = tensors
        .iter()
        .position(|(n, _)| n == "step")
        .map(|i| tensors.swap_remove(i).1.item())
        .transpose()?;
    if step != Some(state.trainer.step as f32) {
        return Err(Error::invalid(
            "sae.resume",
            format!(
                "{what}: {STATE_TENSORS} holds step {step:?} but {STATE_JSON} says {}: the checkpoint was cut short while being written; resume from an earlier one",
                state.trainer.step
            ),
        ));
    }
    Ok(Some(Resumed { state, tensors }))
}

impl Resumed {
    /// The trainer as the checkpoint left it, for `cfg` (which must describe the same SAE).
    pub fn trainer(self, cfg: TrainConfig) -> Result<Trainer> {
        let what = format!("the checkpoint of run `{}`", self.state.run);
        Trainer::restore(cfg, self.tensors, self.state.trainer, &what)
    }
}

/// The state to record for `trainer` now.
pub fn state_of(trainer: &Trainer, mut settings: State) -> State {
    settings.trainer = trainer.snapshot().1;
    settings.format = FORMAT.into();
    settings.version = VERSION;
    settings
}
