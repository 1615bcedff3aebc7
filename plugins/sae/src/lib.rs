//! sae: sparse autoencoders at any hook. Trains standard, TopK, BatchTopK or JumpReLU SAEs on
//! activations streamed from the model (through a shuffling buffer) or read from a cached file,
//! evaluates them, and saves them in the SAELens v6 format; or evaluates a saved SAELens SAE.
//! The math runs on the host: this crate holds tensor handles, index lists and scalars.

mod arch;
mod buffer;
mod calibrate;
mod checkpoint;
mod contexts;
mod dark_matter;
mod evaluate;
mod geometric_median;
mod metrics;
mod params;
mod saelens;
mod schedule;
mod source;
mod train;
mod view;

use loupe_plugin_api::data::DatasetKind;
use loupe_plugin_api::prelude::*;
use serde_json::{Value, json};

use arch::Sae;
use buffer::Buffer;
use contexts::TopContexts;
use evaluate::{EvalOptions, Evaluation, evaluate};
use params::{DecoderBiasInit, Normalisation, Params};
use schedule::{LrSchedule, steps_of};
use source::{Source, Window};
use train::{TrainConfig, Trainer};

struct SaePlugin;

impl Plugin for SaePlugin {
    type Params = Params;

    fn manifest() -> Manifest {
        params::manifest()
    }

    fn run(p: Params) -> Result<Value> {
        p.validate()?;
        if p.load.is_empty() {
            train_run(&p)
        } else {
            evaluate_run(&p)
        }
    }
}

export_plugin!(SaePlugin);

/// The run's activations: the model at `hook` over a text dataset, or a cached activation file.
fn open_source(p: &Params, hook: &str) -> Result<Source> {
    let data = Dataset::open(&p.dataset)?;
    match data.info().kind {
        DatasetKind::Text => {
            let info = model::info()?;
            if hook.is_empty() {
                return Err(Error::invalid(
                    "sae",
                    format!(
                        "set `hook` to the activation to train on, e.g. \"blocks.0.attn.hook_z\" or \"blocks.{}.hook_resid_post\"",
                        info.n_layers / 2
                    ),
                ));
            }
            if !info.hook_names.iter().any(|h| h == hook) {
                let close = closest(hook, &info.hook_names);
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "sae",
                    if close.is_empty() {
                        format!(
                            "the model has no hook `{hook}`; `loupe models inspect <model>` lists them"
                        )
                    } else {
                        format!(
                            "the model has no hook `{hook}`; did you mean {}?",
                            close.join(", ")
                        )
                    },
                ));
            }
            let exclude = if p.exclude_bos {
                info.bos_token.map(|b| b as i32)
            } else {
                None
            };
            Ok(Source::Model {
                hook: hook.to_string(),
                data,
                sequences_per_pass: p.model_batch_size,
                exclude,
                window: Window::all(),
            })
        }
        DatasetKind::Activations => Ok(Source::Cached {
            data,
            rows_per_read: p.batch_size,
            window: Window::all(),
        }),
        DatasetKind::Directory => Err(Error::invalid(
            "sae",
            format!(
                "dataset `{}` is a directory; `dataset` must be text or cached activations (a directory goes in `load`)",
                p.dataset
            ),
        )),
    }
}

/// Up to three names within a few edits of `name`, closest first, quoted.
fn closest(name: &str, names: &[String]) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, _)| *d <= 3.max(name.len() / 4))
        .collect();
    scored.sort();
    scored
        .iter()
        .take(3)
        .map(|(_, n)| format!("`{n}`"))
        .collect()
}

