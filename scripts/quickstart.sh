#!/usr/bin/env bash
# The quickstart on the embedded default: a small random GPT-2 written locally (no download), the
# act-stats plugin built for WebAssembly, and a headless run of examples/quickstart.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p loupe
./scripts/build-plugins.sh
loupe=./target/release/loupe
# `loupe` on the PATH: a link in cargo's bin folder (on the PATH wherever rustup installed cargo) to the
# binary just built, so the README's commands run as pasted. A link, not a copy: loupe finds this
# checkout's plugins/dist through it.
bin=${CARGO_HOME:-$HOME/.cargo}/bin
if [ -d "$bin" ] && ln -sf "$PWD/target/release/loupe" "$bin/loupe"; then
  echo "quickstart: linked $bin/loupe to target/release/loupe"
  case ":$PATH:" in *":$bin:"*) ;; *) echo "quickstart: $bin is not on your PATH; add it, or run ./target/release/loupe" ;; esac
else
  echo "quickstart: run loupe as ./target/release/loupe (no cargo bin folder to link it into)"
fi
$loupe models random --preset tiny --seed 0 --out .quickstart/tiny-gpt2
$loupe run examples/quickstart.toml --device cpu
echo "quickstart: done; the run's statistics, top activations and heat map are under runs/"
