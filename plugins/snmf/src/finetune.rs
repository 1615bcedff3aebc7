//! The optional joint fine-tune of a hierarchy (spec Part A §A4): every level's token weights
//! `W₁ = G₁ [n, r₁], W₂ = G₂ [r₁, r₂], …, W_L = G_L` and the last level's features `H = F_Lᵀ [r_L, d]`
//! are trained together with Adam (PyTorch's arithmetic and defaults) to minimise the mean squared
//! error of `W₁·W₂⋯W_L·H` against the activations `X` `[n, d]`. As in the reference, nonnegativity is
//! not enforced during the fine-tune, so token weights may turn negative.
//!
//! Gradients by hand, in the order that keeps every product with the wide side `d` at the narrowest
//! rank `r_L` (ranks decrease down a hierarchy): the tokens' weights `T = W₁⋯W_L` `[n, r_L]` first, then
//! `P = T·H`. With `R = 2/(n·d)·(P − X)`: `∂H = Tᵀ·R` and `∂T = R·Hᵀ`, which goes back through the small
//! chain `T = W₁⋯W_L`: with `M_i = W_{i+1}⋯W_L` `[r_i, r_L]` (`M_L = I`) and `B₁ = ∂T`, `∂W_i = B_i·M_iᵀ`
//! and `B_{i+1} = W_iᵀ·B_i`. Three products of n·d·r_L each per step; nothing larger than `X` is formed.

use std::rc::Rc;

use loupe_plugin_api::prelude::*;

pub struct FinetuneConfig {
    pub steps: u64,
    pub lr: f64,
    pub log_every: u64,
    /// Prefix of the metric (`{label}finetune/mse`).
    pub label: String,
}

/// A parameter with its Adam moments; it starts as a handle on the fitted factor.
struct Trained {
    value: Rc<Tensor>,
    m: Tensor,
    v: Tensor,
}

impl Trained {
    fn new(value: Rc<Tensor>) -> Result<Trained> {
        let shape = value.shape();
        Ok(Trained {
            m: Tensor::zeros(&shape)?,
            v: Tensor::zeros(&shape)?,
            value,
        })
    }

    fn update(&mut self, grad: &Tensor, adam: AdamConfig, step: u64) -> Result<()> {
        let (value, m, v) = Tensor::adam_step(&self.value, grad, &self.m, &self.v, adam, step)?;
        (self.value, self.m, self.v) = (Rc::new(value), m, v);
        Ok(())
    }
}

pub struct Finetuned {
    /// `W₁ … W_L` after the fine-tune.
    pub ws: Vec<Rc<Tensor>>,
    /// `H = F_Lᵀ` after the fine-tune.
    pub h: Rc<Tensor>,
    /// The tokens' weights on the last level's features, `W₁⋯W_L`.
    pub tokens: Rc<Tensor>,
    /// Mean squared error before the first step and after the last.
    pub mse_before: f64,
    pub mse_after: f64,
}

/// `M_i = W_{i+1}⋯W_L` `[r_i, r_L]` for `i < L`, in level order (`M_L` is the identity, not formed).
fn tails(ws: &[Trained]) -> Result<Vec<Rc<Tensor>>> {
    let mut out: Vec<Rc<Tensor>> = Vec::with_capacity(ws.len());
    for w in ws[1..].iter().rev() {
        let next = match out.last() {
            None => Rc::clone(&w.value),
            Some(tail) => Rc::new(w.value.matmul(tail)?),
        };
        out.push(next);
    }
    out.reverse();
    Ok(out)
}

/// One evaluation of the chain: the tokens' weights `T = W₁⋯W_L`, the tails `M_i`, and `T·H − X`.
struct Chain {
    tokens: Rc<Tensor>,
    tails: Vec<Rc<Tensor>>,
    residual: Tensor,
}

fn chain(x: &Tensor, ws: &[Trained], h: &Tensor) -> Result<Chain> {
    let tails = tails(ws)?;
    let tokens = match tails.first() {
        Some(tail) => Rc::new(ws[0].value.matmul(tail)?),
        None => Rc::clone(&ws[0].value),
    };
    let residual = tokens.matmul(h)?.sub(x)?;
    Ok(Chain {
        tokens,
        tails,
        residual,
    })
}

/// Mean of the squared entries: one pass for the rows' norms, their squares added in f64.
fn mean_square(t: &Tensor) -> Result<f64> {
    let norms = t.l2_norm(-1, false)?.to_vec_f32()?;
    Ok(norms.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / t.numel() as f64)
}

pub fn finetune(
    x: &Tensor,
    ws: Vec<Rc<Tensor>>,
    h: Rc<Tensor>,
    cfg: &FinetuneConfig,
) -> Result<Finetuned> {
    let adam = AdamConfig {
        lr: cfg.lr as f32,
        ..AdamConfig::default()
    };
    let scale = 2.0 / x.numel() as f32;
    let mut ws = ws
        .into_iter()
        .map(Trained::new)
        .collect::<Result<Vec<_>>>()?;
    let mut h = Trained::new(h)?;
    let mut mse_before = f64::NAN;
    for step in 1..=cfg.steps {
        let Chain {
            tokens,
            tails,
            residual,
        } = chain(x, &ws, &h.value)?;
        let mse = mean_square(&residual)?;
        if !mse.is_finite() {
            return Err(Error::other(
                "snmf",
                format!(
                    "the fine-tune's error became {mse} at step {step}; lower finetune_lr or set finetune_steps = 0"
                ),
            ));
        }
        if step == 1 {
            mse_before = mse;
        }
        if step % cfg.log_every == 0 || step == 1 {
            report::metric(&format!("{}finetune/mse", cfg.label), step, mse);
        }
        // Every gradient is taken before any update. The loss's factor 2/(n·d) is applied to the
        // narrow products rather than to the [n, d] residual: one pass over the widest tensor less.
        let grad_h = tokens
            .matmul_t(&residual, true, false)?
            .affine(scale, 0.0)?;
        let mut upstream = residual
            .matmul_t(&h.value, false, true)?
            .affine(scale, 0.0)?;
        let mut grads = Vec::with_capacity(ws.len());
        for (w, tail) in ws.iter().zip(&tails) {
            grads.push(upstream.matmul_t(tail, false, true)?);
            upstream = w.value.matmul_t(&upstream, true, false)?;
        }
        grads.push(upstream);
        for (w, grad) in ws.iter_mut().zip(&grads) {
            w.update(grad, adam, step)?;
        }
        h.update(&grad_h, adam, step)?;
        if step % cfg.steps.div_ceil(100) == 0 || step == cfg.steps {
            report::progress(&format!("{}finetune", cfg.label), step, cfg.steps);
        }
    }
    let last = chain(x, &ws, &h.value)?;
    let mse_after = mean_square(&last.residual)?;
    Ok(Finetuned {
        ws: ws.into_iter().map(|w| w.value).collect(),
        h: h.value,
        tokens: last.tokens,
        mse_before,
        mse_after,
    })
}
