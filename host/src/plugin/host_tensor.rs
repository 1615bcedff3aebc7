//! The `tensor` interface: every engine op on host-owned tensors, as error values rather than traps.

use loupe_kernels::{BinaryOp, DType, ReduceOp, Shape, Tensor, UnaryOp};
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

/// The bytes a `shape` of 4-byte elements needs, or an error if it cannot even be counted.
fn bytes_of(op: &str, shape: &[usize]) -> Result<u64, ApiError> {
    shape
        .iter()
        .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| {
            api_error(
                ErrorKind::OutOfQuota,
                op,
                format!("{shape:?} is too large to allocate"),
            )
        })
}

impl RunState {
    /// Refuses an op whose result would break the quota before any memory is touched.
    fn precheck(&self, op: &str, shape: &[usize]) -> Result<(), ApiError> {
        let bytes = bytes_of(op, shape)?;
        self.quota.check(op, shape, bytes)
    }

    /// Runs an op that makes one tensor and hands the result out.
    fn make(&mut self, op: &str, result: loupe_kernels::Result<Tensor>) -> Made {
        match result {
            Ok(t) => self.hand_out(op, t),
            Err(e) => Ok(Err(engine_error(op, e))),
        }
    }

    /// Like [`Self::make`], after checking that the result's shape fits the quota.
    fn make_sized(
        &mut self,
        op: &str,
        out_shape: Option<Vec<usize>>,
        compute: impl FnOnce() -> loupe_kernels::Result<Tensor>,
    ) -> Made {
        if let Some(shape) = out_shape
            && let Err(e) = self.precheck(op, &shape)
        {
            return Ok(Err(e));
        }
        let result = compute();
        self.make(op, result)
    }
}

/// The output shape of a broadcast, if the shapes broadcast (the op reports the error otherwise).
fn broadcast(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let mut out = Shape::new(shapes.first()?.to_vec());
    for s in &shapes[1..] {
        out = Shape::broadcast("broadcast", &out, &Shape::new(s.to_vec())).ok()?;
    }
    Some(out.dims().to_vec())
}

/// The output shape of a (batched) matmul, if the operands fit.
fn matmul_shape(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Option<Vec<usize>> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ra, rb) = (a.len(), b.len());
    let m = if ta { a[ra - 1] } else { a[ra - 2] };
    let n = if tb { b[rb - 2] } else { b[rb - 1] };
    let mut out = broadcast(&[&a[..ra - 2], &b[..rb - 2]])?;
    out.extend([m, n]);
    Some(out)
}

impl wit::Host for RunState {}

impl wit::HostTensor for RunState {
    fn from_f32(&mut self, data: Vec<f32>, shape: Vec<u32>) -> Made {
        let shape = dims(&shape);
        let result = Tensor::from_vec_f32(data, shape, self.ctx.device);
        self.make("tensor.from-f32", result)
    }

    fn from_s32(&mut self, data: Vec<i32>, shape: Vec<u32>) -> Made {
        let shape = dims(&shape);
        let result = Tensor::from_vec_i32(data, shape, self.ctx.device);
        self.make("tensor.from-s32", result)
    }

    fn full(&mut self, shape: Vec<u32>, value: f32) -> Made {
        let shape = dims(&shape);
        let device = self.ctx.device;
        self.make_sized("tensor.full", Some(shape.clone()), || {
            Tensor::full(shape, value, device)
        })
    }

    fn randn(&mut self, shape: Vec<u32>, mean: f32, std: f32, seed: u64) -> Made {
        let shape = dims(&shape);
        let device = self.ctx.device;
        self.make_sized("tensor.randn", Some(shape.clone()), || {
            Tensor::randn(shape, mean, std, seed, device)
        })
    }

    fn rand_uniform(&mut self, shape: Vec<u32>, low: f32, high: f32, seed: u64) -> Made {
        let shape = dims(&shape);
        let device = self.ctx.device;
        self.make_sized("tensor.rand-uniform", Some(shape.clone()), || {
            Tensor::rand_uniform(shape, low, high, seed, device)
        })
    }

