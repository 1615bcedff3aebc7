#!/usr/bin/env bash
# Plugin overheads: host-call cost, op-loop overhead against native calls, cold and cached load times.
#   bench/plugin_overhead.sh [extra `loupe bench plugin` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p loupe
./scripts/build-plugins.sh tests/plugins target/bench-plugins >/dev/null
./target/release/loupe bench plugin --plugin target/bench-plugins/host-calls.wasm "$@"
