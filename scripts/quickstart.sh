#!/usr/bin/env bash
# The quickstart on the embedded default: a small random GPT-2 written locally (no download), the
# act-stats plugin built for WebAssembly, and a headless run of examples/quickstart.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p loupe
./scripts/build-plugins.sh
loupe=./target/release/loupe
$loupe models random --preset tiny --seed 0 --out .quickstart/tiny-gpt2
$loupe run examples/quickstart.toml --device cpu
echo "quickstart: done; the run's statistics, top activations and heat map are under runs/"
