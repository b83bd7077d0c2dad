#!/usr/bin/env bash
# The bf16 cast of issue 15: `ckpt-convert big.npz out.safetensors --dtype bf16`
# on ~512 MiB of float32 (8 tensors), against torch doing the same job
# (np.load, torch.from_numpy(a).bfloat16(), safetensors.torch.save_file), with
# and without an fsync of its output (ckpt-convert always syncs), with
# --jobs 1 and with the default (the cores). An optional second ckpt-convert
# (an older build, run without --jobs) is timed alongside. Page cache warm;
# runs alternate; medians of RUNS. Outputs get fresh names and are deleted
# only after all runs. torch is Debian's; safetensors comes from the venv of
# scripts/make-hf-venv.sh, appended to torch's interpreter path.
#
#   bench/bf16_cast_bench.sh [CKPT_CONVERT] [OLDER_CKPT_CONVERT]
set -euo pipefail
cd "$(dirname "$0")/.."
convert=${1:-build/tools/ckpt-convert/ckpt-convert}
older=${2:-}
runs=${RUNS:-5}
work=${WORK:-/tmp/ckpt-bf16-bench}
venv_python=$(scripts/make-hf-venv.sh)
site=$("$venv_python" -c 'import safetensors, os; print(os.path.dirname(os.path.dirname(safetensors.__file__)))')
rm -rf "$work" && mkdir -p "$work"

/usr/bin/python3 - "$work/big.npz" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(15)
np.savez(sys.argv[1], **{f"layer{i}.weight": rng.standard_normal((4096, 4096), dtype=np.float32) for i in range(8)})
PY

cat > "$work/peer.py" <<'PY'
import os, sys, time
sys.path.append(sys.argv[3])  # after Debian's numpy, which this torch is built against
import numpy as np
import torch
from safetensors.torch import save_file
start = time.perf_counter()
with np.load(sys.argv[1]) as arrays:
    tensors = {name: torch.from_numpy(arrays[name]).bfloat16() for name in arrays.files}
save_file(tensors, sys.argv[2])
if sys.argv[4] == "sync":
    fd = os.open(sys.argv[2], os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
print(f"{time.perf_counter() - start:.3f}")
PY

seconds() { /usr/bin/python3 -c 'import subprocess, sys, time; t = time.perf_counter(); subprocess.run(sys.argv[1:], check=True); print(f"{time.perf_counter() - t:.3f}")' "$@"; }

declare -A times
for run in $(seq "$runs"); do
  times[ckpt]+="$(seconds "$convert" "$work/big.npz" "$work/out-new-$run.safetensors" --dtype bf16) "
  times[ckpt_jobs1]+="$(seconds "$convert" "$work/big.npz" "$work/out-j1-$run.safetensors" --dtype bf16 --jobs 1) "
  [ -n "$older" ] && times[older]+="$(seconds "$older" "$work/big.npz" "$work/out-old-$run.safetensors" --dtype bf16) "
  times[torch]+="$(/usr/bin/python3 "$work/peer.py" "$work/big.npz" "$work/out-torch-$run.safetensors" "$site" nosync) "
  times[torch_sync]+="$(/usr/bin/python3 "$work/peer.py" "$work/big.npz" "$work/out-torchs-$run.safetensors" "$site" sync) "
done
cmp "$work/out-new-1.safetensors" "$work/out-torch-1.safetensors" && echo "ckpt-convert and torch wrote identical bytes"
cmp "$work/out-new-1.safetensors" "$work/out-j1-1.safetensors" && echo "--jobs 1 and the default wrote identical bytes"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for key in ckpt ckpt_jobs1 older torch torch_sync; do
  [ -n "${times[$key]:-}" ] && echo "$key: median $(echo "${times[$key]}" | median) s of: ${times[$key]}"
done
rm -rf "$work"
