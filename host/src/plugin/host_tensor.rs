//! The `tensor` interface: every engine op on host-owned tensors, as error values rather than traps.

use loupe_kernels::{AdamConfig, BinaryOp, DType, ReduceOp, Tensor, UnaryOp, guarded};
use wasmtime::component::Resource;

use super::bindings::loupe::plugin::tensor as wit;
use super::bindings::{ApiError, Dtype, ErrorKind};
use super::state::{RunState, TensorEntry, api_error, engine_error};

type Handle = Resource<TensorEntry>;
type Made = wasmtime::Result<Result<Handle, ApiError>>;

/// Reading back more than this many elements is refused: results meant for plugin memory are small.
const MAX_READBACK: usize = 1 << 24;

fn dims(shape: &[u32]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

fn axis(a: i32) -> isize {
    a as isize
}

impl From<wit::UnaryOp> for UnaryOp {
    fn from(op: wit::UnaryOp) -> Self {
        use wit::UnaryOp as W;
        match op {
            W::Relu => UnaryOp::Relu,
            W::GeluTanh => UnaryOp::GeluTanh,
            W::GeluErf => UnaryOp::GeluErf,
            W::Exp => UnaryOp::Exp,
            W::Log => UnaryOp::Log,
            W::Sqrt => UnaryOp::Sqrt,
            W::Abs => UnaryOp::Abs,
            W::Neg => UnaryOp::Neg,
            W::Tanh => UnaryOp::Tanh,
            W::Sigmoid => UnaryOp::Sigmoid,
        }
    }
}

impl From<wit::BinaryOp> for BinaryOp {
    fn from(op: wit::BinaryOp) -> Self {
        use wit::BinaryOp as W;
        match op {
            W::Add => BinaryOp::Add,
            W::Sub => BinaryOp::Sub,
            W::Mul => BinaryOp::Mul,
            W::Div => BinaryOp::Div,
            W::Maximum => BinaryOp::Max,
            W::Minimum => BinaryOp::Min,
            W::Greater => BinaryOp::Greater,
            W::Less => BinaryOp::Less,
            W::Equal => BinaryOp::Equal,
        }
    }
}

impl From<wit::ReduceOp> for ReduceOp {
    fn from(op: wit::ReduceOp) -> Self {
        use wit::ReduceOp as W;
        match op {
            W::Sum => ReduceOp::Sum,
            W::Mean => ReduceOp::Mean,
            W::Max => ReduceOp::Max,
            W::Min => ReduceOp::Min,
            W::L2Norm => ReduceOp::L2Norm,
        }
    }
}

impl From<Dtype> for DType {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::F32 => DType::F32,
            Dtype::S32 => DType::I32,
        }
    }
}

impl RunState {
    /// Runs one op on the run's behalf and hands its result out. The engine reserves every output
    /// against what is left of the run's tensor quota before allocating it, and long work stops at the
    /// run's deadline or cancel (see [`RunState::guarded`]).
    fn make(&mut self, op: &str, compute: impl FnOnce() -> loupe_kernels::Result<Tensor>) -> Made {
        match self.guarded(compute) {
            Ok(t) => self.hand_out(op, t),
            Err(e) => Ok(Err(self.op_error(op, e))),
        }
    }

    /// An engine error as the plugin sees it: a result over the budget reads as the run's quota.
    fn op_error(&self, op: &str, e: loupe_kernels::Error) -> ApiError {
        match e {
            loupe_kernels::Error::OverBudget {
                shape,
                bytes,
                remaining,
                ..
            } => self
                .quota
                .check_for(op, format_args!("a {shape} tensor"), bytes)
                .err()
                // The op's outputs and scratch together, rather than this one alone, broke it.
                .unwrap_or_else(|| {
                    api_error(
                        ErrorKind::OutOfQuota,
                        op,
                        format!(
                            "its results and scratch space need more than the {} MiB left of the \
                             run's tensor quota; drop tensors or raise [run.limits] tensor_mb",
                            remaining >> 20
                        ),
                    )
                }),
            e => engine_error(op, e),
        }
    }

    /// `compute` under the run's remaining tensor quota and its stop signal.
    fn guarded<R>(
        &self,
        compute: impl FnOnce() -> loupe_kernels::Result<R>,
    ) -> loupe_kernels::Result<R> {
        let left = self.quota.limit().saturating_sub(self.quota.used());
        guarded(Some(left), self.stop.clone(), compute).0
    }
}