/// Levenshtein distance over bytes (hook names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn train_config(p: &Params, d_in: usize, d_sae: usize) -> Result<TrainConfig> {
    let steps = p.steps();
    Ok(TrainConfig {
        architecture: p.architecture()?,
        d_in,
        d_sae,
        k: p.k,
        rescale: p.rescale_acts_by_decoder_norm,
        l1_coefficient: p.l1_coefficient,
        l0_coefficient: p.l0_coefficient,
        sparsity_warm_up: steps_of(p.l1_warm_up_fraction, steps),
        target_l0: (p.target_l0 > 0.0).then_some(p.target_l0),
        jumprelu_loss: p.jumprelu_loss()?,
        tanh_scale: p.jumprelu_tanh_scale,
        bandwidth: p.jumprelu_bandwidth,
        init_threshold: p.jumprelu_init_threshold,
        threshold_lr_scale: p.jumprelu_threshold_lr_scale,
        threshold_lr: p.topk_threshold_lr,
        aux_k: if p.aux_k == 0 {
            (d_in / 2).max(1)
        } else {
            p.aux_k
        },
        aux_coefficient: p.aux_k_coefficient,
        dead_window: p.dead_window(),
        grad_clip: p.grad_clip_norm,
        save_first_gradients: p.save_first_gradients,
        beta1: p.adam_beta1,
        beta2: p.adam_beta2,
        lr: LrSchedule {
            lr: p.lr,
            warm_up: steps_of(p.lr_warm_up_fraction, steps),
            decay: steps_of(p.lr_decay_fraction, steps),
            total: steps,
        },
        decoder_init_norm: p.decoder_init_norm,
    })
}

fn initial_b_dec(init: DecoderBiasInit, x: &Tensor) -> Result<Tensor> {
    let d = x.shape()[1];
    match init {
        DecoderBiasInit::Zeros => Tensor::zeros(&[d]),
        DecoderBiasInit::Mean => x.mean(0, false),
        DecoderBiasInit::GeometricMedian => geometric_median::of_rows(x, 100),
    }
}

