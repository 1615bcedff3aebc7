//! `feature_view.html`: one page that opens from disk with nothing else — inline CSS and SVG, no
//! script, no fonts or images to fetch. Every piece of text from the run (tokens above all, which hold
//! `<`, `&`, quotes and newlines) goes through [`escape`].

use std::fmt::Write;

use super::chart::line_chart;
use super::choose::Reason;
use super::vocab::VocabToken;
use super::{FeatureView, LatentView};
use loupe_plugin_api::contexts::TopContext;

/// Text made safe for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Token text escaped, with newlines and tabs drawn as visible marks (a context spans one line).
fn token_text(text: &str) -> String {
    escape(text)
        .replace("\r\n", "\n")
        .replace('\n', r#"<span class="ws">↵</span>"#)
        .replace('\t', r#"<span class="ws">⇥</span>"#)
        .replace('\r', "")
}

/// A token standing alone (a vocabulary list): its spaces drawn too, so ` the` and `the`, or a token
/// of spaces, can be told apart.
fn lone_token_text(text: &str) -> String {
    // Spaces are marked before `token_text` adds its spans, whose tags hold spaces of their own.
    token_text(&text.replace(' ', "\u{2423}")).replace('\u{2423}', r#"<span class="ws">␣</span>"#)
}

/// Prose from the run escaped, with `backticked` names set as code.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// A number with about three significant figures.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { margin: 0; background: #f6f6f3; color: #1d1d1b; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; border-bottom: 1px solid #d8d8d2; padding-bottom: 4px; }
h3 { font-size: 18px; margin: 0 0 6px; }
h4 { font-size: 14px; margin: 12px 0 4px; text-transform: uppercase; letter-spacing: .04em; color: #5b5b55; }
code { font: 14px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
dl.facts dt { color: #5b5b55; }
dl.facts dd { margin: 0; }
.note { color: #5b5b55; font-size: 15px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { background: #fff; border: 1px solid #d8d8d2; border-radius: 6px; font: 11px system-ui, sans-serif; }
svg.chart .plot { fill: none; stroke: #b9b9b2; }
svg.chart .grid { stroke: #ecece6; }
svg.chart .tick { stroke: #8a8a84; }
svg.chart .tick-label { fill: #4a4a45; }
svg.chart .axis-title { fill: #1d1d1b; font-size: 12px; }
svg.chart .chart-title { fill: #1d1d1b; font-size: 13px; font-weight: 600; }
svg.chart .line { fill: none; stroke: #c2410c; stroke-width: 2; }
svg.chart .dot { fill: #c2410c; }
svg.chart .empty { fill: #8a8a84; }
article.latent { background: #fff; border: 1px solid #d8d8d2; border-radius: 8px; padding: 16px 18px; margin: 16px 0; }
.badge { display: inline-block; font-size: 12px; font-weight: 500; padding: 1px 8px; margin-left: 6px; border-radius: 10px; background: #e7e5de; color: #3b3b37; vertical-align: middle; }
.badge.listed { background: #dbeafe; color: #1e3a8a; }
.badge.most_active { background: #fde7d3; color: #7c2d12; }
.badge.random { background: #e0f2e9; color: #14532d; }
.density { margin: 0; }
.bar { display: inline-block; width: 120px; height: 8px; background: #ecece6; border-radius: 4px; vertical-align: middle; margin-left: 8px; }
.bar > span { display: block; height: 8px; background: #c2410c; border-radius: 4px; }
.columns { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 20px; }
@media (max-width: 760px) { .columns { grid-template-columns: 1fr; } }
ol.contexts { margin: 0; padding-left: 28px; }
ol.contexts li { font: 14px/1.7 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-word; border-bottom: 1px solid #f0f0ea; }
mark.hit { color: #1d1d1b; border-radius: 3px; padding: 0 1px; outline: 1px solid #c2410c; }
.value { font: 11px system-ui, sans-serif; color: #7c2d12; margin: 0 4px 0 2px; vertical-align: super; }
.where { font: 11px system-ui, sans-serif; color: #8a8a84; margin-left: 8px; }
.ws { color: #a8a8a0; }
table.vocab { border-collapse: collapse; width: 100%; font-size: 14px; }
table.vocab td { padding: 1px 6px; }
table.vocab td.tok { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre; }
table.vocab td.num { text-align: right; color: #4a4a45; font-variant-numeric: tabular-nums; }
table.vocab th { text-align: left; font-weight: 600; font-size: 13px; color: #5b5b55; padding: 4px 6px 2px; }
"#;

pub fn page(view: &FeatureView) -> String {
    let h = &view.header;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>SAE feature view · {hook}</title><style>{STYLE}</style></head>
<body data-latents="{n}"><main>
<header><h1>SAE feature view</h1>
<dl class="facts">
<dt>run</dt><dd><code>{run}</code></dd>
<dt>hook</dt><dd><code>{hook}</code></dd>
<dt>architecture</dt><dd>{arch}, {d_in} → {d_sae} latents</dd>
<dt>evaluated on</dt><dd>{rows_note}</dd>
<dt>evaluation</dt><dd>L0 {l0} · explained variance {ev}{ce} · {dead} latents never fired on these rows</dd>
</dl></header>
"#,
        hook = escape(&h.hook),
        n = view.latents.len(),
        run = escape(&h.run),
        arch = escape(&h.architecture),
        d_in = h.d_in,
        d_sae = h.d_sae,
        rows_note = prose(&h.rows_note),
        l0 = number(h.l0),
        ev = number(h.explained_variance),
        ce = h
            .ce_loss_recovered
            .map(|c| format!(" · CE loss recovered {}", number(c)))
            .unwrap_or_default(),
        dead = h.dead_on_eval_rows,
    );
    curves(&mut out, view);
    latents(&mut out, view);
    out.push_str("</main></body></html>\n");
    out
}

fn curves(out: &mut String, view: &FeatureView) {
    out.push_str(r#"<section class="curves"><h2>Training</h2>"#);
    if view.curves.is_empty() {
        out.push_str(r#"<p class="note">No training curves: this run evaluated an SAE it did not train.</p></section>"#);
        return;
    }
    let series = |pick: fn(&super::CurvePoint) -> f64| -> Vec<(f64, f64)> {
        view.curves
            .iter()
            .map(|c| (c.step as f64, pick(c)))
            .collect()
    };
    out.push_str(r#"<p class="note">Logged steps of training, on the training batches (inputs scaled as trained).</p><div class="charts">"#);
    out.push_str(&line_chart(
        "training loss",
        "training step",
        "loss (MSE + sparsity terms)",
        &series(|c| c.loss),
    ));
    out.push_str(&line_chart(
        "L0",
        "training step",
        "active latents per token",
        &series(|c| c.l0),
    ));
    out.push_str(&line_chart(
        "explained variance",
        "training step",
        "fraction of variance (1 − FVU)",
        &series(|c| c.explained_variance),
    ));
    out.push_str("</div></section>\n");
}

fn latents(out: &mut String, view: &FeatureView) {
    let _ = write!(
        out,
        r#"<section class="latents"><h2>Latents</h2>
<p class="note">The latents firing most often on the evaluation rows, {} drawn at random from the {} that fired, and any listed in <code>view_latents</code>. Top activations show the text around the token, which is highlighted in proportion to its activation (the number after it). Vocabulary projection: {}.</p>
"#,
        view.latents
            .iter()
            .filter(|l| l.chosen_as.contains(&Reason::Random))
            .count(),
        view.random_from,
        prose(&view.vocab_projection)
    );
    if let Some(note) = &view.contexts_note {
        let _ = write!(out, r#"<p class="note">{}</p>"#, prose(note));
    }
    if !view.ignored_latents.is_empty() {
        let listed: Vec<String> = view.ignored_latents.iter().map(i64::to_string).collect();
        let _ = write!(
            out,
            r#"<p class="note">Listed latents that do not exist (the SAE has latents 0 to {}): {}.</p>"#,
            view.header.d_sae.saturating_sub(1),
            listed.join(", ")
        );
    }
    if view.latents.is_empty() {
        out.push_str(r#"<p class="note">No latent to show: none fired and none was listed.</p>"#);
    }
    for latent in &view.latents {
        card(out, latent, view);
    }
    out.push_str("</section>\n");
}

fn card(out: &mut String, l: &LatentView, view: &FeatureView) {
    let _ = write!(
        out,
        r#"<article class="latent" id="latent-{id}" data-latent="{id}"><h3>Latent {id}"#,
        id = l.latent
    );
    for reason in &l.chosen_as {
        let (class, text) = match reason {
            Reason::Listed => ("listed", "listed"),
            Reason::MostActive => ("most_active", "most active"),
            Reason::Random => ("random", "random"),
        };
        let _ = write!(out, r#"<span class="badge {class}">{text}</span>"#);
    }
    // Density on a log scale from 10⁻⁶ (empty) to 1 (full).
    let bar = if l.density > 0.0 {
        ((l.density.log10() + 6.0) / 6.0).clamp(0.02, 1.0) * 100.0
    } else {
        0.0
    };
    let _ = write!(
        out,
        r#"</h3><p class="density">Fires on <b>{pct}%</b> of the {rows} evaluation rows ({fires}){mean}<span class="bar" title="log scale, 10⁻⁶ to 1"><span style="width:{bar:.1}%"></span></span></p>"#,
        pct = number(l.density * 100.0),
        rows = view.header.rows_evaluated,
        fires = l.fires,
        mean = l
            .mean_when_firing
            .map(|m| format!(" · mean activation when firing {}", number(m)))
            .unwrap_or_default(),
    );
    out.push_str(r#"<div class="columns"><div><h4>Top activations</h4>"#);
    contexts(out, &l.top_contexts, view);
    out.push_str(r#"</div><div><h4>Vocabulary projection</h4>"#);
    vocabulary(out, l, view);
    out.push_str("</div></div></article>\n");
}

fn contexts(out: &mut String, top: &[TopContext], view: &FeatureView) {
    if top.is_empty() {
        let why = if view.contexts_note.is_some() {
            "No contexts (see above)."
        } else {
            "It never fired on the evaluation rows."
        };
        let _ = write!(out, r#"<p class="note">{why}</p>"#);
        return;
    }
    let max = top
        .iter()
        .map(|c| c.value)
        .fold(f32::MIN, f32::max)
        .max(1e-12);
    out.push_str(r#"<ol class="contexts">"#);
    for c in top {
        let alpha = 0.15 + 0.85 * (c.value / max).clamp(0.0, 1.0);
        let _ = write!(
            out,
            r#"<li>{before}<mark class="hit" style="background:rgba(234,88,12,{alpha:.2})">{token}</mark><span class="value">{value}</span>{after}<span class="where">row {seq}, position {pos}</span></li>"#,
            before = token_text(&c.before),
            token = token_text(&c.token),
            value = number(c.value as f64),
            after = token_text(&c.after),
            seq = c.sequence,
            pos = c.position,
        );
    }
    out.push_str("</ol>");
}

fn vocabulary(out: &mut String, l: &LatentView, view: &FeatureView) {
    if !view.vocab_available {
        out.push_str(r#"<p class="note">None (see above).</p>"#);
        return;
    }
    let rows = l.vocab_top.len().max(l.vocab_bottom.len());
    out.push_str(
        r#"<table class="vocab"><tr><th colspan="2">raises</th><th colspan="2">lowers</th></tr>"#,
    );
    let cells = |t: Option<&VocabToken>| match t {
        Some(t) => format!(
            r#"<td class="tok">{}</td><td class="num">{}</td>"#,
            lone_token_text(&t.token),
            number(t.logit as f64)
        ),
        None => "<td></td><td></td>".into(),
    };
    for i in 0..rows {
        let _ = write!(
            out,
            "<tr>{}{}</tr>",
            cells(l.vocab_top.get(i)),
            cells(l.vocab_bottom.get(i))
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_token_shows_its_spaces() {
        assert_eq!(lone_token_text(" a<"), r#"<span class="ws">␣</span>a&lt;"#);
        assert_eq!(lone_token_text(""), "");
    }

    #[test]
    fn text_from_the_run_cannot_open_tags_or_attributes() {
        assert_eq!(
            escape(r#"<script>a & "b" 'c'</script>"#),
            "&lt;script&gt;a &amp; &quot;b&quot; &#39;c&#39;&lt;/script&gt;"
        );
        let t = token_text("x<\n\ty");
        assert!(t.starts_with("x&lt;<span class=\"ws\">↵</span>"));
        assert!(!t.contains('\n') && !t.contains('\t'));
        assert_eq!(prose("at `a<b` now"), "at <code>a&lt;b</code> now");
    }

    #[test]
    fn numbers_keep_about_three_figures() {
        assert_eq!(number(0.012345), "0.012");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(123456.0), "1.23e5");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "–");
    }
}