impl wit::Host for RunState {}

impl wit::HostTensor for RunState {
    fn from_f32(&mut self, data: Vec<f32>, shape: Vec<u32>) -> Made {
        let device = self.ctx.device;
        self.make("tensor.from-f32", || {
            Tensor::from_vec_f32(data, dims(&shape), device)
        })
    }

    fn from_s32(&mut self, data: Vec<i32>, shape: Vec<u32>) -> Made {
        let device = self.ctx.device;
        self.make("tensor.from-s32", || {
            Tensor::from_vec_i32(data, dims(&shape), device)
        })
    }

    fn full(&mut self, shape: Vec<u32>, value: f32) -> Made {
        let device = self.ctx.device;
        self.make("tensor.full", || Tensor::full(dims(&shape), value, device))
    }

    fn randn(&mut self, shape: Vec<u32>, mean: f32, std: f32, seed: u64) -> Made {
        let device = self.ctx.device;
        self.make("tensor.randn", || {
            Tensor::randn(dims(&shape), mean, std, seed, device)
        })
    }

    fn rand_uniform(&mut self, shape: Vec<u32>, low: f32, high: f32, seed: u64) -> Made {
        let device = self.ctx.device;
        self.make("tensor.rand-uniform", || {
            Tensor::rand_uniform(dims(&shape), low, high, seed, device)
        })
    }

    fn adam_step(
        &mut self,
        param: Handle,
        grad: Handle,
        m: Handle,
        v: Handle,
        config: wit::AdamConfig,
        step: u64,
    ) -> wasmtime::Result<Result<(Handle, Handle, Handle), ApiError>> {
        const OP: &str = "tensor.adam-step";
        let [param, grad, m, v] = [&param, &grad, &m, &v].map(|h| self.tensor(h));
        let (param, grad, m, v) = (param?, grad?, m?, v?);
        let config = AdamConfig {
            lr: config.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
        };
        let (p, m, v) =
            match self.guarded(|| Tensor::adam_step(&param, &grad, &m, &v, config, step)) {
                Ok(out) => out,
                Err(e) => return Ok(Err(self.op_error(OP, e))),
            };
        Ok(self.hand_out_all(OP, vec![p, m, v])?.map(|mut h| {
            let v = h.pop().expect("three handles");
            let m = h.pop().expect("three handles");
            let p = h.pop().expect("three handles");
            (p, m, v)
        }))
    }

    fn concat(&mut self, parts: Vec<Handle>, axis_: i32) -> Made {
        let tensors = parts
            .iter()
            .map(|p| self.tensor(p))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        self.make("tensor.concat", || {
            let refs: Vec<&Tensor> = tensors.iter().collect();
            Tensor::concat(&refs, axis(axis_))
        })
    }

    fn solve_spd(&mut self, a: Handle, b: Handle) -> Made {
        let (a, b) = (self.tensor(&a)?, self.tensor(&b)?);
        self.make("tensor.solve-spd", || Tensor::solve_spd(&a, &b))
    }

    fn sparse_matmul(&mut self, values: Handle, indices: Handle, table: Handle) -> Made {
        let (v, i, t) = (
            self.tensor(&values)?,
            self.tensor(&indices)?,
            self.tensor(&table)?,
        );
        self.make("tensor.sparse-matmul", || Tensor::sparse_matmul(&v, &i, &t))
    }

    fn gather_dot(&mut self, lhs: Handle, indices: Handle, table: Handle) -> Made {
        let (x, i, t) = (
            self.tensor(&lhs)?,
            self.tensor(&indices)?,
            self.tensor(&table)?,
        );
        self.make("tensor.gather-dot", || Tensor::gather_dot(&x, &i, &t))
    }

    fn scatter_outer(&mut self, values: Handle, indices: Handle, rhs: Handle, rows: u32) -> Made {
        let (v, i, x) = (
            self.tensor(&values)?,
            self.tensor(&indices)?,
            self.tensor(&rhs)?,
        );
        self.make("tensor.scatter-outer", || {
            Tensor::scatter_outer(&v, &i, &x, rows as usize)
        })
    }

