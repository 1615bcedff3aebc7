//! The `snmf` plugin end to end, through the `loupe` binary: recovery of planted features, every update
//! rule of the fit checked against an f64 recomputation from its dumped intermediates, the best
//! snapshot returned, the hierarchy of ranks, a run from a model (collection, loss, contexts,
//! vocabulary projection, calibrated steering, reproducibility), and its errors on bad input.

#[path = "../host/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::planted::{Rng, write_activations, write_file};
use common::plugins::{read_json, repo_root, run_err, run_ok, runs_by_name, tiny_model};
use common::reference::{HookOverText, hook_over_text};
use common::{Stored, read_safetensors};
use loupe::data::TextSpec;
use loupe::model::LoadedModel;
use loupe_kernels::Device;
use serde_json::Value;

/// A dense row-major f64 matrix, for recomputing the fit's arithmetic in the test.
#[derive(Clone, Debug)]
struct Mat {
    rows: usize,
    cols: usize,
    v: Vec<f64>,
}

impl Mat {
    fn from_stored(s: &Stored) -> Mat {
        assert_eq!(s.shape.len(), 2, "{:?}", s.shape);
        Mat {
            rows: s.shape[0],
            cols: s.shape[1],
            v: s.f32s.iter().map(|&x| x as f64).collect(),
        }
    }

    fn from_f32(rows: usize, cols: usize, v: &[f32]) -> Mat {
        assert_eq!(v.len(), rows * cols);
        Mat {
            rows,
            cols,
            v: v.iter().map(|&x| x as f64).collect(),
        }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.v[i * self.cols + j]
    }

    fn t(&self) -> Mat {
        let mut v = vec![0.0; self.v.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                v[j * self.rows + i] = self.at(i, j);
            }
        }
        Mat {
            rows: self.cols,
            cols: self.rows,
            v,
        }
    }

    fn matmul(&self, o: &Mat) -> Mat {
        assert_eq!(self.cols, o.rows);
        let mut v = vec![0.0; self.rows * o.cols];
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.at(i, k);
                for j in 0..o.cols {
                    v[i * o.cols + j] += a * o.at(k, j);
                }
            }
        }
        Mat {
            rows: self.rows,
            cols: o.cols,
            v,
        }
    }

    fn map2(&self, o: &Mat, f: impl Fn(f64, f64) -> f64) -> Mat {
        assert_eq!((self.rows, self.cols), (o.rows, o.cols));
        Mat {
            rows: self.rows,
            cols: self.cols,
            v: self.v.iter().zip(&o.v).map(|(a, b)| f(*a, *b)).collect(),
        }
    }

    fn frobenius_sq(&self) -> f64 {
        self.v.iter().map(|x| x * x).sum()
    }

    /// Largest |a − b| relative to the largest |b|.
    fn relative_gap(&self, expected: &Mat) -> f64 {
        let scale = expected
            .v
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(1e-30);
        self.map2(expected, |a, b| (a - b).abs())
            .v
            .iter()
            .fold(0.0f64, |m, x| m.max(*x))
            / scale
    }

    /// Solves `self · x = b` by Gaussian elimination with partial pivoting (small systems).
    fn solve(&self, b: &Mat) -> Mat {
        let n = self.rows;
        let mut a = self.clone();
        let mut x = b.clone();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| a.at(i, col).abs().total_cmp(&a.at(j, col).abs()))
                .unwrap();
            for j in 0..n {
                a.v.swap(col * n + j, pivot * n + j);
            }
            for j in 0..x.cols {
                x.v.swap(col * x.cols + j, pivot * x.cols + j);
            }
            for i in col + 1..n {
                let f = a.at(i, col) / a.at(col, col);
                for j in col..n {
                    a.v[i * n + j] -= f * a.at(col, j);
                }
                for j in 0..x.cols {
                    x.v[i * x.cols + j] -= f * x.at(col, j);
                }
            }
        }
        for col in (0..n).rev() {
            for j in 0..x.cols {
                let mut s = x.at(col, j);
                for k in col + 1..n {
                    s -= a.at(col, k) * x.at(k, j);
                }
                x.v[col * x.cols + j] = s / a.at(col, col);
            }
        }
        x
    }
}

