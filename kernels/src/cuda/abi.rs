//! The calling convention between Rust and the `.cu` kernels: every kernel's parameter list, written
//! once here and checked twice — each launch's arguments against it (a mismatch is an error, never a
//! launch with garbage), and the table itself against the PTX NVRTC produces (a test), so a kernel and
//! its launch cannot drift apart unnoticed even on a machine without a GPU.

use cudarc::driver::DeviceRepr;

/// Axes the strided kernels support (`MAX_DIMS` in the `.cu` files).
pub(crate) const MAX_DIMS: usize = 6;

/// One kernel parameter as the PTX sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// A device pointer (`.u64`).
    Ptr,
    /// `long long` (`.u64`).
    I64,
    /// `int` (`.u32`).
    I32,
    /// `float` (`.f32`).
    F32,
    /// A struct passed by value: its size in bytes (`.align 8 .b8 [size]`).
    Struct(usize),
}

/// A kernel: the `.cu` file it lives in and its parameters, in order.
#[derive(Debug)]
pub(crate) struct KernelSig {
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [Param],
}

use Param::{F32, I32, I64, Ptr};

const STRIDES: Param = Param::Struct(std::mem::size_of::<Strides>());
const STRIDES3: Param = Param::Struct(std::mem::size_of::<Strides3>());
const LAYOUT: Param = Param::Struct(std::mem::size_of::<Layout>());
/// `c, a, b, m, n, k, trans_a, trans_b, stride_a, stride_b, stride_c, alpha` — every matmul kernel.
const MATMUL: &[Param] = &[Ptr, Ptr, Ptr, I64, I64, I64, I32, I32, I64, I64, I64, F32];

macro_rules! sig {
    ($module:literal, $name:literal, [$($p:expr),* $(,)?]) => {
        KernelSig { module: $module, name: $name, params: &[$($p),*] }
    };
    ($module:literal, $name:literal, $params:expr) => {
        KernelSig { module: $module, name: $name, params: $params }
    };
}

/// Every kernel loupe launches.
pub(crate) const KERNELS: &[KernelSig] = &[
    sig!("elementwise", "unary_f32", [Ptr, Ptr, I64, I32]),
    sig!(
        "elementwise",
        "binary_f32",
        [Ptr, Ptr, Ptr, I64, I32, STRIDES]
    ),
    sig!("elementwise", "affine_f32", [Ptr, Ptr, I64, F32, F32]),
    sig!("elementwise", "clamp_f32", [Ptr, Ptr, I64, F32, F32]),
    sig!(
        "elementwise",
        "where_f32",
        [Ptr, Ptr, Ptr, Ptr, I64, STRIDES3]
    ),
    sig!(
        "elementwise",
        "causal_mask_f32",
        [Ptr, Ptr, I64, I64, I64, F32]
    ),
    sig!(
        "elementwise",
        "gelu_backward_f32",
        [Ptr, Ptr, Ptr, I64, I32]
    ),
    sig!("elementwise", "f32_to_i32", [Ptr, Ptr, I64]),
    sig!("elementwise", "i32_to_f32", [Ptr, Ptr, I64]),
    sig!("rowwise", "reduce_rows_f32", [Ptr, Ptr, I64, I64, I32]),
    sig!("rowwise", "softmax_rows_f32", [Ptr, Ptr, I64, I64, I32]),
    sig!(
        "rowwise",
        "layer_norm_rows_f32",
        [Ptr, Ptr, Ptr, Ptr, I64, I64, F32]
    ),
    sig!(
        "rowwise",
        "softmax_backward_rows_f32",
        [Ptr, Ptr, Ptr, I64, I64, I32]
    ),
    sig!(
        "rowwise",
        "layer_norm_backward_rows_f32",
        [Ptr, Ptr, Ptr, Ptr, Ptr, I64, I64, F32]
    ),
    sig!(
        "rowwise",
        "cross_entropy_rows_f32",
        [Ptr, Ptr, Ptr, Ptr, I64, I64, I32]
    ),
    sig!(
        "rowwise",
        "cross_entropy_backward_rows_f32",
        [Ptr, Ptr, Ptr, Ptr, Ptr, I64, I64, I32]
    ),
    sig!(
        "rowwise",
        "reduce_strided_f32",
        [Ptr, Ptr, I64, I64, I64, I32]
    ),
    sig!(
        "rowwise",
        "softmax_strided_f32",
        [Ptr, Ptr, I64, I64, I64, I32]
    ),
    sig!("rowwise", "argmax_rows_f32", [Ptr, Ptr, I64, I64]),
    sig!("rowwise", "argmax_strided_f32", [Ptr, Ptr, I64, I64, I64]),
    sig!(
        "optim",
        "adam_step_f32",
        [
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, I64, F32, F32, F32, F32, F32
        ]
    ),
    sig!(
        "sparse",
        "sparse_matmul_f32",
        [Ptr, Ptr, Ptr, Ptr, I64, I64, I64]
    ),
    sig!(
        "sparse",
        "gather_dot_f32",
        [Ptr, Ptr, Ptr, Ptr, I64, I64, I64]
    ),
    sig!(
        "sparse",
        "scatter_outer_f32",
        [Ptr, Ptr, Ptr, Ptr, Ptr, I64, I64, I64]
    ),
    sig!("matmul", "matmul_f32", MATMUL),
    sig!("matmul_tc", "matmul_tc_bf16_f32in", MATMUL),
    sig!("matmul_tc", "matmul_tc_f16_f32in", MATMUL),
    sig!("matmul_tc", "matmul_tc_bf16", MATMUL),
    sig!("matmul_tc", "matmul_tc_f16", MATMUL),
    sig!("gather", "embedding_f32", [Ptr, Ptr, Ptr, I64, I64]),
    sig!("layout", "permute_b32", [Ptr, Ptr, I64, LAYOUT]),
    sig!("layout", "slice_b32", [Ptr, Ptr, I64, I64, I64, I64, I64]),
    sig!("layout", "place_b32", [Ptr, Ptr, I64, I64, I64, I64, I64]),
    sig!(
        "layout",
        "index_select_b32",
        [Ptr, Ptr, Ptr, I64, I64, I64, I64]
    ),
    sig!(
        "attention",
        "attention_pattern_f32",
        [Ptr, Ptr, Ptr, I64, I64, I64, I64, I64, F32, I32]
    ),
    sig!(
        "attention",
        "attention_values_f32",
        [Ptr, Ptr, Ptr, I64, I64, I64, I64, I64]
    ),
    sig!("topk", "top_k_f32", [Ptr, Ptr, Ptr, I64, I64, I64]),
    sig!("topk", "scatter_rows_f32", [Ptr, Ptr, Ptr, I64, I64, I64]),
];

