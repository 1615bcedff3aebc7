//! The hand-written kernel sources (`kernels/cuda/*.cu`), compiled into the binary.

/// One `.cu` file.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub name: &'static str,
    pub code: &'static str,
}

/// Every kernel source, in the order `loupe kernels compile` reports them.
pub const SOURCES: &[KernelSource] = &[KernelSource {
    name: "elementwise",
    code: include_str!("../../cuda/elementwise.cu"),
}];
