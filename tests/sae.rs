//! The `sae` plugin end to end, through the `loupe` binary: recovery of a planted dictionary, parity
//! with SAELens on its own saved SAEs, the save/load round trip of every architecture, training from a
//! model hook (attn.hook_z), and its errors on bad input.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::planted::{Rng, write_activations, write_file as write};
use common::plugins::{
    quickstart_model, read_json, repo_root, run_err, run_ok, runs_by_name, tiny_model,
};
use common::{fixtures_dir, read_safetensors, worst_mismatch};

/// `atoms` random unit directions in `d` dimensions, row-major `[atoms, d]`.
fn random_dictionary(rng: &mut Rng, atoms: usize, d: usize) -> Vec<f32> {
    let mut dict = Vec::with_capacity(atoms * d);
    for _ in 0..atoms {
        let row: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        dict.extend(row.iter().map(|v| (v / norm) as f32));
    }
    dict
}

/// Rows that are sums of `active` dictionary atoms with magnitudes in [0.5, 1.5], plus N(0, noise²).
fn planted_rows(
    rng: &mut Rng,
    dict: &[f32],
    d: usize,
    rows: usize,
    active: usize,
    noise: f64,
) -> Vec<f32> {
    let atoms = dict.len() / d;
    let mut out = vec![0f32; rows * d];
    for r in 0..rows {
        let row = &mut out[r * d..(r + 1) * d];
        for _ in 0..active {
            let a = (rng.next_u64() % atoms as u64) as usize;
            let m = 0.5 + rng.uniform();
            for (x, w) in row.iter_mut().zip(&dict[a * d..(a + 1) * d]) {
                *x += (m * *w as f64) as f32;
            }
        }
        for x in row.iter_mut() {
            *x += (noise * rng.normal()) as f32;
        }
    }
    out
}

/// 4096 rows of 3 atoms out of 64 in `d` dimensions, noise 0.05: quick to train on.
fn write_small_planted(path: &Path, d: usize, seed: u64) {
    let mut rng = Rng(seed);
    let dict = random_dictionary(&mut rng, 64, d);
    write_activations(path, &planted_rows(&mut rng, &dict, d, 4096, 3, 0.05), d);
}

/// The `evaluation.reconstruction` figures of a finished run's summary.
fn reconstruction(run: &Path) -> serde_json::Value {
    read_json(&run.join("summary.json"))["summary"]["evaluation"]["reconstruction"].clone()
}

/// Mean over true atoms of the best cosine with any learned decoder row (rows of `w_dec` `[m, d]`).
fn mean_max_cosine(truth: &[f32], w_dec: &[f32], d: usize) -> f64 {
    let norm = |v: &[f32]| {
        v.iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-12)
    };
    let learned: Vec<(&[f32], f64)> = w_dec.chunks(d).map(|r| (r, norm(r))).collect();
    let atoms: Vec<&[f32]> = truth.chunks(d).collect();
    let total: f64 = atoms
        .iter()
        .map(|t| {
            let tn = norm(t);
            learned
                .iter()
                .map(|(r, rn)| {
                    t.iter()
                        .zip(*r)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        / (tn * rn)
                })
                .fold(f64::MIN, f64::max)
        })
        .sum();
    total / atoms.len() as f64
}

