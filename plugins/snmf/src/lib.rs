//! snmf: semi-nonnegative matrix factorization of MLP activations (Shafran, Geiger & Geva 2025).
//! For each requested layer the activations `A` `[neurons, tokens]` are factorised as `F·Gᵀ`: the
//! columns of F are sparse, signed groups of neurons (features), G ≥ 0 says how strongly each token
//! expresses each feature. Each feature is then read from both ends — the tokens that express it most,
//! in context, and the vocabulary its direction promotes — and, on request, used to steer the model.
//! The math runs on the host: this crate holds tensor handles, index lists and scalars.

mod collect;
mod finetune;
mod fit;
mod init;
mod interpret;
mod params;
mod sample;
mod steer;

use std::rc::Rc;

use loupe_plugin_api::prelude::*;
use serde_json::{Value, json};

use collect::{Collected, Matrix};
use finetune::{FinetuneConfig, finetune};
use fit::{FitConfig, FitResult, fit};
use interpret::{Readout, top_tokens};
use params::Params;
use steer::{SteerConfig, Steerer};

struct SnmfPlugin;

impl Plugin for SnmfPlugin {
    type Params = Params;

    fn manifest() -> Manifest {
        params::manifest()
    }

    fn run(p: Params) -> Result<Value> {
        p.validate()?;
        let collected = collect::collect(&p)?;
        if let Some(columns) = &collected.columns {
            let n = columns.len();
            report::save_tensors(
                "columns.safetensors",
                &[
                    ("token_ids", &Tensor::from_i32(&columns.token_ids, &[n])?),
                    ("sample_ids", &Tensor::from_i32(&columns.sample_ids, &[n])?),
                    ("positions", &Tensor::from_i32(&columns.positions, &[n])?),
                ],
            )?;
        }
        let mut fits = Vec::new();
        let mut interrupted = false;
        for matrix in &collected.matrices {
            let (summaries, stopped) = factorise(&p, matrix, &collected)?;
            fits.extend(summaries);
            if stopped {
                interrupted = true;
                break;
            }
        }
        let mut summary = json!({
            "tokens": collected.matrices[0].x.shape()[0],
            "neurons": collected.matrices[0].x.shape()[1],
            "fits": fits,
        });
        if interrupted {
            // What the host reads to record the run as cancelled with these results.
            summary["partial"] = json!(true);
            summary["note"] = json!(
                "asked to stop: the last fit listed is its best iterate so far; later fits, fine-tuning and steering did not run"
            );
        }
        Ok(summary)
    }
}

export_plugin!(SnmfPlugin);

fn steer_config(p: &Params) -> SteerConfig {
    SteerConfig {
        prompt: p.steer_prompt.clone(),
        kl_targets: p.kl_targets.clone(),
        alpha_low: p.alpha_range.first().copied().unwrap_or(1.0),
        alpha_high: p.alpha_range.get(1).copied().unwrap_or(2000.0),
        bisection_steps: p.bisection_steps,
        kl_tolerance: p.kl_tolerance,
        continuations: p.continuations,
        new_tokens: p.new_tokens,
        top_k: p.sample_top_k,
        top_p: p.sample_top_p,
        temperature: p.temperature,
        shift_top: p.vocab_top.max(1),
        seed: runtime::seed(),
    }
}

