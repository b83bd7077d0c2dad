#!/usr/bin/env bash
# Converts a ~1 GiB snapshot (8 variables) and a 5,000-variable one
# (~160 MiB) to a directory of .npy and back with ckpt-convert, and times
# the same job done by `cp -r` and by numpy (np.fromfile + np.save per
# variable, and back). Page cache warm; best of RUNS.
#
#   bench/convert_bench.sh [BUILD_DIR] [WORK_DIR]     (defaults: build-npy, /tmp/ckpt-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-npy}
work=${2:-/tmp/ckpt-bench}
runs=${RUNS:-3}
convert="$build/tools/ckpt-convert/ckpt-convert"
python=/usr/bin/python3
rm -rf "$work" && mkdir -p "$work"

make_snapshot() {  # DIR VARIABLES FLOATS_PER_VARIABLE
  "$python" - "$@" <<'PY'
import os, sys
root, count, floats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root)
chunk = os.urandom(floats * 4)
for i in range(count):
    os.makedirs(f"{root}/v{i:05d}")
    with open(f"{root}/v{i:05d}/out", "wb") as f:
        f.write(chunk)
    with open(f"{root}/v{i:05d}/meta", "w") as f:
        f.write(f"shape {{\n  dim: {floats}\n}}\ndata_type: kFloat\n")
open(f"{root}/snapshot_done", "w").close()
PY
}

numpy_to_npy() {  # SNAPSHOT NPY_DIR
  "$python" - "$@" <<'PY'
import os, sys, numpy as np
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
for name in sorted(os.listdir(src)):
    if os.path.isdir(f"{src}/{name}"):
        np.save(f"{dst}/{name}.npy", np.fromfile(f"{src}/{name}/out", dtype="<f4"))
PY
}

numpy_to_snapshot() {  # NPY_DIR SNAPSHOT
  "$python" - "$@" <<'PY'
import os, sys, numpy as np
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
for file in sorted(os.listdir(src)):
    array = np.load(f"{src}/{file}")
    os.makedirs(f"{dst}/{file[:-4]}")
    array.tofile(f"{dst}/{file[:-4]}/out")
    dims = "".join(f"  dim: {d}\n" for d in array.shape)
    with open(f"{dst}/{file[:-4]}/meta", "w") as f:
        f.write(f"shape {{\n{dims}}}\ndata_type: kFloat\n")
open(f"{dst}/snapshot_done", "w").close()
PY
}

best() {  # prints the best wall time in seconds of "$@" over $runs runs; cleans $work/out* between runs
  local best_time=""
  for _ in $(seq "$runs"); do
    rm -rf "$work"/out*
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    best_time=$(echo "$start $end $best_time" | awk '{t=$2-$1; if ($3=="" || t<$3) print t; else print $3}')
  done
  echo "$best_time"
}

report() {  # LABEL BYTES SECONDS
  awk -v l="$1" -v b="$2" -v s="$3" 'BEGIN { printf "| %-44s | %7.3f s | %6.2f GB/s |\n", l, s, b / s / 1e9 }'
}

for case in "big 8 33554432" "many 5000 8192"; do
  read -r label count floats <<<"$case"
  snapshot="$work/src-$label"
  make_snapshot "$snapshot" "$count" "$floats"
  bytes=$(du -sb "$snapshot" | cut -f1)
  "$convert" "$snapshot" "$work/npy-$label" --to npy 2>/dev/null
  cat "$snapshot"/*/out "$work/npy-$label"/*.npy >/dev/null  # warm the page cache
  echo "### $label: $count variables, $bytes bytes"
  echo "| job | time | throughput |"
  echo "|---|---|---|"
  report "ckpt-convert snapshot -> npy (fsync)" "$bytes" "$(best "$convert" "$snapshot" "$work/out" --to npy)"
  report "ckpt-convert npy -> snapshot (fsync)" "$bytes" "$(best "$convert" "$work/npy-$label" "$work/out")"
  report "cp -r snapshot" "$bytes" "$(best cp -r "$snapshot" "$work/out")"
  report "cp -r snapshot && sync" "$bytes" "$(best sh -c "cp -r '$snapshot' '$work/out' && sync")"
  report "numpy fromfile+save snapshot -> npy" "$bytes" "$(best numpy_to_npy "$snapshot" "$work/out")"
  report "numpy load+tofile npy -> snapshot" "$bytes" "$(best numpy_to_snapshot "$work/npy-$label" "$work/out")"
  echo
  rm -rf "$snapshot" "$work/npy-$label" "$work"/out*
done