    fn concat(&mut self, parts: Vec<Handle>, axis_: i32) -> Made {
        let tensors = parts
            .iter()
            .map(|p| self.tensor(p))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let result = Tensor::concat(&refs, axis(axis_));
        self.make("tensor.concat", result)
    }

    fn shape(&mut self, this: Handle) -> wasmtime::Result<Vec<u32>> {
        let t = self.tensor(&this)?;
        Ok(t.dims().iter().map(|&d| d as u32).collect())
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
        let result = self.tensor(&this)?.unary(op.into());
        self.make("tensor.unary", result)
    }

    fn binary(&mut self, this: Handle, op: wit::BinaryOp, rhs: Handle) -> Made {
        let (a, b) = (self.tensor(&this)?, self.tensor(&rhs)?);
        self.make_sized("tensor.binary", broadcast(&[a.dims(), b.dims()]), || {
            a.binary(op.into(), &b)
        })
    }

    fn affine(&mut self, this: Handle, mul: f32, add: f32) -> Made {
        let result = self.tensor(&this)?.affine(mul, add);
        self.make("tensor.affine", result)
    }

    fn clamp(&mut self, this: Handle, min: f32, max: f32) -> Made {
        let result = self.tensor(&this)?.clamp(min, max);
        self.make("tensor.clamp", result)
    }

    fn select(&mut self, this: Handle, on_true: Handle, on_false: Handle) -> Made {
        let (c, t, f) = (
            self.tensor(&this)?,
            self.tensor(&on_true)?,
            self.tensor(&on_false)?,
        );
        self.make_sized(
            "tensor.select",
            broadcast(&[c.dims(), t.dims(), f.dims()]),
            || c.where_(&t, &f),
        )
    }

    fn matmul(&mut self, this: Handle, rhs: Handle, ta: bool, tb: bool) -> Made {
        let (a, b) = (self.tensor(&this)?, self.tensor(&rhs)?);
        self.make_sized(
            "tensor.matmul",
            matmul_shape(a.dims(), b.dims(), ta, tb),
            || a.matmul_t(&b, ta, tb),
        )
    }

    fn linear(&mut self, this: Handle, weight: Handle, bias: Option<Handle>) -> Made {
        let (x, w) = (self.tensor(&this)?, self.tensor(&weight)?);
        let bias = bias.map(|b| self.tensor(&b)).transpose()?;
        let out = matmul_shape(x.dims(), w.dims(), false, false);
        self.make_sized("tensor.linear", out, || x.linear(&w, bias.as_ref()))
    }

    fn reduce(&mut self, this: Handle, op: wit::ReduceOp, axis_: i32, keepdim: bool) -> Made {
        let result = self.tensor(&this)?.reduce(op.into(), axis(axis_), keepdim);
        self.make("tensor.reduce", result)
    }

    fn argmax(&mut self, this: Handle, axis_: i32, keepdim: bool) -> Made {
        let result = self.tensor(&this)?.argmax(axis(axis_), keepdim);
        self.make("tensor.argmax", result)
    }

    fn softmax(&mut self, this: Handle, axis_: i32) -> Made {
        let result = self.tensor(&this)?.softmax(axis(axis_));
        self.make("tensor.softmax", result)
    }

    fn log_softmax(&mut self, this: Handle, axis_: i32) -> Made {
        let result = self.tensor(&this)?.log_softmax(axis(axis_));
        self.make("tensor.log-softmax", result)
    }

    fn layer_norm(&mut self, this: Handle, weight: Handle, bias: Handle, eps: f32) -> Made {
        let (x, w, b) = (
            self.tensor(&this)?,
            self.tensor(&weight)?,
            self.tensor(&bias)?,
        );
        let result = x.layer_norm(&w, &b, eps);
        self.make("tensor.layer-norm", result)
    }

