//! [`Tensor`]: a handle to a host-owned tensor. Dropping it frees the host memory.

use crate::bindings::loupe::plugin::tensor::{self as wit, BinaryOp, ReduceOp, UnaryOp};
use crate::bindings::loupe::plugin::types::Dtype as WitDtype;
use crate::error::Result;

/// Adam's hyper-parameters, named as in `torch.optim.Adam` (defaults: lr 1e-3, betas 0.9 and 0.999,
/// eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I32,
}

impl From<DType> for WitDtype {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => WitDtype::F32,
            DType::I32 => WitDtype::S32,
        }
    }
}

/// A tensor on the host's device. Every op returns a new tensor; the values behind a handle never change.
#[derive(Debug)]
pub struct Tensor(pub(crate) wit::Tensor);

fn dims(shape: &[usize]) -> Vec<u32> {
    // A dimension past u32::MAX cannot be allocated anyway; saturate and let the host refuse it.
    shape
        .iter()
        .map(|&d| u32::try_from(d).unwrap_or(u32::MAX))
        .collect()
}

fn axis(a: isize) -> i32 {
    i32::try_from(a).unwrap_or(i32::MAX)
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            self.unary(UnaryOp::$op)
        }
    )*};
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            self.binary(BinaryOp::$op, rhs)
        }
    )*};
}

macro_rules! reduce_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
            self.reduce(ReduceOp::$op, axis, keepdim)
        }
    )*};
}

impl Tensor {
    // ---- creation ----

