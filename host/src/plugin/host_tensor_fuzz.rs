//! A fuzz-style property test of the tensor interface: random shapes (0, 1, small, huge and
//! overflowing dimensions), random ops and random arguments, many thousands of calls through the same
//! trait the WIT bindings call. Every call must come back as a value or an error value — never a trap,
//! never a panic — and the run must never hold more than its tensor quota.
//!
//! `LOUPE_FUZZ_CALLS` sets the calls per seed (default 6000, over four seeds); a failure prints the
//! seed and the calls that led to it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use wasmtime::component::Resource;

use super::bindings::loupe::plugin::tensor as wit;
use super::bindings::{ApiError, Dtype, ErrorKind};
use super::limits::Limits;
use super::state::{RunContext, RunState, TensorEntry};
use wit::HostTensor as _;

type Handle = Resource<TensorEntry>;

/// SplitMix64: a portable, seedable stream for choosing calls.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// A dimension: mostly small (0 and 1 included), sometimes huge or past every limit.
    fn dim(&mut self) -> u32 {
        if self.chance(8) {
            self.pick(&[1 << 16, 1 << 20, i32::MAX as u32, 1 << 31, u32::MAX])
        } else {
            self.pick(&[0, 1, 1, 2, 2, 3, 3, 4, 5, 7, 8, 16])
        }
    }

    fn shape(&mut self) -> Vec<u32> {
        let rank = self.below(5);
        (0..rank).map(|_| self.dim()).collect()
    }

    fn axis(&mut self) -> i32 {
        self.below(11) as i32 - 5
    }

    fn float(&mut self) -> f32 {
        self.pick(&[
            0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            1e-30,
            1e30,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ])
    }

    /// A count argument (k, rows, slice bounds).
    fn count(&mut self) -> u32 {
        if self.chance(10) {
            self.pick(&[1 << 20, i32::MAX as u32, u32::MAX])
        } else {
            self.below(10) as u32
        }
    }
}

fn borrow(h: &Handle) -> Handle {
    Resource::new_borrow(h.rep())
}

/// One fuzzing session: a run's state, the tensors it holds, and the calls made so far.
struct Session {
    state: RunState,
    pool: Vec<Handle>,
    calls: Vec<String>,
    choices: Choices,
    /// Per op number: calls that made a tensor, calls that came back as an error value.
    made: [u32; OPS],
    refused: [u32; OPS],
    last_op: usize,
}

/// Op numbers `step` chooses from (the last one reads back).
const OPS: usize = 34;
/// The ops [`Session::fitted_call`] can give operands that fit.
const FITTED: [usize; 11] = [5, 6, 7, 8, 14, 15, 20, 21, 22, 23, 30];

/// The most tensors held at once; the oldest are dropped past it.
const POOL: usize = 24;
const QUOTA_MB: u64 = 64;

impl Session {
    fn new(seed: u64) -> Self {
        let limits = Limits {
            tensor_mb: QUOTA_MB,
            ..Limits::default()
        };
        Session {
            state: RunState::new(RunContext::inert(), &limits),
            pool: Vec::new(),
            calls: Vec::new(),
            choices: Choices(seed),
            made: [0; OPS],
            refused: [0; OPS],
            last_op: 0,
        }
    }

    /// Records a call about to be made (and prints it with `LOUPE_FUZZ_TRACE` set).
    fn note(&mut self, call: String) {
        if std::env::var_os("LOUPE_FUZZ_TRACE").is_some() {
            eprintln!("{call}");
        }
        self.calls.push(call);
    }

    fn any(&mut self) -> Option<Handle> {
        if self.pool.is_empty() {
            return None;
        }
        let i = self.choices.below(self.pool.len());
        Some(borrow(&self.pool[i]))
    }

    fn keep(&mut self, h: Handle) {
        self.pool.push(h);
        if self.pool.len() > POOL {
            let old = self.pool.remove(0);
            self.state.drop(old).expect("dropping a held handle");
        }
    }

    /// Makes a tensor from host data of a small random shape (sometimes with the wrong length).
    fn make_from_data(&mut self) -> wasmtime::Result<Result<Handle, ApiError>> {
        let shape: Vec<u32> = (0..self.choices.below(4))
            .map(|_| self.choices.pick(&[0, 1, 2, 3, 4, 6]))
            .collect();
        let numel: usize = shape.iter().map(|&d| d as usize).product();
        let len = if self.choices.chance(10) {
            self.choices.below(8)
        } else {
            numel
        };
        self.calls
            .push(format!("from-data {shape:?} with {len} values"));
        if self.choices.chance(20) {
            let data = (0..len).map(|i| i as i32 % 5 - 1).collect();
            self.state.from_s32(data, shape)
        } else {
            let data = (0..len).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            self.state.from_f32(data, shape)
        }
    }

