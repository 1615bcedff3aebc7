#!/usr/bin/env bash
# Builds every plugin crate of a plugin workspace for wasm32-wasip2 and installs the components into a
# plugin directory, each as <crate name>.wasm (written beside it, then renamed into place).
#
#   scripts/build-plugins.sh                      # plugins/ -> plugins/dist/
#   scripts/build-plugins.sh WORKSPACE OUT_DIR    # e.g. tests/plugins -> target/test-plugins
set -euo pipefail
cd "$(dirname "$0")/.."
workspace="${1:-plugins}"
out="${2:-$workspace/dist}"

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "build-plugins: installing the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi

cargo build --release --locked --target wasm32-wasip2 --manifest-path "$workspace/Cargo.toml"

mkdir -p "$out"
built="$workspace/target/wasm32-wasip2/release"
for manifest in "$workspace"/*/Cargo.toml; do
  crate="$(basename "$(dirname "$manifest")")"
  wasm="$built/${crate//-/_}.wasm"
  if [[ -f "$wasm" ]]; then
    cp "$wasm" "$out/.$crate.wasm.part"
    mv "$out/.$crate.wasm.part" "$out/$crate.wasm"
    echo "build-plugins: $out/$crate.wasm"
  fi
done
