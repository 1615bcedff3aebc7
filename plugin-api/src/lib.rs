//! The stable API between loupe and its WebAssembly plugins.
//!
//! The WIT contract (`wit/`) and the guest SDK that plugins link are built on this crate. Its version
//! follows semver: adding functions is a minor bump, changing or removing one is a major bump.

/// The version of the plugin API this crate describes.
pub const API_VERSION: &str = "0.1.0";