    /// A tensor of `shape` made from host data: f32 values, or (`ids` = Some(bound)) i32 ids in
    /// `0..bound`. Kept only for the call that needs it.
    fn operand(&mut self, shape: &[usize], ids: Option<usize>) -> Result<Handle, String> {
        let numel: usize = shape.iter().product();
        let shape32 = shape.iter().map(|&d| d as u32).collect();
        let made = match ids {
            Some(bound) => {
                let data = (0..numel).map(|i| (i % bound.max(1)) as i32).collect();
                self.state.from_s32(data, shape32)
            }
            None => {
                let data = (0..numel)
                    .map(|i| ((i * 31) % 17) as f32 / 4.0 - 2.0)
                    .collect();
                self.state.from_f32(data, shape32)
            }
        };
        match made {
            Ok(Ok(h)) => Ok(h),
            other => Err(format!(
                "making a {shape:?} operand: {:?}",
                other.map(|r| r.err())
            )),
        }
    }

    /// Operands that fit an op with several inputs (sizes drawn with zeros among them), so that the
    /// engine's kernels, not only its shape checks, see random sizes. `None` for the other ops.
    fn fitted_call(
        &mut self,
        which: usize,
    ) -> Result<wasmtime::Result<Result<Handle, ApiError>>, String> {
        let c = &mut self.choices;
        let [n, m, k, d, t, h] = [0; 6].map(|_| c.pick(&[0usize, 1, 2, 3, 5]));
        let flag = c.chance(50);
        let mut call = || -> Result<_, String> {
            let mut held = Vec::new();
            let mut take =
                |s: &mut Self, shape: &[usize], ids: Option<usize>| -> Result<Handle, String> {
                    let h = s.operand(shape, ids)?;
                    let b = borrow(&h);
                    held.push(h);
                    Ok(b)
                };
            let made = match which {
                5 => {
                    let a = take(self, &[n, n], None)?;
                    let eye = take(self, &[n, n], None)?;
                    let spd = self.state.matmul(a, eye, false, true);
                    let spd = match spd {
                        Ok(Ok(x)) => x,
                        other => return Ok(other),
                    };
                    let b = take(self, &[n, m], None)?;
                    let r = self.state.solve_spd(borrow(&spd), b);
                    held.push(spd);
                    r
                }
                6 => {
                    let (v, i, tab) = (
                        take(self, &[n, k], None)?,
                        take(self, &[n, k], Some(m))?,
                        take(self, &[m, d], None)?,
                    );
                    self.state.sparse_matmul(v, i, tab)
                }
                7 => {
                    let (x, i, tab) = (
                        take(self, &[n, d], None)?,
                        take(self, &[n, k], Some(m))?,
                        take(self, &[m, d], None)?,
                    );
                    self.state.gather_dot(x, i, tab)
                }
                8 => {
                    let (v, i, x) = (
                        take(self, &[n, k], None)?,
                        take(self, &[n, k], Some(m))?,
                        take(self, &[n, d], None)?,
                    );
                    self.state.scatter_outer(v, i, x, m as u32)
                }
                14 => {
                    let (a, b) = (take(self, &[t, n, k], None)?, take(self, &[k, m], None)?);
                    self.state.matmul(a, b, false, false)
                }
                15 => {
                    let (x, w, b) = (
                        take(self, &[t, n, k], None)?,
                        take(self, &[k, m], None)?,
                        take(self, &[m], None)?,
                    );
                    self.state.linear(x, w, flag.then_some(b))
                }
                20 => {
                    let (x, w, b) = (
                        take(self, &[n, d], None)?,
                        take(self, &[d], None)?,
                        take(self, &[d], None)?,
                    );
                    self.state.layer_norm(x, w, b, 1e-5)
                }
                21 => {
                    let (table, ids) = (take(self, &[m, d], None)?, take(self, &[n, k], Some(m))?);
                    self.state.embedding(table, ids)
                }
                22 => {
                    let (q, kk) = (
                        take(self, &[n, t, h, d], None)?,
                        take(self, &[n, t, h, d], None)?,
                    );
                    self.state.attention_pattern(q, kk, 0.5, flag)
                }
                23 => {
                    let (p, v) = (
                        take(self, &[n, h, t, k], None)?,
                        take(self, &[n, k, h, d], None)?,
                    );
                    self.state.attention_values(p, v)
                }
                30 => {
                    let (x, i) = (take(self, &[n, m], None)?, take(self, &[k], Some(m))?);
                    self.state.index_select(x, 1, i)
                }
                _ => unreachable!("only fitted ops"),
            };
            for h in held {
                self.state.drop(h).map_err(|e| e.to_string())?;
            }
            Ok(made)
        };
        call()
    }

