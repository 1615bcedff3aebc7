//! A plugin whose `manifest()` misbehaves: it makes a host call (`model.info`, which fails outside a
//! run) and then sleeps for an hour. Loading it must fail alone and in bounded time — at the
//! manifest's own deadline, or at once when the host call panics — and leave the other plugins of
//! its directory in service.

use std::time::Duration;

use loupe_plugin_api::prelude::*;
use serde_json::{Value, json};

struct SlowManifest;

impl Plugin for SlowManifest {
    type Params = Value;

    fn manifest() -> Manifest {
        let _ = model::info();
        std::thread::sleep(Duration::from_secs(3600));
        Manifest::new(
            "slow-manifest",
            env!("CARGO_PKG_VERSION"),
            "test",
            "Never finishes its manifest",
        )
    }

    fn run(_: Value) -> Result<Value> {
        Ok(json!({}))
    }
}

export_plugin!(SlowManifest);