/// Planted `X = G*·H*` (`A = F*·G*ᵀ` with `F* = H*ᵀ`): `k` features over `d` neurons, each on
/// `support` random neurons with signed weights of magnitude in [0.5, 1.5]; each of `n` tokens expresses
/// one to three features with weights in [0.5, 1.5]; plus N(0, noise²) everywhere (real activations have
/// no exact zeros; without any, a token sharing no neuron with a feature zeroes its coefficient for
/// good in one multiplicative step). Gives (X `[n, d]`, H* `[k, d]`).
fn planted(
    rng: &mut Rng,
    (n, d, k): (usize, usize, usize),
    support: usize,
    noise: f64,
) -> (Vec<f32>, Vec<f32>) {
    let mut h = vec![0f32; k * d];
    for f in 0..k {
        let mut neurons: Vec<usize> = (0..d).collect();
        for i in 0..support {
            let j = i + (rng.next_u64() % (d - i) as u64) as usize;
            neurons.swap(i, j);
            let sign = if rng.next_u64().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            h[f * d + neurons[i]] = (sign * (0.5 + rng.uniform())) as f32;
        }
    }
    let mut x = vec![0f32; n * d];
    for t in 0..n {
        let active = 1 + (rng.next_u64() % 3) as usize;
        for _ in 0..active {
            let f = (rng.next_u64() % k as u64) as usize;
            let w = 0.5 + rng.uniform();
            for j in 0..d {
                x[t * d + j] += (w * h[f * d + j] as f64) as f32;
            }
        }
    }
    for v in &mut x {
        *v += (noise * rng.normal()) as f32;
    }
    (x, h)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// Matches planted features (rows of `truth` `[k, d]`) one to one with recovered ones (columns of
/// `f` `[d, k']`) greedily by cosine, best pairs first; gives the matched cosines.
fn matched_cosines(truth: &[f32], f: &Mat) -> Vec<f64> {
    let d = f.rows;
    let planted: Vec<Vec<f64>> = truth
        .chunks(d)
        .map(|r| r.iter().map(|&x| x as f64).collect())
        .collect();
    let ft = f.t();
    let recovered: Vec<&[f64]> = ft.v.chunks(d).collect();
    let mut pairs = Vec::new();
    for (i, p) in planted.iter().enumerate() {
        for (j, r) in recovered.iter().enumerate() {
            pairs.push((cosine(p, r), i, j));
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_p, mut used_r) = (vec![false; planted.len()], vec![false; recovered.len()]);
    let mut out = Vec::new();
    for (c, i, j) in pairs {
        if !used_p[i] && !used_r[j] {
            used_p[i] = true;
            used_r[j] = true;
            out.push(c);
        }
    }
    out
}

fn artifacts(run: &Path) -> PathBuf {
    run.join("artifacts")
}

/// A metric's series from a run's events.jsonl, by step.
fn metric(run: &Path, name: &str) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "metric" && e["name"] == name)
        .map(|e| (e["step"].as_u64().unwrap(), e["value"].as_f64().unwrap()))
        .collect()
}

#[test]
fn planted_features_are_recovered() {
    // Eight planted features on 6 of 128 neurons each, mixed into 1500 tokens, fitted at rank 12 (a few
    // spare features: like NMF, SNMF has local optima where one feature straddles two planted ones, and
    // spare features make the fit find every planted one). Three planted problems, each fitted from the
    // random initialisation (the reference's default) and from the svd and kmeans ones.
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, k, support) = (1500, 128, 8, 6);
    let rank = k + 4;
    let problems = [7u64, 10, 14];
    let mut body = String::new();
    let mut truths = BTreeMap::new();
    for seed in problems {
        let (x, truth) = planted(&mut Rng(seed), (n, d, k), support, 0.01);
        write_activations(
            &tmp.path().join(format!("planted{seed}.safetensors")),
            &x,
            d,
        );
        truths.insert(seed, truth);
        for init in ["random", "svd", "kmeans"] {
            body += &format!(
                r#"
[[run]]
name = "{init}-{seed}"
plugin = "snmf"
data = "planted{seed}.safetensors"
seed = 3
[run.params]
rank = {rank}
pct_keep = {}
init = "{init}"
max_iter = 2000
patience = 1500
log_every = 1
"#,
                support as f64 / d as f64
            );
        }
    }
    let exp = write_file(tmp.path(), "exp.toml", &body);
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let runs = runs_by_name(&out);
    for seed in problems {
        let first_loss = |init: &str| metric(&runs[&format!("{init}-{seed}")], "fit/loss")[&1];
        for init in ["random", "svd", "kmeans"] {
            let run = &runs[&format!("{init}-{seed}")];
            let saved = read_safetensors(&artifacts(run).join("snmf.safetensors"));
            let f = Mat::from_stored(&saved["F"]);
            let g = Mat::from_stored(&saved["G"]);
            assert_eq!((f.rows, f.cols, g.rows, g.cols), (d, rank, n, rank));
            assert!(
                g.v.iter().all(|&v| v >= 0.0),
                "{init}: G has negative entries"
            );
            let cosines = matched_cosines(&truths[&seed], &f);
            let found = cosines.iter().filter(|&&c| c >= 0.95).count();
            if init == "random" {
                assert_eq!(
                    found, k,
                    "problem {seed}, {init}: matched cosines {cosines:?}"
                );
                let summary = &read_json(&run.join("summary.json"))["summary"]["fits"][0];
                let error = summary["relative_error"].as_f64().unwrap();
                assert!(error < 0.01, "problem {seed}: relative error {error}");
            } else {
                // These start from the data's structure (a much lower first loss) but can settle in
                // the straddling optimum for one feature.
                assert!(
                    found >= k - 1,
                    "problem {seed}, {init}: matched cosines {cosines:?}"
                );
                assert!(
                    first_loss(init) < first_loss("random"),
                    "problem {seed}: {init} starts at {}, random at {}",
                    first_loss(init),
                    first_loss("random")
                );
            }
        }
    }
}

