#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, writes a
# checkpoint with the library and validates it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
out=${1:-demo-output}
rm -rf "$out"
mkdir -p "$out"

echo "== writing a snapshot with libformat"
build/examples/save_and_load "$out/linear"
echo
echo "== ckpt-validate $out/linear"
build/tools/ckpt-validate/ckpt-validate "$out/linear"