    pub fn from_f32(data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::from_f32(data, &dims(shape))?))
    }

    pub fn from_i32(data: &[i32], shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::from_s32(data, &dims(shape))?))
    }

    /// A one-element `[1]` tensor, which broadcasts against anything.
    pub fn scalar(value: f32) -> Result<Tensor> {
        Self::full(&[1], value)
    }

    pub fn full(shape: &[usize], value: f32) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::full(&dims(shape), value)?))
    }

    pub fn zeros(shape: &[usize]) -> Result<Tensor> {
        Self::full(shape, 0.0)
    }

    pub fn ones(shape: &[usize]) -> Result<Tensor> {
        Self::full(shape, 1.0)
    }

    /// Normal(mean, std) samples, reproducible from `seed`.
    pub fn randn(shape: &[usize], mean: f32, std: f32, seed: u64) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::randn(&dims(shape), mean, std, seed)?))
    }

    /// Uniform samples in `[low, high)`, reproducible from `seed`.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, seed: u64) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::rand_uniform(
            &dims(shape),
            low,
            high,
            seed,
        )?))
    }

    /// One Adam step (PyTorch's arithmetic) for `param` with gradient `grad` and moment estimates `m`,
    /// `v` (zeros before the first step); `step` counts from 1. Returns the new `(param, m, v)`.
    pub fn adam_step(
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        config: AdamConfig,
        step: u64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let config = wit::AdamConfig {
            lr: config.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
        };
        let (p, m, v) = wit::Tensor::adam_step(&param.0, &grad.0, &m.0, &v.0, config, step)?;
        Ok((Tensor(p), Tensor(m), Tensor(v)))
    }

    /// Solves `a · x = b` for a symmetric positive-definite `a` `[n, n]` and `b` `[n, m]` (Cholesky in
    /// f64 on the host): normal equations of least squares and ridge regressions.
    pub fn solve_spd(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::solve_spd(&a.0, &b.0)?))
    }

    /// `out[i] = Σ_j values[i, j] · table[indices[i, j]]`: rows of `table` `[m, d]` mixed by sparse codes
    /// (`values` f32 and `indices` i32 `[n, k]`, as `top_k` gives them); `[n, d]`.
    pub fn sparse_matmul(values: &Tensor, indices: &Tensor, table: &Tensor) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::sparse_matmul(
            &values.0, &indices.0, &table.0,
        )?))
    }

    /// `out[i, j] = lhs[i] · table[indices[i, j]]` (`lhs` `[n, d]`, `indices` i32 `[n, k]`, `table`
    /// `[m, d]`); `[n, k]`: the gradient of `sparse_matmul` with respect to its values.
    pub fn gather_dot(lhs: &Tensor, indices: &Tensor, table: &Tensor) -> Result<Tensor> {
        Ok(Tensor(wit::Tensor::gather_dot(
            &lhs.0, &indices.0, &table.0,
        )?))
    }

    /// `out[r] = Σ_{indices[i, j] = r} values[i, j] · rhs[i]` (`values`, `indices` `[n, k]`, `rhs`
    /// `[n, d]`); `[rows, d]`: the gradient of `sparse_matmul` with respect to its table.
    pub fn scatter_outer(
        values: &Tensor,
        indices: &Tensor,
        rhs: &Tensor,
        rows: usize,
    ) -> Result<Tensor> {
        let rows = u32::try_from(rows).unwrap_or(u32::MAX);
        Ok(Tensor(wit::Tensor::scatter_outer(
            &values.0, &indices.0, &rhs.0, rows,
        )?))
    }

    /// Joins tensors along `axis`.
    pub fn concat(parts: &[&Tensor], axis_: isize) -> Result<Tensor> {
        let raw: Vec<&wit::Tensor> = parts.iter().map(|t| &t.0).collect();
        Ok(Tensor(wit::Tensor::concat(&raw, axis(axis_))?))
    }

    // ---- facts ----

    pub fn shape(&self) -> Vec<usize> {
        self.0.shape().into_iter().map(|d| d as usize).collect()
    }

    pub fn numel(&self) -> usize {
        self.0.numel() as usize
    }

    pub fn dtype(&self) -> DType {
        match self.0.dtype() {
            WitDtype::F32 => DType::F32,
            WitDtype::S32 => DType::I32,
        }
    }

    // ---- element-wise ----

    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        Ok(Tensor(self.0.unary(op)?))
    }

    unary_methods! {
        relu => Relu,
        /// GELU, tanh approximation (GPT-2's `gelu_new`).
        gelu_tanh => GeluTanh,
        /// GELU through the error function.
        gelu_erf => GeluErf,
        exp => Exp,
        log => Log,
        sqrt => Sqrt,
        abs => Abs,
        neg => Neg,
        tanh => Tanh,
        sigmoid => Sigmoid,
    }

    pub fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        Ok(Tensor(self.0.binary(op, &rhs.0)?))
    }

    binary_methods! {
        add => Add,
        sub => Sub,
        mul => Mul,
        div => Div,
        maximum => Maximum,
        minimum => Minimum,
        /// 1.0 where `self > rhs`, else 0.0.
        gt => Greater,
        /// 1.0 where `self < rhs`, else 0.0.
        lt => Less,
        /// 1.0 where `self == rhs`, else 0.0.
        eq => Equal,
    }

    /// `self * mul + add`.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        Ok(Tensor(self.0.affine(mul, add)?))
    }

    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        Ok(Tensor(self.0.clamp(min, max)?))
    }

    /// Where `self` is non-zero take `on_true`, else `on_false`.
    pub fn select(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        Ok(Tensor(self.0.select(&on_true.0, &on_false.0)?))
    }

    // ---- products ----

    /// Matrix product over the last two axes (batch axes broadcast).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }

    /// Matrix product with either operand transposed: `matmul_t(w, false, true)` is `self · wᵀ`.
    pub fn matmul_t(
        &self,
        rhs: &Tensor,
        transpose_self: bool,
        transpose_rhs: bool,
    ) -> Result<Tensor> {
        Ok(Tensor(self.0.matmul(
            &rhs.0,
            transpose_self,
            transpose_rhs,
        )?))
    }

    /// `self · weight + bias`, weight `[in, out]` (GPT-2's stored layout).
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        Ok(Tensor(self.0.linear(&weight.0, bias.map(|b| &b.0))?))
    }

    // ---- reductions and normalisations ----

    pub fn reduce(&self, op: ReduceOp, axis_: isize, keepdim: bool) -> Result<Tensor> {
        Ok(Tensor(self.0.reduce(op, axis(axis_), keepdim)?))
    }

    reduce_methods! {
        sum => Sum,
        mean => Mean,
        max => Max,
        min => Min,
        /// `sqrt(sum(x²))` along the axis.
        l2_norm => L2Norm,
    }

    /// Sum of every element, as an f32 read back from the host.
    pub fn sum_all(&self) -> Result<f32> {
        self.reshape(&[self.numel()])?.sum(0, false)?.item()
    }

    /// Mean of every element, as an f32 read back from the host.
    pub fn mean_all(&self) -> Result<f32> {
        self.reshape(&[self.numel()])?.mean(0, false)?.item()
    }

    /// i32 indices of the largest values along `axis`.
    pub fn argmax(&self, axis_: isize, keepdim: bool) -> Result<Tensor> {
        Ok(Tensor(self.0.argmax(axis(axis_), keepdim)?))
    }

    pub fn softmax(&self, axis_: isize) -> Result<Tensor> {
        Ok(Tensor(self.0.softmax(axis(axis_))?))
    }

    pub fn log_softmax(&self, axis_: isize) -> Result<Tensor> {
        Ok(Tensor(self.0.log_softmax(axis(axis_))?))
    }

    /// Layer norm over the last axis.
    pub fn layer_norm(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
        Ok(Tensor(self.0.layer_norm(&weight.0, &bias.0, eps)?))
    }

    /// Rows of this `[n, d]` table at i32 `ids`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor(self.0.embedding(&ids.0)?))
    }

    /// Attention weights `softmax(scale · q · kᵀ)` per head: `self` is the queries
    /// `[batch, query, head, d_head]`, `k` is `[batch, key, head, d_head]`; gives `[batch, head, query, key]`.
    pub fn attention_pattern(&self, k: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
        Ok(Tensor(self.0.attention_pattern(&k.0, scale, causal)?))
    }

    /// `z = pattern · v` per head: `self` is the pattern `[batch, head, query, key]`, `v` is
    /// `[batch, key, head, d_head]`; gives `[batch, query, head, d_head]`.
    pub fn attention_values(&self, v: &Tensor) -> Result<Tensor> {
        Ok(Tensor(self.0.attention_values(&v.0)?))
    }

    /// Entries above the causal diagonal of the last two axes set to `fill`.
    pub fn causal_mask(&self, fill: f32) -> Result<Tensor> {
        Ok(Tensor(self.0.causal_mask(fill)?))
    }

    /// Each row (last axis) with all but its `k` largest entries set to 0 (ties keep the lower index):
    /// the TopK activation; on a batch flattened to one row, BatchTopK.
    pub fn keep_top_k(&self, k: usize) -> Result<Tensor> {
        Ok(Tensor(
            self.0.keep_top_k(u32::try_from(k).unwrap_or(u32::MAX))?,
        ))
    }

    /// The `k` largest values along the last axis (descending) and their i32 indices.
    pub fn top_k(&self, k: usize) -> Result<(Tensor, Tensor)> {
        let (values, indices) = self.0.top_k(u32::try_from(k).unwrap_or(u32::MAX))?;
        Ok((Tensor(values), Tensor(indices)))
    }

    // ---- layout ----

    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor(self.0.reshape(&dims(shape))?))
    }

    /// All but the last axis merged: `[a, b, .., d]` → `[a·b·.., d]`.
    pub fn flatten_rows(&self) -> Result<Tensor> {
        let shape = self.shape();
        let last = shape.last().copied().unwrap_or(1);
        self.reshape(&[self.numel() / last.max(1), last])
    }

    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        Ok(Tensor(self.0.permute(&dims(axes))?))
    }

    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        Ok(Tensor(self.0.transpose(axis(a), axis(b))?))
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis_: isize, start: usize, end: usize) -> Result<Tensor> {
        let [start, end] = [start, end].map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        Ok(Tensor(self.0.slice(axis(axis_), start, end)?))
    }

    /// Entries at i32 `indices` (1-D) along `axis`.
    pub fn index_select(&self, axis_: isize, indices: &Tensor) -> Result<Tensor> {
        Ok(Tensor(self.0.index_select(axis(axis_), &indices.0)?))
    }

    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        Ok(Tensor(self.0.to_dtype(dtype.into())?))
    }

    // ---- reading back ----

    /// The values, row-major, copied into plugin memory. For small results.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(self.0.to_f32()?)
    }

    pub fn to_vec_i32(&self) -> Result<Vec<i32>> {
        Ok(self.0.to_s32()?)
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        Ok(self.0.item()?)
    }
}