/// One small fit with every intermediate of every iteration dumped.
struct DumpedFit {
    _tmp: tempfile::TempDir,
    run: PathBuf,
    x: Mat,
    reg: f64,
    m: usize,
    iterations: u64,
}

fn dumped_fit() -> DumpedFit {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, k) = (60, 32, 4);
    // Gaussian data: nothing to recover, so the winner-take-all step keeps changing supports and the
    // loss is not monotone.
    let mut rng = Rng(11);
    let x: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
    write_activations(&tmp.path().join("x.safetensors"), &x, d);
    let iterations = 40;
    let exp = write_file(
        tmp.path(),
        "exp.toml",
        &format!(
            r#"
[[run]]
name = "dumped"
plugin = "snmf"
data = "x.safetensors"
seed = 5
[run.params]
rank = {k}
pct_keep = 0.1
reg = 1e-3
tol = 0.0
max_iter = {iterations}
patience = {iterations}
log_every = 1
dump_steps = {iterations}
"#
        ),
    );
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = runs_by_name(&out)["dumped"].clone();
    DumpedFit {
        _tmp: tmp,
        run,
        x: Mat::from_f32(n, d, &x),
        reg: 1e-3,
        m: 4, // ⌈0.1 · 32⌉
        iterations,
    }
}

fn step(fit: &DumpedFit, t: u64) -> BTreeMap<String, Mat> {
    read_safetensors(&artifacts(&fit.run).join(format!("steps/{t}.safetensors")))
        .iter()
        .map(|(name, s)| (name.clone(), Mat::from_stored(s)))
        .collect()
}

#[test]
fn every_update_rule_matches_the_spec() {
    let fit = dumped_fit();
    let x = &fit.x;
    let losses = metric(&fit.run, "fit/loss");
    assert_eq!(losses.len() as u64, fit.iterations);
    let mut previous_g: Option<Mat> = None;
    for t in 1..=fit.iterations {
        let s = step(&fit, t);
        let (g_in, h_ls, h_wta, g_scaled, h, g) = (
            &s["G_in"],
            &s["H_ls"],
            &s["H_wta"],
            &s["G_scaled"],
            &s["H"],
            &s["G"],
        );
        let k = g_in.cols;
        // Each iteration starts from the last one's G, and G is never negative.
        if let Some(prev) = &previous_g {
            assert_eq!(
                prev.v,
                g_in.v,
                "iteration {t} did not start from iteration {}'s G",
                t - 1
            );
        }
        for (name, m) in [("G_in", g_in), ("G_scaled", g_scaled), ("G", g)] {
            assert!(m.v.iter().all(|&v| v >= 0.0), "iteration {t}: {name} < 0");
        }
        // 1. Least squares with ridge: (GᵀG + reg·I)·H = GᵀX.
        let mut gram = g_in.t().matmul(g_in);
        for i in 0..k {
            gram.v[i * k + i] += fit.reg;
        }
        let expected = gram.solve(&g_in.t().matmul(x));
        let gap = h_ls.relative_gap(&expected);
        assert!(gap < 1e-3, "iteration {t}: least-squares H off by {gap:e}");
        // 2. Winner-take-all: at least m survivors per feature, exactly those ≥ the m-th largest |H|.
        for i in 0..k {
            let row: Vec<f64> = (0..h_ls.cols).map(|j| h_ls.at(i, j)).collect();
            let mut magnitudes: Vec<f64> = row.iter().map(|v| v.abs()).collect();
            magnitudes.sort_by(|a, b| b.total_cmp(a));
            let threshold = magnitudes[fit.m - 1];
            let kept = (0..h_ls.cols).filter(|&j| h_wta.at(i, j) != 0.0).count();
            assert!(
                kept >= fit.m,
                "iteration {t}, feature {i}: {kept} < m = {}",
                fit.m
            );
            for (j, &v) in row.iter().enumerate() {
                let want = if v.abs() >= threshold { v } else { 0.0 };
                assert_eq!(
                    h_wta.at(i, j),
                    want,
                    "iteration {t}, feature {i}, neuron {j}"
                );
            }
        }
        // 3. The scale fix leaves G·H (= (F·Gᵀ)ᵀ) unchanged and gives G unit columns.
        let before = g_in.matmul(h_wta);
        let gap = g_scaled.matmul(h).relative_gap(&before);
        assert!(
            gap < 1e-5,
            "iteration {t}: scale fix changed F·Gᵀ by {gap:e}"
        );
        for i in 0..k {
            let norm = (0..g_scaled.rows)
                .map(|r| g_scaled.at(r, i).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-4,
                "iteration {t}: ‖G[:, {i}]‖ = {norm}"
            );
        }
        // 4. The multiplicative update.
        let p = x.matmul(&h.t());
        let q = h.matmul(&h.t());
        let pos = |m: &Mat| m.map2(m, |a, _| (a.abs() + a) / 2.0);
        let neg = |m: &Mat| m.map2(m, |a, _| (a.abs() - a) / 2.0);
        let numerator = pos(&p).map2(&g_scaled.matmul(&neg(&q)), |a, b| a + b);
        let denominator = neg(&p).map2(&g_scaled.matmul(&pos(&q)), |a, b| a + b + 1e-6);
        let ratio = numerator.map2(&denominator, |a, b| (a / b).sqrt());
        let expected = g_scaled.map2(&ratio, |a, b| a * b);
        let gap = g.relative_gap(&expected);
        assert!(gap < 1e-4, "iteration {t}: G update off by {gap:e}");
        // 5. The reported loss is ‖X − G·H‖².
        let loss = x.map2(&g.matmul(h), |a, b| a - b).frobenius_sq();
        let reported = losses[&t];
        assert!(
            (reported - loss).abs() <= 1e-4 * loss,
            "iteration {t}: loss {reported} reported, {loss} recomputed"
        );
        previous_g = Some(g.clone());
    }
}