/// Every architecture, given only `architecture`, `d_sae` and its sparsity target (`k`, or
/// `target_l0` for the penalised ones), recovers a planted dictionary; the evaluation runs on rows held
/// out from training and says so; BatchTopK's calibrated threshold and the steered penalties land
/// near the L0 asked for.
#[test]
fn every_architecture_recovers_a_planted_dictionary_with_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, atoms, active) = (32, 64, 4);
    let mut rng = Rng(42);
    let dict = random_dictionary(&mut rng, atoms, d);
    let rows = planted_rows(&mut rng, &dict, d, 32_768, active, 0.01);
    write_activations(&tmp.path().join("planted.safetensors"), &rows, d);
    // (run, architecture, its sparsity setting, whether its L0 should land near the true 4): the
    // penalised architectures' default coefficients alone, and JumpReLU steered to a target L0.
    // Standard's L1 keeps small noise-driven activations (L0 near 19 here); its recovery is the test.
    let archs = [
        ("standard", "standard", "", false),
        ("topk", "topk", "k = 4", true),
        ("batchtopk", "batchtopk", "k = 4", true),
        ("jumprelu", "jumprelu", "", true),
        ("jumprelu-target", "jumprelu", "target_l0 = 4.0", true),
    ];
    let mut body = String::new();
    for (name, arch, sparsity, _) in archs {
        body += &format!(
            "[[run]]\nname = \"{name}\"\nplugin = \"sae\"\ndata = \"planted.safetensors\"\n[run.params]\narchitecture = \"{arch}\"\nd_sae = 128\n{sparsity}\n\n"
        );
    }
    let exp = write(tmp.path(), "exp.toml", &body);
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let runs = runs_by_name(&out);
    let mut failures = Vec::new();
    for (arch, _, _, check_l0) in archs {
        let dir = &runs[arch];
        let weights = read_safetensors(&dir.join("artifacts/sae/sae_weights.safetensors"));
        let mmcs = mean_max_cosine(&dict, &weights["W_dec"].f32s, d);
        let eval = read_json(&dir.join("artifacts/evaluation.json"));
        let recon = &eval["reconstruction"];
        let l0 = recon["l0"].as_f64().unwrap();
        eprintln!(
            "{arch}: mean max cosine {mmcs:.4}, L0 {l0:.2}, explained variance {:.4}, dead on eval rows {}, rows {}",
            recon["explained_variance"], recon["dead_on_eval_rows"], eval["rows_evaluated"]
        );
        // The default eval_tokens, held out: the file's first 16384 rows, never trained on.
        assert_eq!(eval["rows_evaluated"], 16_384, "{arch}");
        assert_eq!(eval["held_out"], true, "{arch}");
        assert_eq!(eval["slice"]["count"], 16_384, "{arch}");
        assert!(
            eval["dark_matter"]["error_r2"].is_f64(),
            "{arch}: 8192 fitting rows are enough for d_in 32: {eval}"
        );
        if mmcs < 0.9 {
            failures.push(format!("{arch}: mean max cosine {mmcs:.4} < 0.9"));
        }
        if check_l0 && (l0 - active as f64).abs() > 0.5 * active as f64 {
            failures.push(format!(
                "{arch}: L0 {l0:.2} on held-out rows, asked for {active}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
}

/// With as many latents as planted atoms, some latents die; within the default run (488 steps, the dead
/// window scaled to 48) the default auxiliary loss brings back at least a quarter of them, where
/// without it they stay dead.
#[test]
fn the_auxiliary_loss_revives_dead_topk_latents() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 32;
    let mut rng = Rng(9);
    let dict = random_dictionary(&mut rng, 128, d);
    let rows = planted_rows(&mut rng, &dict, d, 32_768, 4, 0.01);
    write_activations(&tmp.path().join("planted.safetensors"), &rows, d);
    let mut body = String::new();
    for (name, extra) in [("aux", ""), ("no-aux", "aux_k_coefficient = 0.0")] {
        body += &format!(
            "[[run]]\nname = \"{name}\"\nplugin = \"sae\"\ndata = \"planted.safetensors\"\n[run.params]\narchitecture = \"topk\"\nd_sae = 128\nk = 4\neval_tokens = 8192\n{extra}\n\n"
        );
    }
    let exp = write(tmp.path(), "exp.toml", &body);
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let runs = runs_by_name(&out);
    let dead = |name: &str| {
        read_json(&runs[name].join("artifacts/evaluation.json"))["reconstruction"]
            ["dead_on_eval_rows"]
            .as_u64()
            .unwrap()
    };
    let (with, without) = (dead("aux"), dead("no-aux"));
    eprintln!("dead latents on held-out rows: {with} with the auxiliary loss, {without} without");
    assert!(
        without >= 10,
        "only {without} latents died without it: vacuous"
    );
    assert!(
        (with as f64) <= 0.75 * without as f64,
        "{with} dead with the auxiliary loss, {without} without"
    );
}

#[test]
fn encode_and_decode_match_saelens_on_its_own_saes() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = fixtures_dir();
    let mut body = String::new();
    for arch in ["standard", "topk", "jumprelu"] {
        let dir = fixtures.join(format!("saelens-{arch}"));
        body += &format!(
            r#"
[[run]]
name = "{arch}"
plugin = "sae"
data = {{ x = {{ path = "{reference}", tensor = "x" }}, sae = "{dir}" }}
[run.params]
load = "sae"
dataset = "x"
eval_tokens = 16
save_codes_rows = 16
"#,
            reference = dir.join("reference.safetensors").display(),
            dir = dir.display(),
        );
    }
    let exp = write(tmp.path(), "exp.toml", &body);
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let runs = runs_by_name(&out);
    for arch in ["standard", "topk", "jumprelu"] {
        let reference =
            read_safetensors(&fixtures.join(format!("saelens-{arch}/reference.safetensors")));
        let ours = read_safetensors(&runs[arch].join("artifacts/codes.safetensors"));
        for name in ["feature_acts", "reconstruction"] {
            assert_eq!(ours[name].shape, reference[name].shape, "{arch} {name}");
            if let Some((i, a, e)) = worst_mismatch(&ours[name].f32s, &reference[name].f32s, 1e-5) {
                panic!("{arch} {name}[{i}]: ours {a}, SAELens {e}");
            }
        }
        let fired = ours["feature_acts"]
            .f32s
            .iter()
            .filter(|v| **v > 0.0)
            .count();
        assert!(
            fired > 0,
            "{arch}: no latent fired, the comparison would be vacuous"
        );
    }
}

#[test]
fn every_architecture_saves_what_it_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 16;
    write_small_planted(&tmp.path().join("acts.safetensors"), d, 7);
    let archs = ["standard", "topk", "batchtopk", "jumprelu"];
    let mut body = String::new();
    for arch in archs {
        body += &format!(
            r#"
[[run]]
name = "{arch}"
plugin = "sae"
data = "acts.safetensors"
[run.params]
architecture = "{arch}"
d_sae = 64
k = 3
training_tokens = 40_960
batch_size = 512
buffer_batches = 4
lr = 3e-3
l1_coefficient = 0.5
l0_coefficient = 0.05
eval_tokens = 1024
save_codes_rows = 256
"#
        );
    }
    let exp = write(tmp.path(), "train.toml", &body);
    let out = tmp.path().join("train");
    run_ok(&exp, &out);
    let trained = runs_by_name(&out);

    let mut body = String::new();
    for arch in archs {
        body += &format!(
            r#"
[[run]]
name = "{arch}"
plugin = "sae"
data = {{ default = "acts.safetensors", sae = "{dir}" }}
[run.params]
load = "sae"
eval_tokens = 1024
save_codes_rows = 256
"#,
            dir = trained[arch].join("artifacts/sae").display()
        );
    }
    let exp = write(tmp.path(), "load.toml", &body);
    let out = tmp.path().join("load");
    run_ok(&exp, &out);
    let loaded = runs_by_name(&out);
    for arch in archs {
        let cfg = read_json(&trained[arch].join("artifacts/sae/cfg.json"));
        let saved_as = if arch == "batchtopk" {
            "jumprelu"
        } else {
            arch
        };
        assert_eq!(cfg["architecture"], saved_as);
        assert_eq!(
            cfg["normalize_activations"], "none",
            "{arch}: scaling must be folded"
        );
        assert!(cfg["metadata"]["sae_lens_version"].as_str().unwrap() >= "6.0.0");
        let weights =
            read_safetensors(&trained[arch].join("artifacts/sae/sae_weights.safetensors"));
        let mut names: Vec<&str> = weights.keys().map(String::as_str).collect();
        names.sort();
        let expected: &[&str] = if saved_as == "jumprelu" {
            &["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]
        } else {
            &["W_dec", "W_enc", "b_dec", "b_enc"]
        };
        assert_eq!(
            names, expected,
            "{arch}: SAELens loads the state dict strictly"
        );
        assert_eq!(weights["W_enc"].shape, [d, 64]);
        assert_eq!(weights["W_dec"].shape, [64, d]);
        let sparsity = read_safetensors(&trained[arch].join("artifacts/sae/sparsity.safetensors"));
        assert_eq!(sparsity["sparsity"].shape, [64]);

        let before = read_safetensors(&trained[arch].join("artifacts/codes.safetensors"));
        let after = read_safetensors(&loaded[arch].join("artifacts/codes.safetensors"));
        for name in ["x", "feature_acts", "reconstruction"] {
            if let Some((i, a, e)) = worst_mismatch(&after[name].f32s, &before[name].f32s, 1e-6) {
                panic!("{arch} {name}[{i}]: loaded {a}, trained {e}");
            }
        }
        let ev = reconstruction(&trained[arch])["explained_variance"]
            .as_f64()
            .unwrap();
        assert!(ev > 0.5, "{arch}: explained variance {ev} after training");
    }
}

fn corpus() -> PathBuf {
    repo_root()
        .join("examples/tiny-corpus.txt")
        .canonicalize()
        .unwrap()
}

#[test]
fn trains_on_attention_outputs_streamed_from_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = write(
        tmp.path(),
        "exp.toml",
        &format!(
            r#"
[[run]]
name = "hook-z"
plugin = "sae"
model = "{model}"
data = {{ path = "{corpus}", seq_len = 16 }}
seed = 3
[run.params]
hook = "blocks.1.attn.hook_z"
architecture = "topk"
k = 8
expansion_factor = 4
training_tokens = 8192
batch_size = 256
buffer_batches = 4
model_batch_size = 8
eval_tokens = 150
top_contexts_latents = 4
top_contexts_k = 3
log_every = 4
"#,
            model = tiny_model().display(),
            corpus = corpus().display()
        ),
    );
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = &runs_by_name(&out)["hook-z"];
    let cfg = read_json(&run.join("artifacts/sae/cfg.json"));
    // The tiny model has 4 heads of 16: hook_z is flattened head-major to 64.
    assert_eq!(cfg["d_in"], 64);
    assert_eq!(cfg["d_sae"], 256);
    assert_eq!(cfg["architecture"], "topk");
    assert_eq!(cfg["k"], 8);
    assert_eq!(cfg["reshape_activations"], "hook_z");
    assert_eq!(cfg["metadata"]["hook_name"], "blocks.1.attn.hook_z");
    assert_eq!(cfg["metadata"]["context_size"], 16);

    let summary = read_json(&run.join("summary.json"));
    let eval = &summary["summary"]["evaluation"];
    let splice = &eval["splice"];
    for key in [
        "ce_clean",
        "ce_with_sae",
        "ce_zero_ablated",
        "ce_loss_recovered",
        "kl_with_sae",
        "kl_score",
    ] {
        assert!(
            splice[key].as_f64().is_some_and(f64::is_finite),
            "splice.{key} = {}",
            splice[key]
        );
    }
    assert!(splice["kl_with_sae"].as_f64().unwrap() >= 0.0);
    let recon = &eval["reconstruction"];
    let l0 = recon["l0"].as_f64().unwrap();
    assert!(l0 > 0.0 && l0 <= 8.0, "TopK L0 {l0} must lie in (0, k]");
    // The first 10 of the corpus's 39 sequences of 16 (15 rows each without BOS) are held out.
    assert_eq!(eval["rows_evaluated"], 150);
    assert_eq!(eval["held_out"], true);
    assert_eq!(eval["slice"]["count"], 10);
    // 75 fitting rows cannot fit a map with 65 coefficients per output: skipped, not reported.
    assert!(eval["dark_matter"].is_null(), "{}", eval["dark_matter"]);
    let skipped = eval["skipped"].as_array().unwrap();
    let metrics: Vec<&str> = skipped
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    // And 150 rows cannot measure frequencies below 1e-5 or 1e-6.
    assert_eq!(
        metrics,
        ["dark_matter", "latents_below_1e_5", "latents_below_1e_6"]
    );
    assert!(eval["reconstruction"]["latents_below_1e_5"].is_null());
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("raise eval_tokens"),
        "{skipped:?}"
    );

    let contexts = read_json(&run.join("artifacts/top_contexts.json"));
    assert_eq!(contexts.as_array().unwrap().len(), 4);
    for latent in contexts.as_array().unwrap() {
        for hit in latent["top"].as_array().unwrap() {
            for key in ["token", "before", "after"] {
                assert!(hit[key].is_string(), "{key} in {hit}");
            }
        }
    }
    let density = read_json(&run.join("artifacts/feature_density.json"));
    let counted: u64 = density["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 256, "every latent lands in one density bin");

    // Training metrics were streamed as events, for the dashboard.
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let losses = events
        .lines()
        .filter(|l| l.contains("\"train/loss\""))
        .count();
    assert!(
        losses >= 8,
        "{losses} train/loss events for 32 steps logged every 4"
    );
    for series in [
        "train/l0",
        "train/explained_variance",
        "train/cosine",
        "train/l2_ratio",
        "train/relative_reconstruction_bias",
        "train/dead_in_training_window",
        "train/dense_latents",
    ] {
        assert!(
            events.contains(&format!("\"{series}\"")),
            "no {series} metric streamed"
        );
    }

    // BOS positions are left out of the rows unless exclude_bos = false: evaluating the saved SAE on
    // the same two passes of 8 sequences of 16 (each starting with BOS) sees 2·8·15 or 2·8·16 rows.
    let mut body = String::new();
    for exclude in [true, false] {
        body += &format!(
            r#"
[[run]]
name = "exclude-{exclude}"
plugin = "sae"
model = "{model}"
data = {{ default = {{ path = "{corpus}", seq_len = 16 }}, sae = "{sae}" }}
[run.params]
load = "sae"
exclude_bos = {exclude}
model_batch_size = 8
eval_tokens = 200
"#,
            model = tiny_model().display(),
            corpus = corpus().display(),
            sae = run.join("artifacts/sae").display()
        );
    }
    let exp = write(tmp.path(), "load.toml", &body);
    let out = tmp.path().join("load");
    run_ok(&exp, &out);
    let runs = runs_by_name(&out);
    let rows = |name: &str| reconstruction(&runs[name])["tokens"].as_u64().unwrap();
    assert_eq!(rows("exclude-true"), 2 * 8 * 15);
    assert_eq!(rows("exclude-false"), 2 * 8 * 16);
}