fn train_run(p: &Params) -> Result<Value> {
    let architecture = p.architecture()?;
    let mut source = open_source(p, &p.hook)?;
    let from_model = source.is_model();
    let held_out = HeldOut::plan(p, &source)?;
    let resumed = checkpoint::load()?;
    // Training reads only after the held-out slice, and starts over there; a resumed run first
    // goes on from where the run it continues stood.
    let training_rows = match &resumed {
        Some(r) => Window::resuming(held_out.dataset_rows, u64::MAX, r.state.source_position),
        None => Window::rows(held_out.dataset_rows, u64::MAX),
    };
    source.set_window(training_rows)?;
    let seed = runtime::seed();
    // A resumed run shuffles differently from the run it continues, which saw other rows first.
    let shuffle_seed = resumed.as_ref().map_or(seed, |r| {
        seed ^ r.state.trainer.step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    let mut buffer = Buffer::new(source, p.batch_size, p.buffer_batches, shuffle_seed);
    if let Some(r) = &resumed {
        buffer.epochs_restarted = r.state.epochs_restarted;
    }
    info(&format!(
        "filling the activation buffer ({} rows) from `{}`",
        p.batch_size * p.buffer_batches,
        p.dataset
    ));
    let contents = buffer.contents()?;
    let d_in = contents.shape()[1];
    let d_sae = p.latents(d_in)?;
    let steps = p.steps();
    let settings = checkpoint::State {
        format: String::new(),
        version: 0,
        run: runtime::info().id,
        architecture: architecture.name().to_string(),
        d_in,
        d_sae,
        k: p.k,
        hook: p.hook.clone(),
        dataset: p.dataset.clone(),
        batch_size: p.batch_size,
        input_scale: 1.0,
        steps_planned: steps,
        held_out_rows: held_out.dataset_rows,
        source_position: 0,
        epochs_restarted: 0,
        trainer: train::TrainerScalars {
            step: 0,
            coefficient: 0.0,
            batch_threshold: None,
        },
    };
    if let Some(r) = &resumed {
        r.state.check_matches(&settings)?;
    }
    // SAELens's `expected_average_only_in`: train on s·x with mean ‖s·x‖ = √d_in, estimated here on
    // the full shuffled buffer; s is folded into the saved weights. A resumed run keeps its scale.
    let scale = match (&resumed, p.normalisation()?) {
        (Some(r), _) => r.state.input_scale,
        (None, Normalisation::None) => 1.0,
        (None, Normalisation::ExpectedAverageOnlyIn) => {
            let mean_norm = contents.l2_norm(1, false)?.mean_all()? as f64;
            if mean_norm.is_nan() || mean_norm <= 0.0 {
                return Err(Error::invalid(
                    "sae",
                    "the activations are all zero; nothing to normalise (set normalize_activations = \"none\" or pick another hook)",
                ));
            }
            (d_in as f64).sqrt() / mean_norm
        }
    };
    let settings = checkpoint::State {
        input_scale: scale,
        ..settings
    };
    let first = buffer.next_batch()?.affine(scale as f32, 0.0)?;
    let (mut trainer, resumed_from) = match resumed {
        Some(r) => {
            let from = (r.state.run.clone(), r.state.trainer.step);
            (r.trainer(train_config(p, d_in, d_sae)?)?, Some(from))
        }
        None => {
            let b_dec = initial_b_dec(p.b_dec_init()?, &first)?;
            (
                Trainer::new(train_config(p, d_in, d_sae)?, b_dec, seed)?,
                None,
            )
        }
    };
    match &resumed_from {
        Some((run, step)) => info(&format!(
            "resuming the {} SAE {d_in} → {d_sae} of run `{run}` at step {step} of {steps} (input scale {scale:.4})",
            architecture.name()
        )),
        None => info(&format!(
            "training a {} SAE {d_in} → {d_sae} for {steps} steps of {} rows (input scale {scale:.4})",
            architecture.name(),
            p.batch_size
        )),
    }
    // Writes the checkpoint; gives the SAE so far and its record, for a stop to save as the result.
    let saved = |trainer: &Trainer, buffer: &Buffer| -> Result<(Sae, saelens::SaveInfo<'_>)> {
        let state = checkpoint::State {
            source_position: buffer.source().position(),
            epochs_restarted: buffer.epochs_restarted,
            ..checkpoint::state_of(trainer, settings.clone())
        };
        let sae = trainer.to_sae(scale)?;
        let info = partial_save_info(p, from_model, trainer.steps_done(), steps)?;
        checkpoint::save(trainer, &state, &sae, &info)?;
        Ok((sae, info))
    };
    // The first batch, already drawn for b_dec, is also the first step's.
    let mut first = Some(first);
    let mut last = train::StepStats::default();
    let mut curves: Vec<view::CurvePoint> = Vec::new();
    for step in trainer.steps_done() + 1..=steps {
        let x = match first.take() {
            Some(x) => x,
            None => buffer.next_batch()?.affine(scale as f32, 0.0)?,
        };
        let logged = step % p.log_every == 0 || step == steps || step == 1;
        last = trainer.step(&x, logged)?;
        if !last.loss.is_finite() {
            return Err(Error::other(
                "sae",
                format!(
                    "training diverged at step {step} (loss {}); lower lr or the sparsity coefficient",
                    last.loss
                ),
            ));
        }
        if logged {
            report_step(step, &last, &mut trainer, p.dense_threshold)?;
            curves.push(view::CurvePoint {
                step,
                loss: last.loss,
                l0: last.l0,
                explained_variance: 1.0 - last.fvu,
            });
        }
        report::progress("train", step, steps);
        if runtime::stop_requested() {
            return stopped_early(p, &trainer, &buffer, &last, &saved);
        }
        if p.checkpoint_every > 0 && step % p.checkpoint_every == 0 && step < steps {
            saved(&trainer, &buffer)?;
            info(&format!(
                "checkpoint at step {step} in artifacts/{}/",
                checkpoint::DIR
            ));
        }
    }
    let mut sae = trainer.to_sae(scale)?;
    if buffer.epochs_restarted > 0 {
        warn(&format!(
            "the training data was read {} times over",
            buffer.epochs_restarted + 1
        ));
    }

    let mut source = buffer.into_source();
    let eval_window = Window::rows(0, held_out.dataset_rows);
    let calibration = if architecture == arch::Architecture::BatchTopK {
        if held_out.dataset_rows == 0 {
            warn(
                "batchtopk: eval_tokens = 0 leaves no held-out rows to calibrate the inference threshold on; saving the threshold tracked in training, whose L0 may be far from k",
            );
            None
        } else {
            source.set_window(eval_window)?;
            let c = calibrate::batch_topk_threshold(
                &mut sae,
                &mut source,
                p.k,
                p.eval_tokens,
                trainer.batch_threshold(),
            )?;
            if let Some(c) = &c {
                info(&format!(
                    "batchtopk: inference threshold {:.5} (L0 {} on {} held-out rows; training's moving average was {})",
                    c.threshold,
                    p.k,
                    c.rows,
                    c.training_threshold
                        .map_or("unset".into(), |t| format!("{t:.5}"))
                ));
            }
            c
        }
    } else {
        None
    };
    source.set_window(eval_window)?;
    let evaluation = if held_out.dataset_rows > 0 {
        run_evaluation(p, &sae, &mut source, Some(&held_out))?
    } else {
        None
    };
    let model_name = if !p.model_name.is_empty() {
        Some(p.model_name.clone())
    } else {
        if from_model {
            warn(
                "cfg.json's metadata.model_name is null: set the `model_name` parameter to the model's name (e.g. \"gpt2-small\") so SAELens users know what it was trained on",
            );
        }
        None
    };
    let context_size = context_size(p, from_model)?;
    let loupe = json!({
        "trained_architecture": architecture.name(),
        "training_tokens": trainer.steps_done() * p.batch_size as u64,
        "normalisation": p.normalize_activations,
        "input_scale_folded": scale,
        "b_dec_init": p.b_dec_init()?.name(),
        "batch_threshold_training_average": trainer.batch_threshold(),
        "batch_threshold_calibration": calibration,
        "sparsity_coefficient_final": trainer.final_coefficient(),
        "target_l0": (p.target_l0 > 0.0).then_some(p.target_l0),
        "dead_feature_window_steps": p.dead_window(),
        "held_out": held_out.to_json(),
        "exclude_bos": p.exclude_bos,
        "seed": seed,
    });
    let save_info = saelens::SaveInfo {
        hook: &p.hook,
        model_name,
        context_size,
        prepend_bos: true,
        exclude_bos: p.exclude_bos,
        loupe: loupe.clone(),
    };
    saelens::save(
        "sae",
        &sae,
        &save_info,
        evaluation.as_ref().map(|e| &e.frequencies),
    )?;
    info("saved the SAE in SAELens format to artifacts/sae/");
    let mut summary = json!({
        "architecture": architecture.name(),
        "saved_as": sae.activation.architecture_name(),
        "hook": p.hook,
        "d_in": d_in,
        "d_sae": d_sae,
        "steps": trainer.steps_done(),
        "final_train_step": {
            "loss": last.loss, "mse": last.mse, "l0": last.l0,
            "explained_variance": 1.0 - last.fvu,
            // Not firing in the last `dead_feature_window` steps; the evaluation's
            // `dead_on_eval_rows` counts latents that never fire on the held-out rows.
            "dead_in_training_window": last.dead,
            "dead_feature_window_steps": p.dead_window(),
        },
        "training": loupe,
        "sae_dir": "artifacts/sae",
    });
    if let Some((run, step)) = &resumed_from {
        summary["resumed"] = json!({ "from_run": run, "at_step": step });
    }
    if let Some(e) = &evaluation {
        summary["evaluation"] = save_evaluation(e)?;
        summary["feature_view"] = view::write(&view::ViewInput {
            params: p,
            sae: &sae,
            evaluation: e,
            hook: &p.hook,
            architecture: architecture.name(),
            curves: &curves,
        })?;
    }
    Ok(summary)
}

/// The sequence length of a run on the model's activations (`cfg.json`'s `context_size`).
fn context_size(p: &Params, from_model: bool) -> Result<Option<usize>> {
    from_model
        .then(|| Dataset::open(&p.dataset).map(|d| d.width()))
        .transpose()
}

/// `cfg.json`'s record for an SAE saved before its training ended.
fn partial_save_info(
    p: &Params,
    from_model: bool,
    steps_done: u64,
    steps: u64,
) -> Result<saelens::SaveInfo<'_>> {
    Ok(saelens::SaveInfo {
        hook: &p.hook,
        model_name: (!p.model_name.is_empty()).then(|| p.model_name.clone()),
        context_size: context_size(p, from_model)?,
        prepend_bos: true,
        exclude_bos: p.exclude_bos,
        loupe: json!({
            "partial": true,
            "trained_architecture": p.architecture()?.name(),
            "steps_done": steps_done,
            "steps_planned": steps,
            "training_tokens": steps_done * p.batch_size as u64,
            "note": "saved before training ended: not evaluated; a batchtopk threshold is training's moving average, not calibrated",
        }),
    })
}

/// Writes the checkpoint of a training, giving the SAE so far and its `cfg.json` record.
type SaveCheckpoint<'p> = dyn Fn(&Trainer, &Buffer) -> Result<(Sae, saelens::SaveInfo<'p>)> + 'p;