#[test]
fn the_best_iterate_is_returned_not_the_last() {
    let fit = dumped_fit();
    let losses = metric(&fit.run, "fit/loss");
    let (&best_t, &best) = losses.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    let last = losses[&fit.iterations];
    assert!(
        last > best,
        "the test needs a non-monotone fit: the last loss {last} is the best"
    );
    let summary = &read_json(&fit.run.join("summary.json"))["summary"]["fits"][0];
    assert_eq!(
        summary["best_iteration"].as_u64(),
        Some(best_t),
        "{summary}"
    );
    let saved = read_safetensors(&artifacts(&fit.run).join("snmf.safetensors"));
    let s = step(&fit, best_t);
    assert_eq!(Mat::from_stored(&saved["F"]).v, s["H"].t().v);
    assert_eq!(Mat::from_stored(&saved["G"]).v, s["G"].v);
}

#[test]
fn hierarchical_levels_factorise_the_level_above() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d) = (400, 64);
    let (x, _) = planted(&mut Rng(21), (n, d, 8), 6, 0.01);
    write_activations(&tmp.path().join("planted.safetensors"), &x, d);
    let exp = write_file(
        tmp.path(),
        "exp.toml",
        r#"
[[run]]
name = "tree"
plugin = "snmf"
data = "planted.safetensors"
[run.params]
ranks = [8, 3]
pct_keep = 0.1
max_iter = 200
patience = 50
"#,
    );
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = &runs_by_name(&out)["tree"];
    let top = read_safetensors(&artifacts(run).join("r8/snmf.safetensors"));
    let sub = read_safetensors(&artifacts(run).join("r3/snmf.safetensors"));
    let (f1, g1) = (Mat::from_stored(&top["F"]), Mat::from_stored(&top["G"]));
    let (f2, g2) = (Mat::from_stored(&sub["F"]), Mat::from_stored(&sub["G"]));
    assert_eq!((f1.rows, f1.cols, g1.rows, g1.cols), (d, 8, n, 8));
    // Level 2 factorises level 1's features: F₁ ≈ F₂·G₂ᵀ with G₂ [8, 3] ≥ 0.
    assert_eq!((f2.rows, f2.cols, g2.rows, g2.cols), (d, 3, 8, 3));
    assert!(g2.v.iter().all(|&v| v >= 0.0));
    // Tokens reach level 2 through G₁·G₂.
    let g_tokens = Mat::from_stored(&sub["G_tokens"]);
    let gap = g_tokens.relative_gap(&g1.matmul(&g2));
    assert!(gap < 1e-5, "G_tokens off by {gap:e}");
    let fits = &read_json(&run.join("summary.json"))["summary"]["fits"];
    assert_eq!(fits.as_array().unwrap().len(), 2);
    // The reported level-2 loss is that of F₁ ≈ F₂·G₂ᵀ.
    let loss = f1.map2(&f2.matmul(&g2.t()), |a, b| a - b).frobenius_sq();
    let reported = fits[1]["best_loss"].as_f64().unwrap();
    assert!(
        (reported - loss).abs() <= 1e-3 * loss.max(1e-6),
        "{reported} vs {loss}"
    );
}

/// The product of a non-empty list of matrices, left to right.
fn product(ms: &[&Mat]) -> Mat {
    ms[1..].iter().fold(ms[0].clone(), |acc, m| acc.matmul(m))
}

