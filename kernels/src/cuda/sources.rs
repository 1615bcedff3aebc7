//! The hand-written kernel sources (`kernels/cuda/*.cu`), compiled into the binary.

/// One `.cu` file.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub name: &'static str,
    pub code: &'static str,
}

/// Every kernel source, in the order `loupe kernels compile` reports them.
pub const SOURCES: &[KernelSource] = &[
    KernelSource {
        name: "elementwise",
        code: include_str!("../../cuda/elementwise.cu"),
    },
    KernelSource {
        name: "rowwise",
        code: include_str!("../../cuda/rowwise.cu"),
    },
    KernelSource {
        name: "optim",
        code: include_str!("../../cuda/optim.cu"),
    },
    KernelSource {
        name: "sparse",
        code: include_str!("../../cuda/sparse.cu"),
    },
    KernelSource {
        name: "matmul",
        code: include_str!("../../cuda/matmul.cu"),
    },
    KernelSource {
        name: "gather",
        code: include_str!("../../cuda/gather.cu"),
    },
    KernelSource {
        name: "attention",
        code: include_str!("../../cuda/attention.cu"),
    },
    KernelSource {
        name: "topk",
        code: include_str!("../../cuda/topk.cu"),
    },
];
