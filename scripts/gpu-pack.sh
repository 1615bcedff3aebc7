#!/usr/bin/env bash
# Prepares, on a machine with the Rust toolchain, what scripts/gpu-check.sh needs on a GPU machine that
# has none: a stripped release `loupe` and the reference GPT-2 and DeiT fixtures, in .gpu-check/ (ignored by
# git). Carry `.gpu-check` with the repository and run scripts/gpu-check.sh there.
#
#   scripts/gpu-pack.sh            # fixtures from $LOUPE_FIXTURES, else ../shared/fixtures
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures=${LOUPE_FIXTURES:-../shared/fixtures}
for f in gpt2-ref deit-ref; do
  [ -d "$fixtures/$f" ] || { echo "scripts/gpu-pack.sh: no $f/ under $fixtures; set LOUPE_FIXTURES" >&2; exit 1; }
done
cargo build --release --locked -q -p loupe
rm -rf .gpu-check
mkdir -p .gpu-check/fixtures
cp target/release/loupe .gpu-check/loupe
strip .gpu-check/loupe
cp -r "$fixtures/gpt2-ref" "$fixtures/deit-ref" .gpu-check/fixtures/
du -sh .gpu-check .gpu-check/loupe | sed 's/^/scripts\/gpu-pack.sh: /'
echo "scripts/gpu-pack.sh: carry .gpu-check and run scripts/gpu-check.sh on the GPU machine"