/// The fine-tune's mean squared error `mean((W₁⋯W_L·H − X)²)` and its gradients with respect to each
/// `W_i` and to `H` (last), written out directly in f64 from the definition (not by the plugin's
/// recursion): with `R = 2/(n·d)·(W₁⋯W_L·H − X)`, the gradient of the i-th factor of the chain is
/// `(everything left of it)ᵀ · R · (everything right of it)ᵀ`.
fn finetune_gradients(x: &Mat, ws: &[Mat], h: &Mat) -> (f64, Vec<Mat>) {
    let factors: Vec<&Mat> = ws.iter().chain([h]).collect();
    let diff = product(&factors).map2(x, |a, b| a - b);
    let count = (x.rows * x.cols) as f64;
    let mse = diff.frobenius_sq() / count;
    let r = diff.map2(&diff, |a, _| 2.0 * a / count);
    let grads = (0..factors.len())
        .map(|i| {
            let left = if i == 0 {
                r.clone()
            } else {
                product(&factors[..i]).t().matmul(&r)
            };
            if i + 1 == factors.len() {
                left
            } else {
                left.matmul(&product(&factors[i + 1..]).t())
            }
        })
        .collect();
    (mse, grads)
}

#[test]
fn the_joint_fine_tune_takes_adam_steps_down_the_hierarchys_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d) = (300, 48);
    let (x, _) = planted(&mut Rng(33), (n, d, 6), 5, 0.01);
    write_activations(&tmp.path().join("planted.safetensors"), &x, d);
    let x = Mat::from_f32(n, d, &x);
    let run = |name: &str, ranks: &str, steps: u64| {
        format!(
            "[[run]]\nname = \"{name}\"\nplugin = \"snmf\"\ndata = \"planted.safetensors\"\n\
             [run.params]\nranks = {ranks}\npct_keep = 0.2\nmax_iter = 150\npatience = 50\n\
             finetune_steps = {steps}\nfinetune_lr = 0.002\nlog_every = 1\n"
        )
    };
    let exp = write_file(
        tmp.path(),
        "exp.toml",
        &format!(
            "{}\n{}",
            run("one", "[6, 4, 2]", 1),
            run("many", "[6, 3]", 300)
        ),
    );
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let runs = runs_by_name(&out);

    // One step, three levels: every entry moves by Adam's first step, lr·g/(|g| + ε), against its
    // gradient.
    let one = &runs["one"];
    let levels: Vec<_> = ["r6", "r4", "r2"]
        .iter()
        .map(|l| read_safetensors(&artifacts(one).join(format!("{l}/snmf.safetensors"))))
        .collect();
    let tuned = read_safetensors(&artifacts(one).join("finetuned/snmf.safetensors"));
    let ws: Vec<Mat> = levels.iter().map(|l| Mat::from_stored(&l["G"])).collect();
    let h = Mat::from_stored(&levels[2]["F"]).t();
    let (mse, grads) = finetune_gradients(&x, &ws, &h);
    let before: Vec<&Mat> = ws.iter().chain([&h]).collect();
    let after = [
        Mat::from_stored(&tuned["G1"]),
        Mat::from_stored(&tuned["G2"]),
        Mat::from_stored(&tuned["G3"]),
        Mat::from_stored(&tuned["F"]).t(),
    ];
    for ((name, before), (after, grad)) in ["G1", "G2", "G3", "H"]
        .iter()
        .zip(before)
        .zip(after.iter().zip(&grads))
    {
        let largest = grad.v.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        let mut checked = 0;
        for ((b, a), g) in before.v.iter().zip(&after.v).zip(&grad.v) {
            // Tiny gradients can round to either sign in f32; the rest must move exactly so.
            if g.abs() < 1e-3 * largest {
                continue;
            }
            let expected = -0.002 * g / (g.abs() + 1e-8);
            assert!(
                (a - b - expected).abs() < 2e-5,
                "{name}: moved {} where Adam's first step is {expected}",
                a - b
            );
            checked += 1;
        }
        assert!(
            checked * 4 > before.v.len(),
            "{name}: only {checked} of {} entries checked",
            before.v.len()
        );
    }
    let reported = metric(one, "finetune/mse");
    assert!(
        (reported[&1] - mse).abs() <= 1e-4 * mse,
        "{} vs {mse}",
        reported[&1]
    );

    // Many steps: the error falls, and the one reported is that of the saved factors.
    let many = &runs["many"];
    let fits = &read_json(&many.join("summary.json"))["summary"]["fits"];
    let summary = &fits.as_array().unwrap()[2];
    let (before, after) = (
        summary["mse_before"].as_f64().unwrap(),
        summary["mse_after"].as_f64().unwrap(),
    );
    assert!(after < 0.9 * before, "mse {before} -> {after}");
    let tuned = read_safetensors(&artifacts(many).join("finetuned/snmf.safetensors"));
    let (g1, g2) = (
        Mat::from_stored(&tuned["G1"]),
        Mat::from_stored(&tuned["G2"]),
    );
    let h = Mat::from_stored(&tuned["F"]).t();
    let (recomputed, _) = finetune_gradients(&x, &[g1.clone(), g2.clone()], &h);
    assert!(
        (recomputed - after).abs() <= 1e-4 * after,
        "{recomputed} vs {after}"
    );
    let gap = Mat::from_stored(&tuned["G_tokens"]).relative_gap(&g1.matmul(&g2));
    assert!(gap < 1e-5, "G_tokens off by {gap:e}");
    let series = metric(many, "finetune/mse");
    assert_eq!(series.len(), 300);
    assert!(series[&300] < series[&1]);
    assert!(artifacts(many).join("finetuned/features.json").exists());
}