/// Asked to stop: the checkpoint and the SAE so far (SAELens, marked partial) are saved, and the
/// summary says how far training got and how to continue it.
fn stopped_early<'p>(
    p: &'p Params,
    trainer: &Trainer,
    buffer: &Buffer,
    last: &train::StepStats,
    saved: &SaveCheckpoint<'p>,
) -> Result<Value> {
    let (done, planned) = (trainer.steps_done(), p.steps());
    warn(&format!(
        "asked to stop at step {done} of {planned}: saving the SAE so far and a checkpoint"
    ));
    let (sae, record) = saved(trainer, buffer)?;
    saelens::save("sae", &sae, &record, None)?;
    let run = runtime::info().id;
    info(&format!(
        "saved the partial SAE to artifacts/sae/ and a checkpoint to artifacts/{}/; continue with resume = \"{run}\"",
        checkpoint::DIR
    ));
    Ok(json!({
        "partial": true,
        "stopped_at_step": done,
        "steps_planned": planned,
        "architecture": p.architecture()?.name(),
        "hook": p.hook,
        "d_in": sae.d_in(),
        "d_sae": sae.d_sae(),
        "final_train_step": {
            "loss": last.loss, "mse": last.mse, "l0": last.l0,
            "explained_variance": 1.0 - last.fvu,
        },
        "sae_dir": "artifacts/sae",
        "checkpoint_dir": format!("artifacts/{}", checkpoint::DIR),
        "resume_with": format!("resume = \"{run}\""),
    }))
}

