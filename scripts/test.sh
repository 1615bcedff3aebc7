#!/usr/bin/env bash
# Runs every test: unit tests, parity against ../shared/fixtures, and end-to-end runs of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