const SENTENCES: &str = r#"{"text": "the cat sat on the mat"}
{"text": "a model reads tokens"}
{"text": "attention moves information between positions and layers"}
{"text": "the dog ran"}
{"text": "neurons fire together in groups"}
{"text": "we record the activations of every layer of the network"}
"#;

/// The tokens the model run sees (padded with BOS after each sentence) and the activations at
/// `hook` of its non-BOS positions, computed directly with the library.
fn reference_columns(model: &Path, corpus: &Path, seq_len: usize, hook: &str) -> (Vec<i32>, Mat) {
    let spec = TextSpec {
        seq_len,
        pack: false,
        pad: true,
        ..TextSpec::new(corpus)
    };
    let HookOverText {
        loaded,
        sequences,
        values,
        width,
    } = hook_over_text(model, &spec, hook);
    let bos = loaded.bos.unwrap();
    let (mut tokens, mut kept) = (Vec::new(), Vec::new());
    for (i, &id) in sequences.iter().flatten().enumerate() {
        if id != bos {
            tokens.push(id as i32);
            kept.extend_from_slice(&values[i * width..(i + 1) * width]);
        }
    }
    (tokens.clone(), Mat::from_f32(tokens.len(), width, &kept))
}

fn model_experiment(dir: &Path, model: &Path) -> PathBuf {
    write_file(dir, "sentences.jsonl", SENTENCES);
    write_file(
        dir,
        "exp.toml",
        &format!(
            r#"
[[run]]
name = "snmf-model"
plugin = "snmf"
model = "{}"
data = {{ path = "sentences.jsonl", seq_len = 16, pack = false, pad = true }}
seed = 9
[run.params]
layers = [0, 1]
rank = 4
pct_keep = 0.05
max_iter = 60
patience = 60
init = "kmeans"
model_batch_size = 4
top_tokens = 5
context_window = 3
vocab_top = 7
steer_features = [1, 9]
kl_targets = [0.002, 0.01]
kl_tolerance = 0.001
continuations = 2
new_tokens = 4
"#,
            model.display()
        ),
    )
}