/// The slice of the dataset held out from training for the evaluation: its first rows.
struct HeldOut {
    /// Dataset rows (sequences for text, activation rows for cached activations).
    dataset_rows: u64,
    unit: &'static str,
    dataset: String,
}

impl HeldOut {
    /// The first dataset rows that hold `eval_tokens` activation rows; refuses when the rest leaves
    /// nothing to train on.
    fn plan(p: &Params, source: &Source) -> Result<HeldOut> {
        let data = source.dataset();
        let total = data.rows() as u64;
        let (per_row, unit) = if source.is_model() {
            // A sequence gives seq_len rows, one fewer where its BOS is left out.
            let seq_len = data.width() as u64;
            (
                (seq_len - u64::from(p.exclude_bos && seq_len > 1)).max(1),
                "sequences",
            )
        } else {
            (1, "rows")
        };
        let dataset_rows = p.eval_tokens.div_ceil(per_row);
        if p.eval_tokens > 0 && dataset_rows >= total {
            return Err(Error::invalid(
                "sae",
                format!(
                    "dataset `{}` has {total} {unit}; eval_tokens = {} holds out {dataset_rows} of them for evaluation and leaves none to train on: lower eval_tokens (or 0 for no evaluation) or use a larger dataset",
                    p.dataset, p.eval_tokens
                ),
            ));
        }
        if dataset_rows * 2 > total {
            warn(&format!(
                "eval_tokens = {} holds out {dataset_rows} of the {total} {unit} of `{}`: training sees only the other {}",
                p.eval_tokens,
                p.dataset,
                total - dataset_rows
            ));
        }
        Ok(HeldOut {
            dataset_rows,
            unit,
            dataset: p.dataset.clone(),
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "dataset": self.dataset,
            "first": 0,
            "count": self.dataset_rows,
            "unit": self.unit,
        })
    }
}