    /// One random call. Returns an error message if the call broke a rule.
    fn step(&mut self) -> Result<(), String> {
        let c = &mut self.choices;
        let which = c.below(OPS);
        self.last_op = which;
        let (a, b, d) = (self.any(), self.any(), self.any());
        let (Some(a), Some(b), Some(d)) = (a, b, d) else {
            let made = self.make_from_data();
            return self.take(made);
        };
        if self.choices.chance(50) && FITTED.contains(&which) {
            self.note(format!("fitted op {which}"));
            let made = self.fitted_call(which)?;
            return self.take(made);
        }
        let c = &mut self.choices;
        let (shape, axis, x, y, n) = (c.shape(), c.axis(), c.float(), c.float(), c.count());
        let flag = c.chance(50);
        let flag2 = c.chance(50);
        let desc = format!(
            "op {which} on #{} #{} #{} shape {shape:?} axis {axis} floats {x} {y} count {n} flags {flag} {flag2}",
            a.rep(),
            b.rep(),
            d.rep()
        );
        self.note(desc);
        let c = &mut self.choices;
        let s = &mut self.state;
        let made = match which {
            0 => s.full(shape, x),
            1 => s.randn(shape, 0.0, y.abs(), n as u64),
            2 => s.rand_uniform(shape, -1.0, 1.0, n as u64),
            3 => s.concat(vec![a, b], axis),
            4 => s.concat((0..(n % 64)).map(|_| borrow(&d)).collect(), axis),
            5 => s.solve_spd(a, b),
            6 => s.sparse_matmul(a, b, d),
            7 => s.gather_dot(a, b, d),
            8 => s.scatter_outer(a, b, d, n),
            9 => s.unary(a, c.pick(&UNARY)),
            10 => s.binary(a, c.pick(&BINARY), b),
            11 => s.affine(a, x, y),
            12 => s.clamp(a, x.min(y), x.max(y)),
            13 => s.select(a, b, d),
            14 => s.matmul(a, b, flag, flag2),
            15 => s.linear(a, b, flag.then_some(d)),
            16 => s.reduce(a, c.pick(&REDUCE), axis, flag),
            17 => s.argmax(a, axis, flag),
            18 => s.softmax(a, axis),
            19 => s.log_softmax(a, axis),
            20 => s.layer_norm(a, b, d, x.abs()),
            21 => s.embedding(a, b),
            22 => s.attention_pattern(a, b, x, flag),
            23 => s.attention_values(a, b),
            24 => s.causal_mask(a, x),
            25 => s.keep_top_k(a, n),
            26 => s.reshape(a, shape),
            27 => s.permute(a, shape.iter().map(|&d| d % 5).collect()),
            28 => s.transpose(a, axis, c.axis()),
            29 => s.slice(a, axis, n, c.count()),
            30 => s.index_select(a, axis, b),
            31 => s.to_dtype(a, if flag { Dtype::F32 } else { Dtype::S32 }),
            32 => {
                let pair = s.top_k(a, n);
                return match pair {
                    Ok(Ok((v, i))) => {
                        self.checked(&v)?;
                        self.checked(&i)?;
                        self.keep(v);
                        self.keep(i);
                        self.made[which] += 1;
                        Ok(())
                    }
                    Ok(Err(e)) => error_value_is_sound(&e),
                    Err(trap) => Err(format!("trapped: {trap:#}")),
                };
            }
            _ => {
                // Reading back: values or an error value, and never more than the read-back cap.
                let read = if flag {
                    s.to_f32(a).map(|r| r.map(|v| v.len()))
                } else {
                    s.item(a).map(|r| r.map(|_| 1))
                };
                return match read {
                    Ok(Ok(_)) => {
                        self.made[which] += 1;
                        Ok(())
                    }
                    Ok(Err(e)) => error_value_is_sound(&e),
                    Err(trap) => Err(format!("trapped: {trap:#}")),
                };
            }
        };
        self.take(made)
    }

    fn take(&mut self, made: wasmtime::Result<Result<Handle, ApiError>>) -> Result<(), String> {
        match made {
            Ok(Ok(h)) => {
                self.checked(&h)?;
                self.keep(h);
                self.made[self.last_op] += 1;
                Ok(())
            }
            Ok(Err(e)) => {
                self.refused[self.last_op] += 1;
                error_value_is_sound(&e)
            }
            Err(trap) => Err(format!("trapped: {trap:#}")),
        }
    }