/// The signature of kernel `name`.
pub(crate) fn kernel(name: &str) -> Option<&'static KernelSig> {
    KERNELS.iter().find(|k| k.name == name)
}

/// Broadcast strides of both operands of a binary op over the output's shape (`Strides` in
/// `elementwise.cu`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Strides {
    pub rank: i32,
    pub shape: [i64; MAX_DIMS],
    pub lhs: [i64; MAX_DIMS],
    pub rhs: [i64; MAX_DIMS],
}

/// `where`'s three operands' strides over the output's shape (`Strides3` in `elementwise.cu`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Strides3 {
    pub rank: i32,
    pub shape: [i64; MAX_DIMS],
    pub cond: [i64; MAX_DIMS],
    pub on_true: [i64; MAX_DIMS],
    pub on_false: [i64; MAX_DIMS],
}

/// A permute's output shape and, per output axis, the input stride it reads (`Layout` in `layout.cu`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Layout {
    pub rank: i32,
    pub out_shape: [i64; MAX_DIMS],
    pub in_stride: [i64; MAX_DIMS],
}

// SAFETY: plain `repr(C)` structs of integers, laid out as their `.cu` twins (int, then 8-byte-aligned
// arrays of long long), passed by value.
unsafe impl DeviceRepr for Strides {}
unsafe impl DeviceRepr for Strides3 {}
unsafe impl DeviceRepr for Layout {}

/// One launch argument.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    Ptr(u64),
    I64(i64),
    I32(i32),
    F32(f32),
    Strides(Strides),
    Strides3(Strides3),
    Layout(Layout),
}

impl Arg {
    pub(crate) fn param(&self) -> Param {
        match self {
            Arg::Ptr(_) => Param::Ptr,
            Arg::I64(_) => Param::I64,
            Arg::I32(_) => Param::I32,
            Arg::F32(_) => Param::F32,
            Arg::Strides(_) => STRIDES,
            Arg::Strides3(_) => STRIDES3,
            Arg::Layout(_) => LAYOUT,
        }
    }
}

