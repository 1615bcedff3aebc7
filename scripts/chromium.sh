#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the tests that open generated HTML pages,
# installing Debian's `chromium` package first when it is missing (needs root and apt).
set -euo pipefail
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
  if [[ -x "$candidate" ]]; then
    echo "$candidate"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null; then
  echo "chromium.sh: no Chromium and no apt-get to install it with" >&2
  exit 1
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  sudo="sudo"
fi
echo "chromium.sh: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium >&2
echo /usr/bin/chromium
