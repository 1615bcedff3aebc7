#!/usr/bin/env bash
# The worst attack of each kind a hostile plugin can make, each run alone by the real binary: how
# long the run lasted against its deadline (the overrun past it) and the host's peak memory.
#
#   bench/sandbox_attacks.sh              # builds a release loupe and the test plugins first
#   LOUPE=target/debug/loupe bench/sandbox_attacks.sh
#
# Needs /usr/bin/time (GNU time). Prints one line per attack: limit, how the run ended, its elapsed
# time from summary.json, the overrun past the time limit, and the process's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/time ]]; then
  echo "sandbox_attacks: needs GNU time at /usr/bin/time (apt-get install time)" >&2
  exit 2
fi
if [[ -z "${LOUPE:-}" ]]; then
  cargo build --release --locked -p loupe >&2
  LOUPE=target/release/loupe
fi
plugins=target/bench-sandbox/plugins
./scripts/build-plugins.sh tests/plugins "$plugins" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LOUPE_CACHE_DIR="$work/cache"
"$LOUPE" models random --preset tiny --seed 0 --out "$work/model" >/dev/null
corpus=$(pwd)/examples/tiny-corpus.txt

# name | plugin | params (TOML lines) | limits (TOML lines) | needs the model (yes/no)
attacks=(
  "empty-shapes|shape-attacks|attack = \"all\"|tensor_mb = 512|no"
  "long-solve|shape-attacks|attack = \"long-solve\"|time_s = 1|no"
  "long-matmul|shape-attacks|attack = \"long-matmul\"|time_s = 1|no"
  "spin|misbehave|behaviour = \"spin\"|time_s = 1|no"
  "sleep-1h|misbehave|behaviour = \"sleep\"|time_s = 1|no"
  "poll-clock-1h|misbehave|behaviour = \"poll-clock\"|time_s = 1|no"
  "tokenize-16MiB|misbehave|behaviour = \"tokenize-flood\"|time_s = 1|yes"
  "huge-forward|misbehave|behaviour = \"huge-forward\"|time_s = 1|yes"
  "memory-bomb|misbehave|behaviour = \"memory-bomb\"|memory_mb = 64|no"
  "over-quota|misbehave|behaviour = \"over-quota\"|tensor_mb = 16|no"
  "event-flood|misbehave|behaviour = \"flood\"|time_s = 3|no"
  "log-flood-1GiB|impostor|attack = \"log-flood\"\nsize = 1024||no"
  "summary-bomb|impostor|attack = \"summary-bomb\"\nsize = 1000||no"
  "json-artifact-bomb|impostor|attack = \"json-bomb\"\nsize = 1000||no"
)

printf '%-20s %-16s %-8s %10s %10s %10s\n' attack limit ended elapsed_s overrun_s peak_MiB
for entry in "${attacks[@]}"; do
  IFS='|' read -r name plugin params limits model <<<"$entry"
  exp="$work/$name.toml"
  {
    echo "[[run]]"
    echo "name = \"$name\""
    echo "plugin = \"$(pwd)/$plugins/$plugin.wasm\""
    if [[ $model == yes ]]; then
      echo "model = \"$work/model\""
      echo "data = { path = \"$corpus\", seq_len = 8 }"
    fi
    echo "[run.params]"
    printf '%b\n' "$params"
    echo "[run.limits]"
    printf '%b\n' "$limits"
  } >"$exp"
  out="$work/runs-$name"
  /usr/bin/time -f '%M' -o "$work/rss" "$LOUPE" run "$exp" --out "$out" --device cpu >/dev/null 2>&1 || true
  summary=$(ls "$out"/*/summary.json)
  python3 - "$summary" "$work/rss" "$name" "${limits:-defaults}" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))
rss_kib = int(open(sys.argv[2]).read().split()[-1])
limit = sys.argv[4].replace("\n", " ")
m = re.search(r"time_s = ([0-9.]+)", limit)
elapsed = s["elapsed_s"]
overrun = f"{elapsed - float(m.group(1)):.2f}" if m else "-"
ended = "ok" if s["ok"] else "failed"
print(f"{sys.argv[3]:<20} {limit:<16} {ended:<8} {elapsed:>10.2f} {overrun:>10} {rss_kib / 1024:>10.0f}")
PY
done