/// Streams a logged step's figures as metrics (for progress displays and the dashboard).
fn report_step(step: u64, s: &train::StepStats, trainer: &mut Trainer, dense: f64) -> Result<()> {
    let mut series = vec![
        ("train/loss", s.loss),
        ("train/mse", s.mse),
        ("train/sparsity_loss", s.sparsity_loss),
        ("train/aux_loss", s.aux_loss),
        ("train/l0", s.l0),
        ("train/explained_variance", 1.0 - s.fvu),
        ("train/dead_in_training_window", s.dead as f64),
        ("train/lr", s.lr),
    ];
    if let Some(shape) = s.detail {
        series.push(("train/cosine", shape.cosine));
        series.push(("train/l2_ratio", shape.l2_ratio));
        series.push((
            "train/relative_reconstruction_bias",
            shape.relative_reconstruction_bias,
        ));
    }
    // Dense latents over the steps since the last report.
    if let Some(freq) = trainer.take_window_frequencies()? {
        let dense_latents = freq.iter().filter(|&&f| f as f64 > dense).count();
        series.push(("train/dense_latents", dense_latents as f64));
    }
    for (name, value) in series {
        report::metric(name, step, value);
    }
    Ok(())
}

/// Evaluates at most `eval_tokens` rows from where `source` stands (the held-out slice after
/// training, the dataset's start when evaluating a loaded SAE), streamed in batches.
fn run_evaluation(
    p: &Params,
    sae: &Sae,
    source: &mut Source,
    held_out: Option<&HeldOut>,
) -> Result<Option<Evaluation>> {
    if p.eval_tokens == 0 {
        return Ok(None);
    }
    let options = EvalOptions {
        rows: p.eval_tokens,
        dense_threshold: p.dense_threshold,
        ridge: p.dark_matter_ridge,
        codes_rows: p.save_codes_rows,
        contexts: TopContexts::new(p.top_contexts_latents, p.top_contexts_k, p.context_tokens),
        held_out: held_out.map(HeldOut::to_json),
    };
    info(&format!(
        "evaluating on up to {} rows{}",
        p.eval_tokens,
        if held_out.is_some() {
            " held out from training"
        } else {
            ""
        }
    ));
    let e = evaluate(sae, source, options)?;
    match &e {
        None => {
            return Err(Error::invalid(
                "sae",
                format!("dataset `{}` gave no rows to evaluate on", p.dataset),
            ));
        }
        Some(e) => {
            if e.recon.tokens < p.eval_tokens {
                warn(&format!(
                    "evaluated {} rows, fewer than eval_tokens = {}",
                    e.recon.tokens, p.eval_tokens
                ));
            }
            for s in &e.skipped {
                let line = format!("evaluation: {} skipped: {}", s.metric, s.reason);
                if s.warn { warn(&line) } else { info(&line) }
            }
        }
    }
    Ok(e)
}

