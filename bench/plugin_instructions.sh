#!/usr/bin/env bash
# The op loop's instruction count through the plugin API against native calls, with valgrind's
# callgrind: deterministic, unlike wall-clock time on a shared machine. Each side is run with 0 and
# STEPS steps, so start-up, loading and setup cancel out.
#   bench/plugin_instructions.sh [STEPS]        (needs valgrind; run bench/plugin_overhead.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-40}"
plugin=target/bench-plugins/host-calls.wasm
loupe=./target/release/loupe
count() { # side steps -> instructions
  RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$loupe" bench plugin --plugin "$plugin" --only "$1" --steps "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
count plugin 0 >/dev/null # fills the compiled-plugin cache for valgrind's CPU
native=$(( $(count native "$steps") - $(count native 0) ))
plugin_n=$(( $(count plugin "$steps") - $(count plugin 0) ))
echo "op loop, $steps steps: native $native instructions, plugin $plugin_n"
awk -v n="$native" -v p="$plugin_n" 'BEGIN { printf "plugin/native - 1: %+.3f %%\n", 100 * (p - n) / n }'
