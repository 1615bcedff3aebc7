//! sae: sparse autoencoders at any hook. Trains standard, TopK, BatchTopK or JumpReLU SAEs on
//! activations streamed from the model (through a shuffling buffer) or read from a cached file,
//! evaluates them, and saves them in the SAELens v6 format; or evaluates a saved SAELens SAE.
//! The math runs on the host: this crate holds tensor handles, index lists and scalars.

mod arch;
mod buffer;
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

use loupe_plugin_api::data::DatasetKind;
use loupe_plugin_api::prelude::*;
use serde_json::{Value, json};

use arch::Sae;
use buffer::Buffer;
use contexts::TopContexts;
use evaluate::{EvalOptions, Evaluation, evaluate};
use params::{DecoderBiasInit, Normalisation, Params};
use schedule::{LrSchedule, steps_of};
use source::Source;
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
            })
        }
        DatasetKind::Activations => Ok(Source::Cached {
            data,
            rows_per_read: p.batch_size,
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
        jumprelu_loss: p.jumprelu_loss()?,
        tanh_scale: p.jumprelu_tanh_scale,
        bandwidth: p.jumprelu_bandwidth,
        init_threshold: p.jumprelu_init_threshold,
        threshold_lr: p.topk_threshold_lr,
        aux_k: if p.aux_k == 0 {
            (d_in / 2).max(1)
        } else {
            p.aux_k
        },
        aux_coefficient: p.aux_k_coefficient,
        dead_window: p.dead_feature_window,
        grad_clip: p.grad_clip_norm,
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
    let source = open_source(p, &p.hook)?;
    let from_model = source.is_model();
    let seed = runtime::seed();
    let mut buffer = Buffer::new(source, p.batch_size, p.buffer_batches, seed);
    info(&format!(
        "filling the activation buffer ({} rows) from `{}`",
        p.batch_size * p.buffer_batches,
        p.dataset
    ));
    let contents = buffer.contents()?;
    let d_in = contents.shape()[1];
    let d_sae = p.latents(d_in)?;
    // SAELens's `expected_average_only_in`: train on s·x with mean ‖s·x‖ = √d_in, estimated here on
    // the full shuffled buffer; s is folded into the saved weights.
    let scale = match p.normalisation()? {
        Normalisation::None => 1.0,
        Normalisation::ExpectedAverageOnlyIn => {
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
    let steps = p.steps();
    info(&format!(
        "training a {} SAE {d_in} → {d_sae} for {steps} steps of {} rows (input scale {scale:.4})",
        architecture.name(),
        p.batch_size
    ));
    let first = buffer.next_batch()?.affine(scale as f32, 0.0)?;
    let b_dec = initial_b_dec(p.b_dec_init()?, &first)?;
    let mut trainer = Trainer::new(train_config(p, d_in, d_sae)?, b_dec, seed)?;
    // The first batch, already drawn for b_dec, is also the first step's.
    let mut first = Some(first);
    let mut last = train::StepStats::default();
    for step in 1..=steps {
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
        }
        report::progress("train", step, steps);
    }
    let sae = trainer.to_sae(scale)?;
    if buffer.epochs_restarted > 0 {
        warn(&format!(
            "the training data was read {} times over",
            buffer.epochs_restarted + 1
        ));
    }

    let mut source = buffer.into_source();
    if !from_model {
        // Cached activations: evaluate on the file's first rows (seen in training).
        source.rewind()?;
    }
    let evaluation = run_evaluation(p, &sae, &mut source)?;
    let model_name = if from_model {
        Some(model::info()?.architecture)
    } else {
        None
    };
    let context_size = from_model
        .then(|| Dataset::open(&p.dataset).map(|d| d.width()))
        .transpose()?;
    let loupe = json!({
        "trained_architecture": architecture.name(),
        "training_tokens": trainer.steps_done() * p.batch_size as u64,
        "normalisation": p.normalize_activations,
        "input_scale_folded": scale,
        "b_dec_init": p.b_dec_init()?.name(),
        "batch_threshold": trainer.batch_threshold(),
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
            "explained_variance": 1.0 - last.fvu, "dead_latents": last.dead,
        },
        "training": loupe,
        "sae_dir": "artifacts/sae",
    });
    if let Some(e) = &evaluation {
        summary["evaluation"] = save_evaluation(e)?;
    }
    Ok(summary)
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
        ("train/dead_latents", s.dead as f64),
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

/// Evaluates at most `eval_tokens` rows; a model source that has run out starts over.
fn run_evaluation(p: &Params, sae: &Sae, source: &mut Source) -> Result<Option<Evaluation>> {
    if p.eval_tokens == 0 {
        return Ok(None);
    }
    let options = || EvalOptions {
        rows: p.eval_tokens,
        dense_threshold: p.dense_threshold,
        ridge: p.dark_matter_ridge,
        codes_rows: p.save_codes_rows,
        contexts: TopContexts::new(p.top_contexts_latents, p.top_contexts_k, p.context_tokens),
    };
    info(&format!("evaluating on up to {} rows", p.eval_tokens));
    match evaluate(sae, source, options())? {
        Some(e) => Ok(Some(e)),
        None => {
            warn(&format!(
                "dataset `{}` has no rows left after training; evaluating on its first rows (seen in training)",
                p.dataset
            ));
            source.rewind()?;
            evaluate(sae, source, options())
        }
    }
}

/// Writes `evaluation.json`, `feature_density.json` and `top_contexts.json`; returns the summary part.
fn save_evaluation(e: &Evaluation) -> Result<Value> {
    let mut value = json!({ "reconstruction": e.recon });
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
        "evaluation: L0 {:.2}, explained variance {:.4}, dead {}, dense {}{}",
        e.recon.l0,
        e.recon.explained_variance,
        e.recon.dead_latents,
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
    let evaluation = run_evaluation(p, &sae, &mut source)?;
    let mut summary = json!({
        "loaded": p.load,
        "architecture": config.architecture,
        "hook": hook,
        "d_in": sae.d_in(),
        "d_sae": sae.d_sae(),
    });
    if let Some(e) = &evaluation {
        summary["evaluation"] = save_evaluation(e)?;
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