    fn shape(&mut self, this: Handle) -> wasmtime::Result<Vec<u32>> {
        let t = self.tensor(&this)?;
        // Every dimension fits a u32: the engine's shapes are checked against Shape::MAX_DIM.
        Ok(t.dims()
            .iter()
            .map(|&d| u32::try_from(d).unwrap_or(u32::MAX))
            .collect())
    }

    fn dtype(&mut self, this: Handle) -> wasmtime::Result<Dtype> {
        Ok(match self.tensor(&this)?.dtype() {
            DType::F32 => Dtype::F32,
            DType::I32 => Dtype::S32,
        })
    }

    fn numel(&mut self, this: Handle) -> wasmtime::Result<u64> {
        Ok(self.tensor(&this)?.numel() as u64)
    }

    fn unary(&mut self, this: Handle, op: wit::UnaryOp) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.unary", || x.unary(op.into()))
    }

    fn binary(&mut self, this: Handle, op: wit::BinaryOp, rhs: Handle) -> Made {
        let (a, b) = (self.tensor(&this)?, self.tensor(&rhs)?);
        self.make("tensor.binary", || a.binary(op.into(), &b))
    }

    fn affine(&mut self, this: Handle, mul: f32, add: f32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.affine", || x.affine(mul, add))
    }

    fn clamp(&mut self, this: Handle, min: f32, max: f32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.clamp", || x.clamp(min, max))
    }

    fn select(&mut self, this: Handle, on_true: Handle, on_false: Handle) -> Made {
        let (c, t, f) = (
            self.tensor(&this)?,
            self.tensor(&on_true)?,
            self.tensor(&on_false)?,
        );
        self.make("tensor.select", || c.where_(&t, &f))
    }

    fn matmul(&mut self, this: Handle, rhs: Handle, ta: bool, tb: bool) -> Made {
        let (a, b) = (self.tensor(&this)?, self.tensor(&rhs)?);
        self.make("tensor.matmul", || a.matmul_t(&b, ta, tb))
    }

    fn linear(&mut self, this: Handle, weight: Handle, bias: Option<Handle>) -> Made {
        let (x, w) = (self.tensor(&this)?, self.tensor(&weight)?);
        let bias = bias.map(|b| self.tensor(&b)).transpose()?;
        self.make("tensor.linear", || x.linear(&w, bias.as_ref()))
    }

    fn reduce(&mut self, this: Handle, op: wit::ReduceOp, axis_: i32, keepdim: bool) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.reduce", || {
            x.reduce(op.into(), axis(axis_), keepdim)
        })
    }

    fn argmax(&mut self, this: Handle, axis_: i32, keepdim: bool) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.argmax", || x.argmax(axis(axis_), keepdim))
    }

    fn softmax(&mut self, this: Handle, axis_: i32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.softmax", || x.softmax(axis(axis_)))
    }

    fn log_softmax(&mut self, this: Handle, axis_: i32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.log-softmax", || x.log_softmax(axis(axis_)))
    }

    fn layer_norm(&mut self, this: Handle, weight: Handle, bias: Handle, eps: f32) -> Made {
        let (x, w, b) = (
            self.tensor(&this)?,
            self.tensor(&weight)?,
            self.tensor(&bias)?,
        );
        self.make("tensor.layer-norm", || x.layer_norm(&w, &b, eps))
    }

    fn embedding(&mut self, this: Handle, ids: Handle) -> Made {
        let (table, ids) = (self.tensor(&this)?, self.tensor(&ids)?);
        self.make("tensor.embedding", || table.embedding(&ids))
    }

    fn attention_pattern(&mut self, this: Handle, k: Handle, scale: f32, causal: bool) -> Made {
        let (q, k) = (self.tensor(&this)?, self.tensor(&k)?);
        self.make("tensor.attention-pattern", || {
            q.attention_pattern(&k, scale, causal)
        })
    }

    fn attention_values(&mut self, this: Handle, v: Handle) -> Made {
        let (pattern, v) = (self.tensor(&this)?, self.tensor(&v)?);
        self.make("tensor.attention-values", || pattern.attention_values(&v))
    }

    fn causal_mask(&mut self, this: Handle, fill: f32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.causal-mask", || x.causal_mask(fill))
    }

    fn keep_top_k(&mut self, this: Handle, k: u32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.keep-top-k", || x.keep_top_k(k as usize))
    }

    fn top_k(
        &mut self,
        this: Handle,
        k: u32,
    ) -> wasmtime::Result<Result<(Handle, Handle), ApiError>> {
        const OP: &str = "tensor.top-k";
        let x = self.tensor(&this)?;
        let (values, indices) = match self.guarded(|| x.top_k(k as usize)) {
            Ok(pair) => pair,
            Err(e) => return Ok(Err(self.op_error(OP, e))),
        };
        Ok(self.hand_out_all(OP, vec![values, indices])?.map(|mut h| {
            let indices = h.pop().expect("two handles");
            let values = h.pop().expect("two handles");
            (values, indices)
        }))
    }

    fn reshape(&mut self, this: Handle, shape: Vec<u32>) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.reshape", || x.reshape(dims(&shape)))
    }

    fn permute(&mut self, this: Handle, axes: Vec<u32>) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.permute", || x.permute(&dims(&axes)))
    }

    fn transpose(&mut self, this: Handle, a: i32, b: i32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.transpose", || x.transpose(axis(a), axis(b)))
    }

    fn slice(&mut self, this: Handle, axis_: i32, start: u32, end: u32) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.slice", || {
            x.slice(axis(axis_), start as usize, end as usize)
        })
    }

    fn index_select(&mut self, this: Handle, axis_: i32, indices: Handle) -> Made {
        let (x, idx) = (self.tensor(&this)?, self.tensor(&indices)?);
        self.make("tensor.index-select", || x.index_select(axis(axis_), &idx))
    }

    fn to_dtype(&mut self, this: Handle, dtype: Dtype) -> Made {
        let x = self.tensor(&this)?;
        self.make("tensor.to-dtype", || x.to_dtype(dtype.into()))
    }

    fn to_f32(&mut self, this: Handle) -> wasmtime::Result<Result<Vec<f32>, ApiError>> {
        const OP: &str = "tensor.to-f32";
        let t = self.tensor(&this)?;
        if let Err(e) = readback_fits(OP, &t) {
            return Ok(Err(e));
        }
        Ok(self
            .guarded(|| t.to_dtype(DType::F32).and_then(|t| t.to_vec_f32()))
            .map_err(|e| self.op_error(OP, e)))
    }

    fn to_s32(&mut self, this: Handle) -> wasmtime::Result<Result<Vec<i32>, ApiError>> {
        const OP: &str = "tensor.to-s32";
        let t = self.tensor(&this)?;
        if let Err(e) = readback_fits(OP, &t) {
            return Ok(Err(e));
        }
        Ok(self
            .guarded(|| t.to_dtype(DType::I32).and_then(|t| t.to_vec_i32()))
            .map_err(|e| self.op_error(OP, e)))
    }

    fn item(&mut self, this: Handle) -> wasmtime::Result<Result<f32, ApiError>> {
        const OP: &str = "tensor.item";
        let t = self.tensor(&this)?;
        Ok(self
            .guarded(|| t.to_dtype(DType::F32).and_then(|t| t.to_scalar_f32()))
            .map_err(|e| self.op_error(OP, e)))
    }

    fn drop(&mut self, this: Handle) -> wasmtime::Result<()> {
        self.release(this)
    }
}