#[test]
fn a_model_run_collects_fits_describes_and_steers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let exp = model_experiment(tmp.path(), model);
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = runs_by_name(&out)["snmf-model"].clone();
    let art = artifacts(&run);

    // Columns: every non-BOS token of the padded sentences, in order.
    let (tokens, x1) = reference_columns(
        model,
        &tmp.path().join("sentences.jsonl"),
        16,
        "blocks.1.mlp.hook_post",
    );
    let columns = read_safetensors(&art.join("columns.safetensors"));
    assert_eq!(columns["token_ids"].i32s, tokens);
    let samples = &columns["sample_ids"].i32s;
    assert!(samples.windows(2).all(|w| w[0] <= w[1]));
    let distinct: std::collections::BTreeSet<i32> = samples.iter().cloned().collect();
    assert_eq!(distinct.len(), 6, "one sample per sentence: {samples:?}");

    // The fit of layer 1 is a factorization of exactly those activations: the reported loss is
    // ‖X − G·Fᵀ‖² of the saved factors on the directly computed X.
    let saved = read_safetensors(&art.join("layer1/snmf.safetensors"));
    let (f, g) = (Mat::from_stored(&saved["F"]), Mat::from_stored(&saved["G"]));
    assert_eq!((f.rows, f.cols, g.rows, g.cols), (256, 4, tokens.len(), 4));
    let summary = read_json(&run.join("summary.json"))["summary"].clone();
    let fit1 = &summary["fits"][1];
    assert_eq!(fit1["hook"], "blocks.1.mlp.hook_post");
    let loss = x1.map2(&g.matmul(&f.t()), |a, b| a - b).frobenius_sq();
    let reported = fit1["best_loss"].as_f64().unwrap();
    assert!(
        (reported - loss).abs() <= 1e-3 * loss,
        "{reported} vs {loss}"
    );
    // Winner-take-all keeps ⌈0.05 · 256⌉ = 13 neurons per feature (more only on exact ties).
    for i in 0..4 {
        let kept = (0..256).filter(|&r| f.at(r, i) != 0.0).count();
        assert!((13..=16).contains(&kept), "feature {i} keeps {kept}");
    }

    // Top tokens: G's largest coefficients per feature, descending, with contexts from their sentence.
    let features = read_json(&art.join("layer1/features.json"));
    let features = features.as_array().unwrap();
    assert_eq!(features.len(), 4);
    for (i, feature) in features.iter().enumerate() {
        let top = feature["top_tokens"].as_array().unwrap();
        assert!(!top.is_empty() && top.len() <= 5);
        let mut column_values: Vec<f64> = (0..g.rows).map(|r| g.at(r, i)).collect();
        column_values.sort_by(|a, b| b.total_cmp(a));
        for (j, hit) in top.iter().enumerate() {
            let column = hit["column"].as_u64().unwrap() as usize;
            assert_eq!(hit["token_id"].as_i64().unwrap() as i32, tokens[column]);
            assert_eq!(hit["sample"].as_i64().unwrap() as i32, samples[column]);
            // Values are f32 on both sides.
            let value = hit["value"].as_f64().unwrap() as f32;
            assert_eq!(value, g.at(column, i) as f32);
            assert_eq!(value, column_values[j] as f32);
        }
        for side in ["vocab_positive", "vocab_negative"] {
            assert_eq!(feature[side].as_array().unwrap().len(), 7, "{side}");
        }
        assert!(feature["neurons"].as_u64().unwrap() >= 13);
    }

    // Steering: feature 1 at both targets (hit within tolerance, two continuations per sign of α);
    // feature 9 does not exist at rank 4.
    let steering = read_json(&art.join("layer0/steering.json"));
    let steering = steering.as_array().unwrap();
    assert_eq!(steering.len(), 1);
    assert_eq!(steering[0]["feature"], 1);
    assert_eq!(steering[0]["hook"], "blocks.0.mlp.hook_post");
    let hits = steering[0]["targets"].as_array().unwrap();
    assert!(!hits.is_empty(), "no KL target was hit: {}", steering[0]);
    for hit in hits {
        let (target, kl) = (
            hit["kl_target"].as_f64().unwrap(),
            hit["kl"].as_f64().unwrap(),
        );
        assert!((kl - target).abs() < 0.001, "{hit}");
        let alpha = hit["alpha"].as_f64().unwrap();
        assert!((1.0..=2000.0).contains(&alpha));
        for side in ["positive", "negative"] {
            assert_eq!(hit["continuations"][side].as_array().unwrap().len(), 2);
        }
        assert_eq!(hit["logit_shift"]["up"].as_array().unwrap().len(), 7);
    }
    // A larger KL needs a larger α.
    if hits.len() == 2 {
        assert!(hits[0]["alpha"].as_f64() < hits[1]["alpha"].as_f64());
    }

    // The same seed gives the same factors and the same sampled continuations.
    let again = tmp.path().join("again");
    run_ok(&exp, &again);
    let run2 = runs_by_name(&again)["snmf-model"].clone();
    for file in ["layer0/snmf.safetensors", "layer1/snmf.safetensors"] {
        assert_eq!(
            std::fs::read(art.join(file)).unwrap(),
            std::fs::read(artifacts(&run2).join(file)).unwrap(),
            "{file} differs between two runs with the same seed"
        );
    }
    assert_eq!(
        read_json(&art.join("layer0/steering.json")),
        read_json(&artifacts(&run2).join("layer0/steering.json"))
    );
}

#[test]
fn the_vocabulary_projection_reads_features_through_w_out_ln_f_and_the_unembedding() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let exp = model_experiment(tmp.path(), model);
    let body = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("steer_features = [1, 9]", "steer_features = []")
        .replace("layers = [0, 1]", "layers = [1]");
    std::fs::write(&exp, body).unwrap();
    let out = tmp.path().join("runs");
    run_ok(&exp, &out);
    let run = runs_by_name(&out)["snmf-model"].clone();
    let f =
        Mat::from_stored(&read_safetensors(&artifacts(&run).join("layer1/snmf.safetensors"))["F"]);

    let loaded = LoadedModel::load(model, Device::Cpu).unwrap();
    let weights: BTreeMap<String, Vec<f32>> = loaded
        .model
        .weights()
        .into_iter()
        .map(|(name, t)| (name, t.to_vec_f32().unwrap()))
        .collect();
    let (d_model, vocab) = (64, 512);
    let w_out = Mat::from_f32(256, d_model, &weights["h.1.mlp.c_proj.weight"]);
    let wte = Mat::from_f32(vocab, d_model, &weights["wte.weight"]);
    let (ln_w, ln_b) = (&weights["ln_f.weight"], &weights["ln_f.bias"]);
    let features = read_json(&artifacts(&run).join("layer1/features.json"));
    for i in 0..f.cols {
        let z: Vec<f64> = (0..f.rows).map(|r| f.at(r, i)).collect();
        let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (side, sign) in [("vocab_positive", 1.0), ("vocab_negative", -1.0)] {
            let v = Mat {
                rows: 1,
                cols: f.rows,
                v: z.iter().map(|x| sign * x / norm).collect(),
            };
            let r = v.matmul(&w_out).v;
            let mean = r.iter().sum::<f64>() / d_model as f64;
            let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d_model as f64;
            let ln: Vec<f64> = r
                .iter()
                .enumerate()
                .map(|(j, x)| (x - mean) / (var + 1e-5).sqrt() * ln_w[j] as f64 + ln_b[j] as f64)
                .collect();
            let logits = Mat {
                rows: 1,
                cols: d_model,
                v: ln,
            }
            .matmul(&wte.t())
            .v;
            let listed = features[i][side].as_array().unwrap();
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            for (j, entry) in listed.iter().enumerate() {
                let logit = entry["logit"].as_f64().unwrap();
                let expected = logits[order[j]];
                assert!(
                    (logit - expected).abs() <= 1e-3 * expected.abs().max(1.0),
                    "feature {i} {side} #{j}: logit {logit}, expected {expected}"
                );
                let id = entry["token_id"].as_u64().unwrap() as usize;
                assert!((logits[id] - expected).abs() <= 1e-3 * expected.abs().max(1.0));
            }
        }
    }
}

