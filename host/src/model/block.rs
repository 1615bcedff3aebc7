//! The pre-norm transformer block GPT-2, ViT and DeiT share, with its hooks: an architecture supplies
//! its weights' products through [`BlockWeights`] and the block's constants through [`BlockShape`].

use loupe_kernels::Tensor;

use super::Activation;
use super::pass::{Pass, Stop, engine};

/// The constants of one block: sizes, the norm's epsilon, the attention's scale and mask, the MLP's
/// nonlinearity.
pub(crate) struct BlockShape {
    pub batch: usize,
    pub seq: usize,
    pub d_model: usize,
    pub heads: usize,
    pub d_head: usize,
    pub eps: f32,
    pub scale: f32,
    pub causal: bool,
    pub activation: Activation,
}

/// A block's weights, as the products the block needs; each architecture stores them its own way
/// (GPT-2's fused `c_attn`, ViT's separate query, key and value).
pub(crate) trait BlockWeights {
    /// `(weight, bias)` of the norms before attention and before the MLP.
    fn norm1(&self) -> (&Tensor, &Tensor);
    fn norm2(&self) -> (&Tensor, &Tensor);
    /// Queries, keys and values `[batch, pos, d_model]` from the first norm's output.
    fn qkv(&self, x: &Tensor) -> loupe_kernels::Result<[Tensor; 3]>;
    /// The attention's output projection of `z` `[batch, pos, d_model]`.
    fn attn_out(&self, z: &Tensor) -> loupe_kernels::Result<Tensor>;
    fn mlp_in(&self, x: &Tensor) -> loupe_kernels::Result<Tensor>;
    fn mlp_out(&self, x: &Tensor) -> loupe_kernels::Result<Tensor>;
}

/// Block `l` on `resid` (its `hook_resid_pre`), through every hook of the block; returns
/// `hook_resid_post`.
pub(crate) fn block(
    pass: &mut Pass<'_>,
    l: usize,
    resid: Tensor,
    w: &impl BlockWeights,
    s: &BlockShape,
) -> Result<Tensor, Stop> {
    let e = |what: &str| engine(format!("blocks.{l}: {what}"));
    let name = |hook: &str| format!("blocks.{l}.{hook}");
    let (batch, seq, d) = (s.batch, s.seq, s.d_model);

    let resid_pre = pass.at(&name("hook_resid_pre"), resid)?;
    let (g, b) = w.norm1();
    let ln1 = pass.at(
        &name("ln1.hook_normalized"),
        resid_pre.layer_norm(g, b, s.eps).map_err(e("ln1"))?,
    )?;
    let [q, k, v] = w.qkv(&ln1).map_err(e("query, key, value"))?;
    let heads = |t: Tensor| t.reshape([batch, seq, s.heads, s.d_head]);
    let q = pass.at(&name("attn.hook_q"), heads(q).map_err(e("q"))?)?;
    let k = pass.at(&name("attn.hook_k"), heads(k).map_err(e("k"))?)?;
    let v = pass.at(&name("attn.hook_v"), heads(v).map_err(e("v"))?)?;
    let pattern = q
        .attention_pattern(&k, s.scale, s.causal)
        .map_err(e("attention pattern"))?;
    let pattern = pass.at(&name("attn.hook_pattern"), pattern)?;
    let z = pattern
        .attention_values(&v)
        .map_err(e("attention-weighted values"))?;
    let z = pass.at(&name("attn.hook_z"), z)?;
    let attn_out = z
        .reshape([batch, seq, d])
        .and_then(|z| w.attn_out(&z))
        .map_err(e("attention output"))?;
    let attn_out = pass.at(&name("hook_attn_out"), attn_out)?;
    let resid_mid = pass.at(
        &name("hook_resid_mid"),
        resid_pre.add(&attn_out).map_err(e("residual"))?,
    )?;

    let (g, b) = w.norm2();
    let ln2 = pass.at(
        &name("ln2.hook_normalized"),
        resid_mid.layer_norm(g, b, s.eps).map_err(e("ln2"))?,
    )?;
    let pre = pass.at(&name("mlp.hook_pre"), w.mlp_in(&ln2).map_err(e("mlp in"))?)?;
    let post = match s.activation {
        Activation::GeluTanh => pre.gelu_tanh(),
        Activation::GeluErf => pre.gelu_erf(),
        Activation::Relu => pre.relu(),
    };
    let post = pass.at(&name("mlp.hook_post"), post.map_err(e("activation"))?)?;
    let mlp_out = pass.at(
        &name("hook_mlp_out"),
        w.mlp_out(&post).map_err(e("mlp out"))?,
    )?;
    pass.at(
        &name("hook_resid_post"),
        resid_mid.add(&mlp_out).map_err(e("residual"))?,
    )
}