/// Every level of one matrix's factorization (one level unless `ranks` asks for a hierarchy), with
/// its artifacts; gives each level's summary, and whether the user asked the run to stop (then the
/// last level is the best iterate its fit had reached, saved and described, and nothing follows).
fn factorise(p: &Params, matrix: &Matrix, collected: &Collected) -> Result<(Vec<Value>, bool)> {
    let ranks = p.ranks();
    let hierarchical = ranks.len() > 1;
    let (n, d) = (matrix.x.shape()[0], matrix.x.shape()[1]);
    let name = if matrix.hook.is_empty() {
        "the cached activations".to_string()
    } else {
        format!("`{}`", matrix.hook)
    };
    info(&format!(
        "{name}: factorising {d} neurons × {n} tokens at ranks {ranks:?}"
    ));
    let readout = match matrix.layer {
        Some(layer) if p.vocab_top > 0 => Readout::gpt2(layer, &p.site)?,
        _ => None,
    };
    let steer_cfg = steer_config(p);
    let steerer = if p.steer_features.is_empty() {
        None
    } else if matrix.hook.is_empty() {
        warn(
            "no steering: with cached activations there is no hook to steer at; use a text dataset",
        );
        None
    } else {
        Some(Steerer::new(&matrix.hook, &steer_cfg)?)
    };

    let mut summaries = Vec::new();
    // Level l factorises level l−1's features (`H`, [rank, d]); tokens reach level l through G₁·…·G_l.
    let mut input: Option<Rc<Tensor>> = None;
    let mut g_tokens: Option<Rc<Tensor>> = None;
    let mut level_gs: Vec<Rc<Tensor>> = Vec::new();
    // ‖X‖², which the first level's fit measures, for the fine-tune's relative errors.
    let mut data_norm_sq = f64::NAN;
    for (level, &rank) in ranks.iter().enumerate() {
        let label = if hierarchical {
            format!("{}r{rank}/", matrix.prefix)
        } else {
            matrix.prefix.clone()
        };
        let cfg = FitConfig {
            rank,
            pct_keep: p.pct_keep,
            max_iter: p.max_iter,
            patience: p.patience,
            tol: p.tol,
            reg: p.reg,
            init: p.init()?,
            seed: runtime::seed().wrapping_add(level as u64),
            log_every: p.log_every,
            dump_steps: p.dump_steps,
            label: label.clone(),
        };
        let x = input.as_deref().unwrap_or(&matrix.x);
        let result = fit(x, &cfg)?;
        let (h, g) = (&result.factors.h, &result.factors.g);
        let tokens_g = match &g_tokens {
            None => Rc::clone(g),
            Some(previous) => Rc::new(previous.matmul(g)?),
        };
        let f = h.transpose(0, 1)?;
        let mut saved: Vec<(&str, &Tensor)> = vec![("F", &f), ("G", g)];
        if level > 0 {
            saved.push(("G_tokens", &*tokens_g));
        }
        report::save_tensors(&format!("{label}snmf.safetensors"), &saved)?;
        describe(p, &label, h, &tokens_g, collected, readout.as_ref())?;
        if result.interrupted {
            warn(&format!(
                "{label}asked to stop: saved the best iterate so far (iteration {} of at most {}, relative error {:.4}) to {label}snmf.safetensors",
                result.best_iteration,
                p.max_iter,
                result.best_loss / result.norm_sq
            ));
            summaries.push(summary(matrix, level, &cfg, &result));
            return Ok((summaries, true));
        }
        if let Some(steerer) = &steerer {
            steer_features(p, &label, h, steerer)?;
        }
        summaries.push(summary(matrix, level, &cfg, &result));
        info(&format!(
            "{}rank {rank}: relative error {:.4} after {} iterations (best at {})",
            label,
            result.best_loss / result.norm_sq,
            result.iterations,
            result.best_iteration
        ));
        if level == 0 {
            data_norm_sq = result.norm_sq;
        }
        level_gs.push(Rc::clone(g));
        input = Some(Rc::clone(h));
        g_tokens = Some(tokens_g);
    }
    if hierarchical && p.finetune_steps > 0 {
        let last_h = input.expect("a hierarchy has levels");
        summaries.push(finetune_hierarchy(
            p,
            matrix,
            collected,
            readout.as_ref(),
            level_gs,
            last_h,
            data_norm_sq,
        )?);
    }
    Ok((summaries, false))
}

