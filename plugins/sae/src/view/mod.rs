//! The feature view: for a few latents — the most active on the evaluation rows, a random sample, and
//! any the user lists — their top-activating contexts, their density, and their vocabulary projection,
//! written as `feature_view.json` and as a self-contained page, `feature_view.html`, that also draws
//! the training curves.

mod chart;
mod choose;
mod html;
mod vocab;

use loupe_plugin_api::contexts::TopContext;
use loupe_plugin_api::prelude::*;
use loupe_plugin_api::rng::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::arch::Sae;
use crate::evaluate::Evaluation;
use crate::params::Params;
use choose::{Reason, choose};
use vocab::{VocabToken, Vocabulary};

pub const JSON: &str = "feature_view.json";
pub const HTML: &str = "feature_view.html";

/// One logged training step, for the curves.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CurvePoint {
    pub step: u64,
    pub loss: f64,
    pub l0: f64,
    pub explained_variance: f64,
}

/// What the view is made from.
pub struct ViewInput<'a> {
    pub params: &'a Params,
    pub sae: &'a Sae,
    pub evaluation: &'a Evaluation,
    pub hook: &'a str,
    /// The trained (or loaded) architecture's name.
    pub architecture: &'a str,
    /// The logged training steps; empty for a run that only evaluates a loaded SAE.
    pub curves: &'a [CurvePoint],
}

/// The run as the page's header shows it.
#[derive(Debug, Serialize)]
struct Header {
    run: String,
    hook: String,
    architecture: String,
    d_in: usize,
    d_sae: usize,
    dataset: String,
    rows_evaluated: u64,
    held_out: bool,
    /// Where the evaluation rows came from, in words.
    rows_note: String,
    l0: f64,
    explained_variance: f64,
    ce_loss_recovered: Option<f64>,
    dead_on_eval_rows: usize,
}

#[derive(Debug, Serialize)]
struct LatentView {
    latent: usize,
    /// `listed`, `most_active`, `random`: why it is shown.
    chosen_as: Vec<Reason>,
    /// Fraction of the evaluation rows it fires on.
    density: f64,
    fires: u64,
    /// Its mean activation over the rows it fires on.
    mean_when_firing: Option<f64>,
    top_contexts: Vec<TopContext>,
    /// The tokens its decoder direction raises most, and lowers most, through the unembedding.
    vocab_top: Vec<VocabToken>,
    vocab_bottom: Vec<VocabToken>,
}

#[derive(Debug, Serialize)]
struct FeatureView<'a> {
    header: Header,
    curves: &'a [CurvePoint],
    /// How the vocabulary projection was made, or why there is none.
    vocab_projection: String,
    vocab_available: bool,
    /// Why there are no top contexts, when there are none.
    contexts_note: Option<String>,
    /// Latents that were chosen at random from (those that fired).
    random_from: usize,
    latents: Vec<LatentView>,
    /// Listed latents that do not exist (out of 0..d_sae).
    ignored_latents: Vec<i64>,
}

/// Writes `feature_view.json` and `feature_view.html`; returns what the summary records of them.
pub fn write(input: &ViewInput) -> Result<Value> {
    let p = input.params;
    let e = input.evaluation;
    let d_sae = input.sae.d_sae();
    let frequencies = e.frequencies.to_vec_f32()?;
    let sums = e.activation_sums.to_vec_f32()?;
    let mut rng = Rng::new(runtime::seed() ^ 0xFEA7_0E1E_0000_0001);
    let choice = choose(
        &frequencies,
        p.view_top_latents,
        p.view_random_latents,
        &p.view_latents,
        &mut rng,
    );
    for &bad in &choice.ignored {
        warn(&format!(
            "view_latents: latent {bad} does not exist (the SAE has latents 0 to {}); left out of the feature view",
            d_sae.saturating_sub(1)
        ));
    }
    let latents: Vec<usize> = choice.latents.iter().map(|c| c.latent).collect();

    let (contexts, contexts_note) = match &e.top_contexts {
        Some(c) => (c.of(&latents)?, None),
        None => (
            Vec::new(),
            Some(if p.top_contexts_k == 0 {
                "top_contexts_k = 0: no contexts were kept".to_string()
            } else {
                "no top contexts: the activations came from a file, without the tokens they were read at"
                    .to_string()
            }),
        ),
    };
    let vocabulary = Vocabulary::for_hook(input.hook, input.sae.d_in())?;
    let (vocab_projection, vocab_available, mut projections) = match &vocabulary {
        Ok(v) => (
            v.method(),
            true,
            v.project(&input.sae.w_dec, &latents, p.view_vocab_tokens)?,
        ),
        Err(reason) => (reason.clone(), false, Vec::new()),
    };
    if !vocab_available {
        info(&format!("feature view: {vocab_projection}"));
    }

    let rows = e.recon.tokens;
    let mut views = Vec::with_capacity(latents.len());
    for (i, chosen) in choice.latents.into_iter().enumerate() {
        let l = chosen.latent;
        let density = frequencies[l] as f64;
        let fires = (density * rows as f64).round() as u64;
        let (vocab_top, vocab_bottom) = match projections.get_mut(i) {
            Some(pair) => std::mem::take(pair),
            None => (Vec::new(), Vec::new()),
        };
        views.push(LatentView {
            latent: l,
            chosen_as: chosen.reasons,
            density,
            fires,
            mean_when_firing: (fires > 0).then(|| sums[l] as f64 / fires as f64),
            top_contexts: contexts
                .iter()
                .find(|c| c.latent == l)
                .map(|c| c.top.clone())
                .unwrap_or_default(),
            vocab_top,
            vocab_bottom,
        });
    }
    let view = FeatureView {
        header: header(input),
        curves: input.curves,
        vocab_projection,
        vocab_available,
        contexts_note,
        random_from: choice.random_from,
        latents: views,
        ignored_latents: choice.ignored,
    };
    report::save_json(JSON, &view)?;
    report::save_text(HTML, &html::page(&view))?;
    info(&format!(
        "feature view of {} latents in artifacts/{HTML} (and {JSON})",
        view.latents.len()
    ));
    Ok(json!({
        "html": format!("artifacts/{HTML}"),
        "json": format!("artifacts/{JSON}"),
        "latents": view.latents.iter().map(|l| l.latent).collect::<Vec<_>>(),
        "vocab_projection": vocab_available,
        "curves": !input.curves.is_empty(),
    }))
}

fn header(input: &ViewInput) -> Header {
    let e = input.evaluation;
    let p = input.params;
    let rows = e.recon.tokens;
    let rows_note = match &e.held_out {
        Some(slice) => format!(
            "{rows} rows from the first {} {} of `{}`, held out from training",
            slice["count"],
            slice["unit"].as_str().unwrap_or("rows"),
            p.dataset
        ),
        None => format!(
            "{rows} rows from the start of `{}` (the SAE was loaded, not trained in this run: they may be rows it was trained on)",
            p.dataset
        ),
    };
    Header {
        run: runtime::info().id,
        hook: input.hook.to_string(),
        architecture: input.architecture.to_string(),
        d_in: input.sae.d_in(),
        d_sae: input.sae.d_sae(),
        dataset: p.dataset.clone(),
        rows_evaluated: rows,
        held_out: e.held_out.is_some(),
        rows_note,
        l0: e.recon.l0,
        explained_variance: e.recon.explained_variance,
        ce_loss_recovered: e.splice.as_ref().map(|s| s.ce_loss_recovered),
        dead_on_eval_rows: e.recon.dead_on_eval_rows,
    }
}
