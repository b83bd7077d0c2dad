#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, then runs the
# tutorial's job end to end: train the MLP on Fashion-MNIST, save it as a
# OneFlow snapshot, validate it, take it to NumPy and back, and show that
# the model loaded from the round trip has the same test accuracy.
# Usage: scripts/demo.sh [OUTPUT_DIR] [ckpt-train options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
out=${1:-demo-output}
shift || true
rm -rf "$out"
mkdir -p "$out"
bin=build/tools

step() { printf '\n== %s\n' "$*"; }

step "ckpt-train: 10 epochs of the tutorial's MLP, saved to $out/mnist_model"
$bin/ckpt-train/ckpt-train --out "$out/mnist_model" "$@"

step "ckpt-validate $out/mnist_model"
$bin/ckpt-validate/ckpt-validate "$out/mnist_model"

step "ckpt-convert to a directory of .npy files, read by numpy"
$bin/ckpt-convert/ckpt-convert "$out/mnist_model" "$out/mnist_npy" --to npy
/usr/bin/python3 - "$out/mnist_npy" <<'PY'
import os, sys
import numpy as np
for name in sorted(os.listdir(sys.argv[1])):
    array = np.load(os.path.join(sys.argv[1], name), mmap_mode="r")
    print(f"  numpy: {name:14} {str(array.dtype):8} {array.shape}")
PY

step "ckpt-convert back to a OneFlow snapshot, and evaluate what came back"
$bin/ckpt-convert/ckpt-convert "$out/mnist_npy" "$out/mnist_model_roundtrip" --to oneflow
trained=$($bin/ckpt-train/ckpt-train --eval-only "$out/mnist_model")
roundtrip=$($bin/ckpt-train/ckpt-train --eval-only "$out/mnist_model_roundtrip")
echo "  saved model:      $trained"
echo "  after round trip: $roundtrip"
if [ "$trained" != "$roundtrip" ]; then
  echo "accuracy changed through the round trip" >&2
  exit 1
fi
diff -r "$out/mnist_model" "$out/mnist_model_roundtrip" >/dev/null && echo "  every out and meta file is byte-identical"