/// The joint fine-tune of a hierarchy's levels, saved and described like a level under `finetuned/`.
fn finetune_hierarchy(
    p: &Params,
    matrix: &Matrix,
    collected: &Collected,
    readout: Option<&Readout>,
    level_gs: Vec<Rc<Tensor>>,
    last_h: Rc<Tensor>,
    norm_sq: f64,
) -> Result<Value> {
    let label = format!("{}finetuned/", matrix.prefix);
    let cfg = FinetuneConfig {
        steps: p.finetune_steps,
        lr: p.finetune_lr,
        log_every: p.log_every,
        label: matrix.prefix.clone(),
    };
    let tuned = finetune(&matrix.x, level_gs, last_h, &cfg)?;
    let g_tokens: &Tensor = &tuned.tokens;
    let f = tuned.h.transpose(0, 1)?;
    let names: Vec<String> = (1..=tuned.ws.len()).map(|l| format!("G{l}")).collect();
    let mut saved: Vec<(&str, &Tensor)> = vec![("F", &f), ("G_tokens", g_tokens)];
    saved.extend(
        names
            .iter()
            .map(String::as_str)
            .zip(tuned.ws.iter().map(|w| &**w)),
    );
    report::save_tensors(&format!("{label}snmf.safetensors"), &saved)?;
    describe(p, &label, &tuned.h, g_tokens, collected, readout)?;
    let (n, d) = (matrix.x.shape()[0], matrix.x.shape()[1]);
    let relative = |mse: f64| mse * (n * d) as f64 / norm_sq;
    info(&format!(
        "{}fine-tune: {} Adam steps took the relative error from {:.4} to {:.4}",
        matrix.prefix,
        p.finetune_steps,
        relative(tuned.mse_before),
        relative(tuned.mse_after)
    ));
    Ok(json!({
        "artifacts": format!("{label}snmf.safetensors"),
        "layer": matrix.layer,
        "hook": matrix.hook,
        "finetune_steps": p.finetune_steps,
        "finetune_lr": p.finetune_lr,
        "mse_before": tuned.mse_before,
        "mse_after": tuned.mse_after,
        "relative_error_before": relative(tuned.mse_before),
        "relative_error_after": relative(tuned.mse_after),
    }))
}

/// `features.json`: per feature its top tokens in context (model runs) and vocabulary projection.
fn describe(
    p: &Params,
    label: &str,
    h: &Tensor,
    g_tokens: &Tensor,
    collected: &Collected,
    readout: Option<&Readout>,
) -> Result<()> {
    let k = h.shape()[0];
    let mut features: Vec<Value> = (0..k).map(|i| json!({ "feature": i })).collect();
    let nonzero = h
        .abs()?
        .gt(&Tensor::scalar(0.0)?)?
        .sum(1, false)?
        .to_vec_f32()?;
    for (entry, count) in features.iter_mut().zip(nonzero) {
        entry["neurons"] = json!(count as usize);
    }
    if let (Some(columns), true) = (&collected.columns, p.top_tokens > 0) {
        for (entry, top) in features.iter_mut().zip(top_tokens(
            g_tokens,
            columns,
            p.top_tokens,
            p.context_window,
        )?) {
            entry["top_tokens"] = top["top"].clone();
        }
    }
    if let Some(readout) = readout {
        for (entry, vocab) in features
            .iter_mut()
            .zip(readout.vocab_projection(h, p.vocab_top)?)
        {
            entry["vocab_positive"] = vocab["positive"].clone();
            entry["vocab_negative"] = vocab["negative"].clone();
        }
    }
    report::save_json(&format!("{label}features.json"), &features)
}

/// `steering.json`: the requested features' calibrated steering runs.
fn steer_features(p: &Params, label: &str, h: &Tensor, steerer: &Steerer) -> Result<()> {
    let k = h.shape()[0];
    let mut out = Vec::new();
    let features: Vec<usize> = p.steer_features.iter().map(|&f| f as usize).collect();
    for (done, &feature) in features.iter().enumerate() {
        if feature >= k {
            warn(&format!(
                "steer_features: feature {feature} does not exist at rank {k}; skipped"
            ));
            continue;
        }
        let row = h.slice(0, feature, feature + 1)?.reshape(&[h.shape()[1]])?;
        out.push(steerer.steer(feature, &row)?);
        report::progress(
            &format!("{label}steer"),
            done as u64 + 1,
            features.len() as u64,
        );
    }
    report::save_json(&format!("{label}steering.json"), &out)
}

fn summary(matrix: &Matrix, level: usize, cfg: &FitConfig, r: &FitResult) -> Value {
    json!({
        "artifacts": format!("{}snmf.safetensors", cfg.label),
        "layer": matrix.layer,
        "hook": matrix.hook,
        "level": level + 1,
        "rank": cfg.rank,
        "init": cfg.init.name(),
        "iterations": r.iterations,
        "stopped_early": r.stopped_early,
        "interrupted": r.interrupted,
        "best_iteration": r.best_iteration,
        "best_loss": r.best_loss,
        "last_loss": r.last_loss,
        "relative_error": r.best_loss / r.norm_sq,
        "neurons_per_feature": r.kept_per_feature,
    })
}