#[test]
fn bad_parameters_and_inputs_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, _) = planted(&mut Rng(1), (50, 16, 3), 2, 0.01);
    write_activations(&tmp.path().join("x.safetensors"), &x, 16);
    write_file(tmp.path(), "s.jsonl", SENTENCES);
    let model = tiny_model().display().to_string();
    let cases: &[(&str, &str, &str)] = &[
        (
            "data = \"x.safetensors\"",
            "rank = 20",
            "rank 20 is more than the matrix allows (50 tokens × 16 neurons)",
        ),
        (
            "data = \"x.safetensors\"",
            "ranks = [4, 6]",
            "ranks must decrease",
        ),
        (
            "data = \"x.safetensors\"",
            "init = \"nmf\"",
            "init = \"nmf\" is not known",
        ),
        (
            "data = \"x.safetensors\"",
            "pct_keep = 0.0",
            "pct_keep must lie in (0, 1]",
        ),
        (
            "data = \"x.safetensors\"",
            "steer_features = [0]\nalpha_range = [5.0]",
            "alpha_range must be [low, high]",
        ),
        (
            "data = { path = \"s.jsonl\", seq_len = 8 }\nmodel = \"MODEL\"",
            "layers = [7]",
            "the model has 2 layers (0..=1), so layer 7 does not exist",
        ),
        (
            "data = { path = \"s.jsonl\", seq_len = 8 }\nmodel = \"MODEL\"",
            "site = \"mlp.hook_pre_act\"",
            "the model has no hook `blocks.0.mlp.hook_pre_act`",
        ),
        (
            "data = { path = \"s.jsonl\", seq_len = 8 }\nmodel = \"MODEL\"",
            "layers = []",
            "layers is empty",
        ),
        (
            "data = \"x.safetensors\"",
            "rank = 4\nfinetune_steps = 10",
            "finetune_steps = 10 fine-tunes a hierarchy; give ranks with at least two levels",
        ),
        (
            "data = \"x.safetensors\"",
            "ranks = [4, 2]\nfinetune_steps = 10\nfinetune_lr = -1.0",
            "finetune_lr must be positive",
        ),
    ];
    for (i, (data, param, expected)) in cases.iter().enumerate() {
        let exp = write_file(
            tmp.path(),
            &format!("bad{i}.toml"),
            &format!(
                "[[run]]\nname = \"bad\"\nplugin = \"snmf\"\n{}\n[run.params]\n{param}\n",
                data.replace("MODEL", &model)
            ),
        );
        let err = run_err(&exp, &tmp.path().join(format!("runs{i}")));
        assert!(err.contains(expected), "case {i} ({param}): {err}");
        assert!(!err.contains("panicked"), "case {i}: {err}");
    }
}

#[test]
fn the_example_runs_on_the_quickstart_model() {
    common::plugins::quickstart_model();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    run_ok(&repo_root().join("examples/snmf.toml"), &out);
    let run = &runs_by_name(&out)["snmf-mlp"];
    for file in [
        "layer0/snmf.safetensors",
        "layer1/features.json",
        "layer1/steering.json",
    ] {
        assert!(artifacts(run).join(file).is_file(), "{file} missing");
    }
    let tree = &runs_by_name(&out)["snmf-tree"];
    for file in [
        "layer1/r16/snmf.safetensors",
        "layer1/r4/features.json",
        "layer1/finetuned/snmf.safetensors",
        "layer1/finetuned/features.json",
    ] {
        assert!(artifacts(tree).join(file).is_file(), "{file} missing");
    }
}