/// A usable Chromium: `LOUPE_CHROMIUM`, or Debian's (`scripts/chromium.sh` installs it).
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LOUPE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `args` and a fresh profile; its stdout and stderr. Killed
/// after two minutes, which a page without network or script never needs.
fn headless(browser: &Path, page: &Path, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "chromium did not finish within 2 minutes on {}",
                page.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "chromium failed ({status}):\n{err}");
    (out, err)
}

#[test]
fn the_feature_view_shows_chosen_latents_and_renders_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = write(
        tmp.path(),
        "exp.toml",
        &format!(
            r#"
[[run]]
name = "view"
plugin = "sae"
model = "{model}"
data = {{ path = "{corpus}", seq_len = 16 }}
seed = 5
[run.params]
hook = "blocks.1.hook_resid_post"
architecture = "topk"
k = 8
expansion_factor = 4
training_tokens = 4096
batch_size = 256
buffer_batches = 4
model_batch_size = 8
eval_tokens = 150
top_contexts_latents = 2
top_contexts_k = 4
context_tokens = 3
view_top_latents = 3
view_random_latents = 2
view_latents = [5, 7, 100000]
view_vocab_tokens = 6
log_every = 2
"#,
            model = tiny_model().display(),
            corpus = corpus().display()
        ),
    );
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = &runs_by_name(&out)["view"];
    let artifacts = run.join("artifacts");

    // feature_view.json: the listed latents first, then the 3 most active, then 2 random ones.
    let view = read_json(&artifacts.join("feature_view.json"));
    let latents = view["latents"].as_array().unwrap();
    let ids: Vec<u64> = latents
        .iter()
        .map(|l| l["latent"].as_u64().unwrap())
        .collect();
    assert_eq!(&ids[..2], &[5, 7], "{ids:?}");
    assert_eq!(view["ignored_latents"], serde_json::json!([100000]));
    let with = |reason: &str| {
        latents
            .iter()
            .filter(|l| {
                l["chosen_as"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == reason)
            })
            .count()
    };
    assert_eq!(with("listed"), 2);
    assert_eq!(with("most_active"), 3);
    assert_eq!(with("random"), 2);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a latent shown twice: {ids:?}");
    let mut most_active_density = Vec::new();
    for l in latents {
        let density = l["density"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&density), "{l}");
        let fires = l["fires"].as_u64().unwrap();
        assert_eq!(fires, (density * 150.0).round() as u64);
        if l["chosen_as"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "most_active")
        {
            most_active_density.push(density);
        }
        if l["chosen_as"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "random")
        {
            assert!(
                fires > 0,
                "random latents are drawn from those that fired: {l}"
            );
        }
        let top = l["top_contexts"].as_array().unwrap();
        assert_eq!(top.is_empty(), fires == 0, "{l}");
        assert!(top.len() <= 4);
        let mut last = f64::INFINITY;
        for c in top {
            for key in ["before", "token", "after"] {
                assert!(c[key].is_string(), "{key} in {c}");
            }
            let value = c["value"].as_f64().unwrap();
            assert!(
                value > 0.0 && value <= last,
                "contexts largest first: {top:?}"
            );
            last = value;
            // Held out: the first 10 sequences of 16.
            assert!(c["sequence"].as_u64().unwrap() < 10, "{c}");
            assert!(c["position"].as_u64().unwrap() < 16, "{c}");
        }
        if fires > 0 {
            let mean = l["mean_when_firing"].as_f64().unwrap();
            assert!(
                mean > 0.0 && mean <= top[0]["value"].as_f64().unwrap() + 1e-6,
                "{l}"
            );
        }
        // A residual-stream SAE reads straight through ln_f and the unembedding.
        for side in ["vocab_top", "vocab_bottom"] {
            let tokens = l[side].as_array().unwrap();
            assert_eq!(tokens.len(), 6, "{side}");
            assert!(tokens.iter().all(|t| t["token"].is_string()));
        }
        let (top_logit, bottom_logit) = (
            l["vocab_top"][0]["logit"].as_f64().unwrap(),
            l["vocab_bottom"][0]["logit"].as_f64().unwrap(),
        );
        assert!(top_logit > bottom_logit, "{l}");
    }
    assert!(most_active_density.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(view["vocab_available"], true);
    // Steps 1, 2, 4, …, 16 were logged.
    assert_eq!(view["curves"].as_array().unwrap().len(), 9);
    // top_contexts.json has the same shape, text after the token included.
    let first = read_json(&artifacts.join("top_contexts.json"));
    assert_eq!(first.as_array().unwrap().len(), 2);
    for hit in first[0]["top"].as_array().unwrap() {
        assert!(
            hit["after"].is_string() && hit["sequence"].is_u64(),
            "{hit}"
        );
    }
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(
        summary["summary"]["feature_view"]["html"],
        "artifacts/feature_view.html"
    );

    // The page fetches nothing: no scripts, stylesheets, images or URLs (bar the SVG namespace).
    let page = artifacts.join("feature_view.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for banned in ["<script", "<link", "<img", "src=", "url(", "@import"] {
        assert!(!html.contains(banned), "the page has {banned}");
    }
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count(),
        "the page names a URL"
    );

    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium (run scripts/chromium.sh, or set LOUPE_CHROMIUM)"
        );
        eprintln!("skipped the browser check: no Chromium (scripts/chromium.sh installs one)");
        return;
    };
    let shot = tmp.path().join("feature_view.png");
    headless(
        &browser,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let image = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(image.dimensions(), (1200, 2000));
    let luma: Vec<f64> = image
        .pixels()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let variance = luma.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    assert!(
        variance > 100.0,
        "the screenshot is nearly blank (variance {variance})"
    );
    // The curves and the highlighted tokens are drawn in orange.
    let orange = image
        .pixels()
        .filter(|p| p[0] > 180 && p[1] > 40 && p[1] < 120 && p[2] < 60)
        .count();
    assert!(
        orange > 500,
        "{orange} orange pixels: no curves or highlights drawn"
    );

    let (dom, log) = headless(
        &browser,
        &page,
        &["--enable-logging=stderr", "--v=0", "--dump-dom"],
    );
    assert_eq!(
        dom.matches(r#"<article class="latent""#).count(),
        latents.len()
    );
    assert_eq!(dom.matches(r#"<svg class="chart""#).count(), 3);
    assert!(dom.contains(r#"<mark class="hit""#));
    assert!(dom.contains(r#"id="latent-5""#) && dom.contains(r#"id="latent-7""#));
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("CONSOLE") && l.contains("ERROR")) || l.contains("Uncaught"))
        .collect();
    assert!(errors.is_empty(), "console errors:\n{}", errors.join("\n"));
}

#[test]
fn bad_input_gives_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_dir = tmp.path().join("not-an-sae");
    std::fs::create_dir(&empty_dir).unwrap();
    let model = tiny_model().display().to_string();
    let corpus = corpus().display().to_string();
    let mut cases: Vec<(String, &str)> = vec![
        (
            format!(
                "model = \"{model}\"\ndata = \"{corpus}\"\n[run.params]\nhook = \"blocks.0.attn.hook_zz\""
            ),
            // Caught before the run starts: hook parameters are looked up in the model up front.
            "params.hook: unknown hook `blocks.0.attn.hook_zz`; closest: `blocks.0.attn.hook_z`",
        ),
        (
            format!("model = \"{model}\"\ndata = \"{corpus}\"\n[run.params]\nhook = \"\""),
            "set `hook`",
        ),
        (
            format!(
                "model = \"{model}\"\ndata = \"{corpus}\"\n[run.params]\nhook = \"blocks.0.hook_resid_pre\"\narchitecture = \"gated\""
            ),
            "architecture `gated`",
        ),
        (
            format!(
                "model = \"{model}\"\ndata = {{ default = \"{corpus}\", sae = \"{}\" }}\n[run.params]\nload = \"sae\"",
                empty_dir.display()
            ),
            "cfg.json",
        ),
        (
            format!(
                "data = {{ default = \"{}\", sae = \"{}\" }}\n[run.params]\nload = \"sae\"",
                fixtures_dir()
                    .join("saelens-topk/reference.safetensors")
                    .display(),
                fixtures_dir().join("saelens-topk").display()
            ),
            "activations",
        ),
    ];
    let planted = tmp.path().join("acts.safetensors");
    write_small_planted(&planted, 16, 5);
    let acts = planted.display().to_string();
    cases.extend([
        (
            format!("data = \"{acts}\"\n[run.params]\nk = 0"),
            "k must be at least 1",
        ),
        (
            format!("data = \"{acts}\"\n[run.params]\nk = 65\nd_sae = 64"),
            "k = 65 exceeds d_sae = 64",
        ),
        (
            format!("data = \"{acts}\"\n[run.params]\neval_tokens = 4096"),
            "eval_tokens = 4096 holds out 4096 of them",
        ),
    ]);
    for (i, (body, expected)) in cases.iter().enumerate() {
        let exp = write(
            tmp.path(),
            &format!("bad{i}.toml"),
            &format!("[[run]]\nplugin = \"sae\"\n{body}\n"),
        );
        let output = run_err(&exp, &tmp.path().join(format!("runs{i}")));
        assert!(
            output.contains(expected),
            "case {i}: expected `{expected}` in:\n{output}"
        );
        assert!(!output.contains("panicked"), "case {i}: {output}");
    }
}

#[test]
fn the_example_experiment_trains_and_saves_an_sae() {
    // The model scripts/quickstart.sh writes, at the path examples/sae.toml names.
    quickstart_model();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    run_ok(&repo_root().join("examples/sae.toml"), &out);
    let run = &runs_by_name(&out)["sae-hook-z"];
    for file in [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    ] {
        assert!(
            run.join("artifacts/sae").join(file).is_file(),
            "missing artifacts/sae/{file}"
        );
    }
    // The evaluation covers the rows it claims: the corpus's first 6 sequences of 32 (31 rows each
    // without BOS), held out; dark matter needs more rows than that and says so.
    let eval = read_json(&run.join("artifacts/evaluation.json"));
    assert_eq!(eval["rows_evaluated"], 186);
    assert_eq!(eval["held_out"], true);
    assert_eq!(eval["slice"]["count"], 6);
    assert_eq!(eval["skipped"][0]["metric"], "dark_matter");
    // On rows it never saw, after training on the other 12 sequences only: a real corpus does far
    // better, but an SAE that learned nothing would be near 0.
    let ev = eval["reconstruction"]["explained_variance"]
        .as_f64()
        .unwrap();
    assert!(ev > 0.3, "held-out explained variance {ev}");
    let cfg = read_json(&run.join("artifacts/sae/cfg.json"));
    assert_eq!(cfg["metadata"]["model_name"], "tiny-gpt2");
}

#[test]
fn sparsity_knobs_set_the_l0_they_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 16;
    write_small_planted(&tmp.path().join("acts.safetensors"), d, 11);
    // (name, architecture, extra params)
    let runs = [
        (
            "l1-off",
            "standard",
            "l1_coefficient = 0.0\ntraining_tokens = 204_800",
        ),
        (
            "l1-on",
            "standard",
            "l1_coefficient = 1.0\ntraining_tokens = 204_800",
        ),
        (
            "l0-off",
            "jumprelu",
            "l0_coefficient = 0.0\ntraining_tokens = 2_048_000",
        ),
        (
            "l0-on",
            "jumprelu",
            "l0_coefficient = 0.3\ntraining_tokens = 2_048_000",
        ),
        ("batch-k2", "batchtopk", "k = 2\ntraining_tokens = 204_800"),
        ("batch-k8", "batchtopk", "k = 8\ntraining_tokens = 204_800"),
    ];
    let mut body = String::new();
    for (name, arch, extra) in runs {
        body += &format!(
            "[[run]]\nname = \"{name}\"\nplugin = \"sae\"\ndata = \"acts.safetensors\"\n[run.params]\narchitecture = \"{arch}\"\nd_sae = 64\nbatch_size = 512\nbuffer_batches = 4\nlr = 3e-3\neval_tokens = 2048\n{extra}\n\n"
        );
    }
    let exp = write(tmp.path(), "exp.toml", &body);
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let dirs = runs_by_name(&out);
    let l0 = |name: &str| reconstruction(&dirs[name])["l0"].as_f64().unwrap();
    eprintln!(
        "L0: standard {:.2} → {:.2}, jumprelu {:.2} → {:.2}, batchtopk k=2 {:.2}, k=8 {:.2}",
        l0("l1-off"),
        l0("l1-on"),
        l0("l0-off"),
        l0("l0-on"),
        l0("batch-k2"),
        l0("batch-k8")
    );
    assert!(
        l0("l1-on") < l0("l1-off") / 2.0,
        "the L1 penalty must cut L0"
    );
    assert!(
        l0("l0-on") < l0("l0-off") / 2.0,
        "the L0 penalty must cut L0"
    );
    // BatchTopK keeps k per token on average; saved as JumpReLU, its threshold keeps about that many.
    for (name, k) in [("batch-k2", 2.0), ("batch-k8", 8.0)] {
        let got = l0(name);
        assert!(
            (got - k).abs() < 0.5 * k,
            "{name}: L0 {got} at inference, trained for k = {k}"
        );
    }
}

/// The standard SAE's hand-derived gradients (kept in the plugin: they are faster) against the
/// engine's reverse-mode autodiff on the same step: the plugin saves its first batch, parameters and
/// gradients; the loss is rebuilt here from engine ops on a tape and differentiated.
#[test]
fn hand_derived_sae_gradients_agree_with_autodiff() {
    use loupe_kernels::{Device, Tape, Tensor};
    let tmp = tempfile::tempdir().unwrap();
    let planted = tmp.path().join("planted.safetensors");
    write_small_planted(&planted, 16, 11);
    let exp = write(
        tmp.path(),
        "exp.toml",
        &format!(
            "[[run]]\nplugin = \"sae\"\ndata = \"{}\"\n[run.params]\narchitecture = \"standard\"\nd_sae = 64\ntraining_tokens = 1024\nbatch_size = 256\neval_tokens = 1024\nl1_coefficient = 3.0\nl1_warm_up_fraction = 0.0\nsave_first_gradients = true\n",
            planted.display()
        ),
    );
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = runs_by_name(&out).into_values().next().unwrap();
    let saved = read_safetensors(&run.join("artifacts/first_step_gradients.safetensors"));
    let t = |name: &str| {
        let s = &saved[name];
        Tensor::from_vec_f32(s.f32s.clone(), s.shape.clone(), Device::Cpu).unwrap()
    };
    let tape = Tape::new();
    let x = t("x");
    let rows = x.dims()[0] as f32;
    let coefficient = saved["coefficient"].f32s[0];
    assert_eq!(
        coefficient, 3.0,
        "no warm-up: the full coefficient on step 1"
    );
    let [w_enc, b_enc, w_dec, b_dec] =
        ["w_enc", "b_enc", "w_dec", "b_dec"].map(|n| tape.watch(&t(n)).unwrap());
    // L = Σ‖x̂ − x‖² / b + (λ / b) Σ_i (Σ_rows f_i) ‖W_dec,i‖, f = relu((x − b_dec) W_enc + b_enc).
    let f = x
        .sub(&b_dec)
        .and_then(|xc| xc.linear(&w_enc, Some(&b_enc)))
        .and_then(|h| h.relu())
        .unwrap();
    let error = f.linear(&w_dec, Some(&b_dec)).unwrap().sub(&x).unwrap();
    let sum_all = |v: Tensor| v.reshape([v.numel()]).and_then(|v| v.sum(0, true)).unwrap();
    let mse = sum_all(error.mul(&error).unwrap())
        .affine(1.0 / rows, 0.0)
        .unwrap();
    let norms = w_dec.l2_norm(1, false).unwrap();
    let sparsity = sum_all(f.sum(0, false).unwrap().mul(&norms).unwrap())
        .affine(coefficient / rows, 0.0)
        .unwrap();
    let loss = mse.add(&sparsity).unwrap();
    let seed = Tensor::ones([1usize], Device::Cpu).unwrap();
    let grads = tape
        .backward(&[(&loss, &seed)], &[&w_enc, &b_enc, &w_dec, &b_dec])
        .unwrap();
    for (name, g) in ["w_enc", "b_enc", "w_dec", "b_dec"].iter().zip(grads) {
        let ours = g.to_vec_f32().unwrap();
        let theirs = &saved[&format!("grad.{name}")];
        assert_eq!(g.dims(), theirs.shape.as_slice(), "{name}");
        let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: an all-zero gradient checks nothing");
        for (i, (a, h)) in ours.iter().zip(&theirs.f32s).enumerate() {
            assert!(
                (a - h).abs() <= 1e-4 * scale + 1e-3 * a.abs(),
                "grad.{name}[{i}]: autodiff {a}, hand-derived {h}"
            );
        }
    }
}
