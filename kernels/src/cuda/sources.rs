//! The hand-written kernel sources (`kernels/cuda/*.cu`), compiled into the binary.

/// One `.cu` file.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub name: &'static str,
    pub code: &'static str,
}

/// `kernels/cuda/<name>.cu`, embedded.
macro_rules! cuda_source {
    ($name:literal) => {
        KernelSource {
            name: $name,
            code: include_str!(concat!("../../cuda/", $name, ".cu")),
        }
    };
}

/// Every kernel source, in the order `loupe kernels compile` reports them.
pub const SOURCES: &[KernelSource] = &[
    cuda_source!("elementwise"),
    cuda_source!("rowwise"),
    cuda_source!("optim"),
    cuda_source!("sparse"),
    cuda_source!("matmul"),
    cuda_source!("matmul_tc"),
    cuda_source!("gather"),
    cuda_source!("layout"),
    cuda_source!("attention"),
    cuda_source!("topk"),
];
