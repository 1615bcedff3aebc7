#!/usr/bin/env bash
# Runs every test: unit tests, parity against ../shared/fixtures, the plugins' own unit tests, and
# end-to-end runs of the binary with real .wasm plugins (which the tests build with
# scripts/build-plugins.sh, installing the wasm32-wasip2 target if it is missing). NVRTC is installed
# from PyPI (scripts/nvrtc.sh) so every CUDA kernel is compiled for sm_80 and sm_90 without a GPU; the
# tests that need a GPU say they were skipped. Debian's Chromium is installed (scripts/chromium.sh) for
# the test that opens the SAE feature view in a headless browser.
set -euo pipefail
cd "$(dirname "$0")/.."
LOUPE_CHROMIUM="$(./scripts/chromium.sh)"
export LOUPE_CHROMIUM
nvrtc_lib=$(./scripts/nvrtc.sh)
export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo test --workspace --locked "$@"
cargo test --locked --manifest-path plugins/Cargo.toml
cargo run --quiet --locked -p loupe -- kernels compile --arch sm_80 --arch sm_90 --no-cache