fn readback_fits(op: &str, t: &Tensor) -> Result<(), ApiError> {
    if t.numel() > MAX_READBACK {
        return Err(api_error(
            ErrorKind::OutOfQuota,
            op,
            format!(
                "{:?} has {} elements; read back at most {MAX_READBACK} (reduce or slice on the host first)",
                t.dims(),
                t.numel()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::limits::Limits;
    use crate::plugin::state::RunContext;
    use wit::HostTensor as _;

    fn state(tensor_mb: u64) -> RunState {
        let limits = Limits {
            tensor_mb,
            ..Limits::default()
        };
        RunState::new(RunContext::inert(), &limits)
    }

    fn made(r: Made) -> Handle {
        r.expect("no trap").expect("no API error")
    }

    fn borrow(h: &Handle) -> Handle {
        Resource::new_borrow(h.rep())
    }

    fn values(s: &mut RunState, h: &Handle) -> Vec<f32> {
        s.to_f32(borrow(h)).unwrap().unwrap()
    }

    #[test]
    fn ops_reach_the_engine_and_come_back() {
        let mut s = state(64);
        let a = made(s.from_f32(vec![1.0, -2.0, 3.0, -4.0], vec![2, 2]));
        let b = made(s.from_f32(vec![10.0, 20.0], vec![2]));
        let relu = made(s.unary(borrow(&a), wit::UnaryOp::Relu));
        assert_eq!(values(&mut s, &relu), [1.0, 0.0, 3.0, 0.0]);
        let sum = made(s.binary(borrow(&a), wit::BinaryOp::Add, borrow(&b)));
        assert_eq!(values(&mut s, &sum), [11.0, 18.0, 13.0, 16.0]);
        let gt = made(s.binary(borrow(&a), wit::BinaryOp::Greater, borrow(&relu)));
        assert_eq!(values(&mut s, &gt), [0.0, 0.0, 0.0, 0.0]);
        let mm = made(s.matmul(borrow(&a), borrow(&a), false, true));
        assert_eq!(values(&mut s, &mm), [5.0, 11.0, 11.0, 25.0]);
        let rows = made(s.reduce(borrow(&a), wit::ReduceOp::Sum, -1, false));
        assert_eq!(values(&mut s, &rows), [-1.0, -1.0]);
        let (v, i) = s.top_k(borrow(&a), 1).unwrap().unwrap();
        assert_eq!(values(&mut s, &v), [1.0, 3.0]);
        assert_eq!(s.to_s32(borrow(&i)).unwrap().unwrap(), [0, 0]);
        let q = made(s.randn(vec![1, 3, 2, 4], 0.0, 1.0, 7));
        let pattern = made(s.attention_pattern(borrow(&q), borrow(&q), 0.5, true));
        assert_eq!(s.shape(borrow(&pattern)).unwrap(), [1, 2, 3, 3]);
        let z = made(s.attention_values(borrow(&pattern), borrow(&q)));
        assert_eq!(s.shape(borrow(&z)).unwrap(), [1, 3, 2, 4]);
        assert_eq!(
            s.item(borrow(&rows)).unwrap().unwrap_err().op,
            "tensor.item"
        );
    }

    #[test]
    fn bad_calls_are_error_values_naming_the_op() {
        let mut s = state(64);
        let a = made(s.full(vec![2, 3], 1.0));
        let b = made(s.full(vec![4], 1.0));
        let e = s
            .binary(borrow(&a), wit::BinaryOp::Add, borrow(&b))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeMismatch);
        assert_eq!(e.op, "tensor.binary");
        assert!(
            e.message.contains("[2, 3]") && e.message.contains("[4]"),
            "{}",
            e.message
        );
        let e = s
            .reduce(borrow(&a), wit::ReduceOp::Max, 5, false)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = s.from_f32(vec![1.0; 3], vec![2, 2]).unwrap().unwrap_err();
        assert_eq!(e.op, "tensor.from-f32");
    }

    #[test]
    fn solve_spd_solves_and_names_its_op() {
        let mut s = state(64);
        let a = made(s.from_f32(vec![2.0, 1.0, 1.0, 3.0], vec![2, 2]));
        let b = made(s.from_f32(vec![3.0, 4.0], vec![2, 1]));
        let x = made(s.solve_spd(borrow(&a), borrow(&b)));
        let x = values(&mut s, &x);
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
            "{x:?}"
        );

        let not_pd = made(s.from_f32(vec![1.0, 2.0, 2.0, 1.0], vec![2, 2]));
        let e = s
            .solve_spd(borrow(&not_pd), borrow(&b))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::InvalidArgument, "tensor.solve-spd")
        );
        assert!(
            e.message.starts_with("a [2, 2] is not positive definite")
                && e.message.contains("ridge"),
            "{}",
            e.message
        );
        let e = s.solve_spd(borrow(&a), borrow(&a)).unwrap();
        assert!(e.is_ok(), "[2, 2] right-hand sides are fine");
        let vector = made(s.from_f32(vec![3.0, 4.0], vec![2]));
        let e = s
            .solve_spd(borrow(&a), borrow(&vector))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeMismatch);

        // The result is refused before it is computed: 512 KiB of b and as much of x exceed 1 MiB.
        let mut s = state(1);
        let a = made(s.from_f32(vec![2.0, 1.0, 1.0, 3.0], vec![2, 2]));
        let b = made(s.full(vec![2, 1 << 16], 1.0));
        let e = s.solve_spd(borrow(&a), borrow(&b)).unwrap().unwrap_err();
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::OutOfQuota, "tensor.solve-spd")
        );
    }

    #[test]
    fn sparse_code_products_compute_and_name_their_ops() {
        let mut s = state(64);
        // Codes [2, 2] into a table [3, 2]; row 1 names table row 2 twice.
        let codes = made(s.from_f32(vec![1.0, 2.0, 0.5, 0.5], vec![2, 2]));
        let indices = made(s.from_s32(vec![0, 1, 2, 2], vec![2, 2]));
        let table = made(s.from_f32(vec![1.0, 0.0, 0.0, 1.0, 2.0, 2.0], vec![3, 2]));
        let out = made(s.sparse_matmul(borrow(&codes), borrow(&indices), borrow(&table)));
        assert_eq!(s.shape(borrow(&out)).unwrap(), [2, 2]);
        assert_eq!(values(&mut s, &out), [1.0, 2.0, 2.0, 2.0]);
        let lhs = made(s.from_f32(vec![1.0, -1.0, 3.0, 1.0], vec![2, 2]));
        let dots = made(s.gather_dot(borrow(&lhs), borrow(&indices), borrow(&table)));
        assert_eq!(values(&mut s, &dots), [1.0, -1.0, 8.0, 8.0]);
        let grad = made(s.scatter_outer(borrow(&codes), borrow(&indices), borrow(&lhs), 4));
        assert_eq!(s.shape(borrow(&grad)).unwrap(), [4, 2]);
        assert_eq!(
            values(&mut s, &grad),
            [1.0, -1.0, 2.0, -2.0, 3.0, 1.0, 0.0, 0.0]
        );

        // Engine errors come back as error values naming the op, once.
        let e = s
            .sparse_matmul(borrow(&codes), borrow(&indices), borrow(&lhs))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::InvalidArgument, "tensor.sparse-matmul")
        );
        assert!(
            e.message
                .starts_with("index 2 at indices[1, 0] is out of range"),
            "{}",
            e.message
        );
        let e = s
            .gather_dot(borrow(&lhs), borrow(&indices), borrow(&codes))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::InvalidArgument, "tensor.gather-dot")
        );
        let e = s
            .scatter_outer(borrow(&indices), borrow(&indices), borrow(&lhs), 4)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::DtypeMismatch, "tensor.scatter-outer")
        );
        let column = made(s.from_f32(vec![1.0, 2.0, 3.0], vec![3, 1]));
        let e = s
            .gather_dot(borrow(&lhs), borrow(&indices), borrow(&column))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeMismatch);
        assert!(!e.message.starts_with("gather_dot"), "{}", e.message);

        // The result is refused before it is computed: [2^17, 2] floats are 1 MiB, over the quota
        // together with the inputs.
        let mut s = state(1);
        let codes = made(s.from_f32(vec![1.0], vec![1, 1]));
        let indices = made(s.from_s32(vec![0], vec![1, 1]));
        let rhs = made(s.from_f32(vec![1.0, 2.0], vec![1, 2]));
        let e = s
            .scatter_outer(borrow(&codes), borrow(&indices), borrow(&rhs), 1 << 17)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.kind, e.op.as_str()),
            (ErrorKind::OutOfQuota, "tensor.scatter-outer")
        );
    }

    #[test]
    fn the_quota_counts_live_tensors_and_drops_free_them() {
        let mut s = state(1);
        // 1 MiB quota: a 768 KiB tensor fits, a second does not until the first is dropped.
        let big = made(s.full(vec![192 * 1024], 0.0));
        let e = s.full(vec![192 * 1024], 0.0).unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfQuota);
        assert!(e.message.contains("tensor_mb"), "{}", e.message);
        // Results are refused before they are computed: a broadcast that would blow up.
        let col = made(s.full(vec![1024, 1], 0.0));
        let row = made(s.full(vec![1, 1024], 0.0));
        let e = s
            .binary(borrow(&col), wit::BinaryOp::Add, borrow(&row))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfQuota);
        s.drop(big).unwrap();
        made(s.full(vec![192 * 1024], 0.0));
        // Shapes whose size overflows are refused, not allocated.
        let e = s.full(vec![u32::MAX; 4], 0.0).unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfQuota);
    }
}