    fn embedding(&mut self, this: Handle, ids: Handle) -> Made {
        let (table, ids) = (self.tensor(&this)?, self.tensor(&ids)?);
        let mut out = ids.dims().to_vec();
        out.push(table.dims().last().copied().unwrap_or(0));
        self.make_sized("tensor.embedding", Some(out), || table.embedding(&ids))
    }

    fn top_k(
        &mut self,
        this: Handle,
        k: u32,
    ) -> wasmtime::Result<Result<(Handle, Handle), ApiError>> {
        const OP: &str = "tensor.top-k";
        let (values, indices) = match self.tensor(&this)?.top_k(k as usize) {
            Ok(pair) => pair,
            Err(e) => return Ok(Err(engine_error(OP, e))),
        };
        let values = match self.hand_out(OP, values)? {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        match self.hand_out(OP, indices)? {
            Ok(indices) => Ok(Ok((values, indices))),
            Err(e) => {
                self.release(values)?;
                Ok(Err(e))
            }
        }
    }

    fn reshape(&mut self, this: Handle, shape: Vec<u32>) -> Made {
        let result = self.tensor(&this)?.reshape(dims(&shape));
        self.make("tensor.reshape", result)
    }

    fn permute(&mut self, this: Handle, axes: Vec<u32>) -> Made {
        let result = self.tensor(&this)?.permute(&dims(&axes));
        self.make("tensor.permute", result)
    }

    fn transpose(&mut self, this: Handle, a: i32, b: i32) -> Made {
        let result = self.tensor(&this)?.transpose(axis(a), axis(b));
        self.make("tensor.transpose", result)
    }

    fn slice(&mut self, this: Handle, axis_: i32, start: u32, end: u32) -> Made {
        let result = self
            .tensor(&this)?
            .slice(axis(axis_), start as usize, end as usize);
        self.make("tensor.slice", result)
    }

    fn index_select(&mut self, this: Handle, axis_: i32, indices: Handle) -> Made {
        let (x, idx) = (self.tensor(&this)?, self.tensor(&indices)?);
        let out = x.shape().axis("index_select", axis(axis_)).ok().map(|a| {
            let mut d = x.dims().to_vec();
            d[a] = idx.numel();
            d
        });
        self.make_sized("tensor.index-select", out, || {
            x.index_select(axis(axis_), &idx)
        })
    }

    fn to_dtype(&mut self, this: Handle, dtype: Dtype) -> Made {
        let result = self.tensor(&this)?.to_dtype(dtype.into());
        self.make("tensor.to-dtype", result)
    }

    fn to_f32(&mut self, this: Handle) -> wasmtime::Result<Result<Vec<f32>, ApiError>> {
        const OP: &str = "tensor.to-f32";
        let t = self.tensor(&this)?;
        if let Err(e) = readback_fits(OP, &t) {
            return Ok(Err(e));
        }
        Ok(t.to_dtype(DType::F32)
            .and_then(|t| t.to_vec_f32())
            .map_err(|e| engine_error(OP, e)))
    }

    fn to_s32(&mut self, this: Handle) -> wasmtime::Result<Result<Vec<i32>, ApiError>> {
        const OP: &str = "tensor.to-s32";
        let t = self.tensor(&this)?;
        if let Err(e) = readback_fits(OP, &t) {
            return Ok(Err(e));
        }
        Ok(t.to_dtype(DType::I32)
            .and_then(|t| t.to_vec_i32())
            .map_err(|e| engine_error(OP, e)))
    }

    fn item(&mut self, this: Handle) -> wasmtime::Result<Result<f32, ApiError>> {
        const OP: &str = "tensor.item";
        let t = self.tensor(&this)?;
        Ok(t.to_dtype(DType::F32)
            .and_then(|t| t.to_scalar_f32())
            .map_err(|e| engine_error(OP, e)))
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
