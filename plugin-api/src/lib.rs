//! The stable API between loupe and its WebAssembly plugins, and the guest SDK plugins are written with.
//!
//! The contract is the WIT package in `wit/` (`loupe:plugin@0.3.2`). This crate wraps its generated
//! bindings in an idiomatic surface: [`Tensor`] handles with operators that free their host memory when
//! dropped, a [`Forward`] builder for model runs with captures and interventions, datasets, reporting,
//! and [`export_plugin!`] to export a type implementing [`Plugin`]:
//!
//! ```ignore
//! use loupe_plugin_api::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Params { hook: String }
//!
//! struct Norms;
//! impl Plugin for Norms {
//!     type Params = Params;
//!     fn manifest() -> Manifest {
//!         Manifest::new("norms", env!("CARGO_PKG_VERSION"), "norms", "Mean L2 norm of an activation")
//!             .param(Param::string("hook", "blocks.0.hook_resid_post", "Where to read activations"))
//!     }
//!     fn run(p: Params) -> Result<serde_json::Value> {
//!         let Some(tokens) = Dataset::open("default")?.next_batch(8)? else {
//!             return Err(Error::invalid("norms", "the dataset is empty"));
//!         };
//!         let mut out = Forward::new(&tokens).capture(&p.hook).without_logits().run()?;
//!         // [batch, pos, d_model] -> one norm per position -> their mean, read back as one f32.
//!         let norm = out.take(&p.hook)?.l2_norm(-1, false)?.mean_all()?;
//!         Ok(serde_json::json!({ "mean_norm": norm }))
//!     }
//! }
//! export_plugin!(Norms);
//! ```
//!
//! Operators (`&a + &b`, `&x * 2.0`, `-&x`) panic with the host's error message on a bad call (shapes that
//! do not broadcast, say), which ends the run with that message, as a failed assertion would; the named
//! methods (`a.add(&b)?`) return the error instead.

pub mod contexts;
pub mod data;
mod error;
pub mod manifest;
pub mod model;
mod ops;
pub mod report;
pub mod rng;
pub mod runtime;
mod tensor;

pub use data::{Dataset, Directory, ImageBatch, Images};
pub use error::{Error, ErrorKind, Result};
pub use manifest::{Manifest, Param, ParamType};
pub use model::{Forward, GradForward, GradOutput, Intervention, ModelInfo, Objective, Output};
pub use tensor::{AdamConfig, DType, Tensor};

/// The version of the plugin API this crate describes: the WIT package's version.
pub const API_VERSION: &str = "0.3.2";

/// The generated bindings of the `plugin` world. Plugins rarely need them directly.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "loupe_plugin_api::bindings",
    });
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::report::{self, debug, info, warn};
    pub use crate::{
        AdamConfig, DType, Dataset, Directory, Error, ErrorKind, Forward, Images, Intervention,
        Manifest, Objective, Param, ParamType, Plugin, Result, Tensor, export_plugin, model,
        runtime,
    };
}

/// One analysis method. Implement it and export it with [`export_plugin!`].
pub trait Plugin {
    /// The run's parameters, deserialized from the JSON object the host passes (every parameter of
    /// the manifest's schema, defaults filled in).
    type Params: serde::de::DeserializeOwned;

    /// Name, version, method, description and parameter schema.
    fn manifest() -> Manifest;

    /// Does the work; the JSON value returned becomes the run's `summary.json`.
    fn run(params: Self::Params) -> Result<serde_json::Value>;
}

/// Exports a type implementing [`Plugin`] as the component's `method` interface.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __LoupeExportedPlugin;

        impl $crate::bindings::exports::loupe::plugin::method::Guest for __LoupeExportedPlugin {
            fn manifest() -> $crate::bindings::exports::loupe::plugin::method::PluginManifest {
                $crate::manifest::to_wit(<$plugin as $crate::Plugin>::manifest())
            }

            fn run(
                params: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::bindings::loupe::plugin::types::Error>
            {
                $crate::manifest::run_with_json::<$plugin>(&params)
            }
        }

        $crate::bindings::export!(__LoupeExportedPlugin with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    /// The constant plugins compile in must be the version the WIT package declares.
    #[test]
    fn api_version_matches_the_wit_package() {
        let wit = include_str!("../wit/loupe-plugin.wit");
        let declared = wit
            .lines()
            .find_map(|l| l.trim().strip_prefix("package loupe:plugin@"))
            .and_then(|rest| rest.strip_suffix(';'))
            .expect("package line");
        assert_eq!(declared, super::API_VERSION);
    }
}