/// A `usize` count or size as a kernel's `long long`.
pub(crate) fn len(n: usize) -> Arg {
    Arg::I64(n as i64)
}

/// Why `args` cannot be passed to `sig`, if they cannot.
pub(crate) fn check_args(sig: &KernelSig, args: &[Arg]) -> Result<(), String> {
    let given: Vec<Param> = args.iter().map(Arg::param).collect();
    if given == sig.params {
        Ok(())
    } else {
        Err(format!(
            "internal error: kernel {} takes {:?}, the launch passed {given:?}",
            sig.name, sig.params
        ))
    }
}

/// The parameter list of `.entry name(...)` in NVRTC's PTX, as [`Param`]s: `.u64` is a pointer or a
/// `long long` (PTX does not tell them apart), `.u32`/`.s32` an `int`, `.f32` a float, `.b8 [n]` a
/// struct of n bytes.
#[cfg(test)]
pub(crate) fn ptx_params(ptx: &str, name: &str) -> Option<Vec<Param>> {
    let start = ptx.find(&format!(".entry {name}("))?;
    let body = &ptx[start..];
    let close = body.find(')')?;
    let list = &body[body.find('(')? + 1..close];
    let params = list
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let p = p.trim();
            if p.contains(".b8") {
                let size = p[p.rfind('[')? + 1..p.rfind(']')?].parse().ok()?;
                Some(Param::Struct(size))
            } else if p.contains(".u64") || p.contains(".s64") {
                Some(Param::I64)
            } else if p.contains(".u32") || p.contains(".s32") {
                Some(Param::I32)
            } else if p.contains(".f32") {
                Some(Param::F32)
            } else {
                None
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::{SOURCES, compile, nvrtc_version};

    #[test]
    fn launch_arguments_are_checked_against_the_signature() {
        let sig = kernel("affine_f32").unwrap();
        let good = [
            Arg::Ptr(0),
            Arg::Ptr(0),
            len(3),
            Arg::F32(2.0),
            Arg::F32(1.0),
        ];
        assert!(check_args(sig, &good).is_ok());
        let err = check_args(sig, &good[..4]).unwrap_err();
        assert!(err.contains("affine_f32"), "{err}");
        let swapped = [
            Arg::Ptr(0),
            Arg::Ptr(0),
            Arg::I32(3),
            Arg::F32(2.0),
            Arg::F32(1.0),
        ];
        assert!(check_args(sig, &swapped).is_err());
        assert!(kernel("no_such_kernel").is_none());
    }

    #[test]
    fn every_module_named_in_the_table_is_a_source() {
        for k in KERNELS {
            assert!(
                SOURCES.iter().any(|s| s.name == k.module),
                "{} names module {} which is not in SOURCES",
                k.name,
                k.module
            );
            let source = SOURCES.iter().find(|s| s.name == k.module).unwrap();
            assert!(
                source.code.contains(&format!(" {}(", k.name)),
                "{}.cu has no kernel {}",
                k.module,
                k.name
            );
        }
    }

    /// The table against the compiled PTX: same parameter count, widths and kinds, struct sizes
    /// included. Runs where NVRTC loads (the test script installs it); says it was skipped otherwise.
    #[test]
    fn signatures_match_the_compiled_kernels() {
        if let Err(why) = nvrtc_version() {
            eprintln!("skipped: {why}");
            return;
        }
        for source in SOURCES {
            let ptx = compile(source, "sm_80", None).unwrap_or_else(|e| panic!("{e}"));
            for k in KERNELS.iter().filter(|k| k.module == source.name) {
                let found = ptx_params(&ptx.ptx, k.name).unwrap_or_else(|| {
                    panic!("{}: no parseable .entry in {}.ptx", k.name, k.module)
                });
                // PTX spells pointers and long longs alike.
                let expected: Vec<Param> = k
                    .params
                    .iter()
                    .map(|p| if *p == Param::Ptr { Param::I64 } else { *p })
                    .collect();
                assert_eq!(found, expected, "kernel {} in {}.cu", k.name, k.module);
            }
            // And no kernel in the source is missing from the table.
            for line in ptx.ptx.lines().filter(|l| l.contains(".entry ")) {
                let name = line.split(".entry ").nth(1).unwrap().trim_end_matches('(');
                assert!(
                    kernel(name).is_some(),
                    "{}.cu defines {name}, which the table does not list",
                    source.name
                );
            }
        }
    }
}