/// Writes `evaluation.json`, `feature_density.json` and `top_contexts.json`; returns the summary part.
fn save_evaluation(e: &Evaluation) -> Result<Value> {
    let mut value = json!({
        "rows_evaluated": e.recon.tokens,
        // One activation row per token position.
        "tokens_evaluated": e.recon.tokens,
        "held_out": e.held_out.is_some(),
        "slice": e.held_out,
        "skipped": e.skipped,
        "reconstruction": e.recon,
    });
    if let Some(s) = &e.splice {
        value["splice"] = json!(s);
        report::metric("eval/ce_loss_recovered", 0, s.ce_loss_recovered);
        report::metric("eval/kl_score", 0, s.kl_score);
    }
    if let Some(d) = &e.dark_matter {
        value["dark_matter"] = json!(d);
    }
    report::metric("eval/l0", 0, e.recon.l0);
    report::metric("eval/explained_variance", 0, e.recon.explained_variance);
    report::save_json("evaluation.json", &value)?;
    report::save_json("feature_density.json", &e.histogram)?;
    if let Some(c) = &e.contexts {
        report::save_json("top_contexts.json", c)?;
    }
    info(&format!(
        "evaluation on {} rows: L0 {:.2}, explained variance {:.4}, dead on these rows {}, dense {}{}",
        e.recon.tokens,
        e.recon.l0,
        e.recon.explained_variance,
        e.recon.dead_on_eval_rows,
        e.recon.dense_latents,
        e.splice
            .as_ref()
            .map(|s| format!(
                ", CE loss recovered {:.4}, KL score {:.4}",
                s.ce_loss_recovered, s.kl_score
            ))
            .unwrap_or_default()
    ));
    Ok(value)
}

fn evaluate_run(p: &Params) -> Result<Value> {
    let (sae, config) = saelens::load(&p.load)?;
    let hook = if p.hook.is_empty() {
        config.hook.clone().unwrap_or_default()
    } else {
        p.hook.clone()
    };
    let mut source = open_source(p, &hook)?;
    if let Source::Cached { data, .. } = &source
        && data.width() != sae.d_in()
    {
        return Err(Error::invalid(
            "sae",
            format!(
                "dataset `{}` has rows of width {}, but the SAE in `{}` takes d_in = {}",
                p.dataset,
                data.width(),
                p.load,
                sae.d_in()
            ),
        ));
    }
    info(&format!(
        "evaluating the {} SAE in `{}` ({} → {}){}",
        config.architecture,
        p.load,
        sae.d_in(),
        sae.d_sae(),
        if source.is_model() {
            format!(" at {hook}")
        } else {
            String::new()
        }
    ));
    let evaluation = run_evaluation(p, &sae, &mut source, None)?;
    let mut summary = json!({
        "loaded": p.load,
        "architecture": config.architecture,
        "hook": hook,
        "d_in": sae.d_in(),
        "d_sae": sae.d_sae(),
    });
    if let Some(e) = &evaluation {
        summary["evaluation"] = save_evaluation(e)?;
        summary["feature_view"] = view::write(&view::ViewInput {
            params: p,
            sae: &sae,
            evaluation: e,
            hook: &hook,
            architecture: &config.architecture,
            curves: &[],
        })?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_hook_names() {
        let names: Vec<String> = [
            "blocks.0.attn.hook_z",
            "blocks.0.attn.hook_q",
            "blocks.1.attn.hook_z",
            "hook_embed",
        ]
        .map(String::from)
        .to_vec();
        let close = closest("blocks.0.attn.hook_zz", &names);
        assert_eq!(close[0], "`blocks.0.attn.hook_z`");
        assert!(closest("nothing.like.it.at.all", &names).is_empty());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
