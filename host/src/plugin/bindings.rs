//! Host-side bindings of the `loupe:plugin` world, generated from `plugin-api/wit`.

wasmtime::component::bindgen!({
    path: "../plugin-api/wit",
    world: "plugin",
    imports: { default: trappable },
    with: {
        "loupe:plugin/tensor.tensor": super::state::TensorEntry,
    },
});

pub use self::loupe::plugin::types::{Dtype, Error as ApiError, ErrorKind};
