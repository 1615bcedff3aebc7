#!/usr/bin/env bash
# Runs every test: unit tests, parity against ../shared/fixtures, the plugins' own unit tests, and
# end-to-end runs of the binary with real .wasm plugins (which the tests build with
# scripts/build-plugins.sh, installing the wasm32-wasip2 target if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
cargo test --locked --manifest-path plugins/Cargo.toml