    /// A tensor handed out: its shape reads back whole, its size agrees, and the quota holds.
    fn checked(&mut self, h: &Handle) -> Result<(), String> {
        let shape = self.state.shape(borrow(h)).map_err(|e| e.to_string())?;
        let numel = self.state.numel(borrow(h)).map_err(|e| e.to_string())?;
        // A zero-sized dimension makes the count 0 however large the others are.
        let product = if shape.contains(&0) {
            Some(0)
        } else {
            shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        };
        if product != Some(numel) {
            return Err(format!("shape {shape:?} does not match numel {numel}"));
        }
        let tensor = self.state.tensor(h).map_err(|e| e.to_string())?;
        if tensor
            .dims()
            .iter()
            .zip(&shape)
            .any(|(&d, &r)| d != r as usize)
        {
            return Err(format!("shape {:?} read back as {shape:?}", tensor.dims()));
        }
        if self.state.quota.used() > self.state.quota.limit() {
            return Err(format!(
                "the run holds {} bytes, over its quota of {}",
                self.state.quota.used(),
                self.state.quota.limit()
            ));
        }
        Ok(())
    }
}

const UNARY: [wit::UnaryOp; 10] = [
    wit::UnaryOp::Relu,
    wit::UnaryOp::GeluTanh,
    wit::UnaryOp::GeluErf,
    wit::UnaryOp::Exp,
    wit::UnaryOp::Log,
    wit::UnaryOp::Sqrt,
    wit::UnaryOp::Abs,
    wit::UnaryOp::Neg,
    wit::UnaryOp::Tanh,
    wit::UnaryOp::Sigmoid,
];
const BINARY: [wit::BinaryOp; 9] = [
    wit::BinaryOp::Add,
    wit::BinaryOp::Sub,
    wit::BinaryOp::Mul,
    wit::BinaryOp::Div,
    wit::BinaryOp::Maximum,
    wit::BinaryOp::Minimum,
    wit::BinaryOp::Greater,
    wit::BinaryOp::Less,
    wit::BinaryOp::Equal,
];
const REDUCE: [wit::ReduceOp; 5] = [
    wit::ReduceOp::Sum,
    wit::ReduceOp::Mean,
    wit::ReduceOp::Max,
    wit::ReduceOp::Min,
    wit::ReduceOp::L2Norm,
];

/// An error value names its op and says something; an internal error is a bug, not bad input.
fn error_value_is_sound(e: &ApiError) -> Result<(), String> {
    if !e.op.starts_with("tensor.") || e.message.trim().is_empty() {
        return Err(format!("malformed error value: {e:?}"));
    }
    if e.kind == ErrorKind::Internal || e.message.contains("internal error") {
        return Err(format!("an internal error from plugin input: {e:?}"));
    }
    Ok(())
}

fn calls_per_seed() -> usize {
    std::env::var("LOUPE_FUZZ_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000)
}

#[test]
fn random_calls_return_values_or_error_values_and_the_host_survives() {
    let calls = calls_per_seed();
    let (mut made, mut refused) = ([0u32; OPS], [0u32; OPS]);
    for seed in [1, 2, 3, 0x5eed] {
        let mut session = Session::new(seed);
        for _ in 0..calls {
            let outcome = catch_unwind(AssertUnwindSafe(|| session.step()));

            let failure = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(why)) => why,
                Err(panic) => format!(
                    "panicked: {}",
                    panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("(no message)")
                ),
            };
            let recent = session.calls.len().saturating_sub(12);
            panic!(
                "seed {seed}, call {}: {failure}\nlast calls:\n  {}",
                session.calls.len(),
                session.calls[recent..].join("\n  ")
            );
        }
        for (op, n) in session.made.iter_mut().enumerate() {
            made[op] += *n;
            refused[op] += session.refused[op];
        }
    }
    // The fuzzer must reach the engine, not only its argument checks: every op made a tensor (or read
    // one back) at least once, and a fair share of all calls succeeded.
    let never: Vec<usize> = (0..OPS).filter(|&op| made[op] == 0).collect();
    assert!(
        never.is_empty() || calls < 1000,
        "ops {never:?} never succeeded (made {made:?}, refused {refused:?})"
    );
    let (ok, errors): (u32, u32) = (made.iter().sum(), refused.iter().sum());
    assert!(
        ok * 5 >= ok + errors,
        "only {ok} of {} calls succeeded",
        ok + errors
    );
}
