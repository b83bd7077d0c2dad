#!/usr/bin/env bash
# Fidelity and speed of ckpt-train against PyTorch (CPU), BENCHMARKS.md's
# "Training" section: 10 epochs of the tutorial's MLP on Fashion-MNIST for
# seeds 0-2 on both, cross-evaluation of the weights, epoch times.
# usage: bench/fidelity.sh [BUILD_DIR] [THREADS]   (results in bench/out/)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
export OPENBLAS_NUM_THREADS=$threads BLIS_NUM_THREADS=$threads
out=bench/out
rm -rf "$out" && mkdir -p "$out"
python=/usr/bin/python3

for seed in 0 1 2; do
  "$build/tools/ckpt-train/ckpt-train" --device cpu --seed "$seed" --out "$out/ours-$seed" \
    >"$out/ours-$seed.log" 2>&1
  $python bench/torch_mlp.py train --seed "$seed" --threads "$threads" --export "$out/torch-$seed" \
    >"$out/torch-$seed.log" 2>&1
  # Our weights in torch.nn; torch's weights under our evaluation.
  $python bench/torch_mlp.py eval "$out/ours-$seed" >"$out/ours-$seed.in-torch"
  "$build/tools/ckpt-validate/ckpt-validate" --quiet "$out/torch-$seed"
  "$build/tools/ckpt-train/ckpt-train" --device cpu --eval-only "$out/ours-$seed" >"$out/ours-$seed.eval"
  "$build/tools/ckpt-train/ckpt-train" --device cpu --eval-only "$out/torch-$seed" >"$out/torch-$seed.eval"
done

$python - "$out" <<'PY'
import re, statistics, sys
out = sys.argv[1]
def last_acc(path):
    return float(re.findall(r"test acc (\d\.\d+)", open(path).read())[-1])
def epoch_times(path):
    return [float(t) for t in re.findall(r"epoch \d+ took (\d+\.\d+) s", open(path).read())]
rows = []
for seed in range(3):
    ours, torch_ = last_acc(f"{out}/ours-{seed}.eval"), last_acc(f"{out}/torch-{seed}.log")
    rows.append((seed, ours, last_acc(f"{out}/ours-{seed}.in-torch"), torch_, last_acc(f"{out}/torch-{seed}.eval"),
                 statistics.median(epoch_times(f"{out}/ours-{seed}.log")),
                 statistics.median(epoch_times(f"{out}/torch-{seed}.log"))))
print("| seed | ours --eval-only | ours in torch.nn | torch | torch under --eval-only | ours s/epoch | torch s/epoch |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| %d | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f |" % r)
ours_mean = statistics.mean(r[1] for r in rows)
torch_mean = statistics.mean(r[3] for r in rows)
print(f"\nmean test acc: ours {ours_mean:.4f}, torch {torch_mean:.4f}, difference {100 * (ours_mean - torch_mean):+.2f} points")
print(f"largest cross-evaluation difference: {max(max(abs(r[1] - r[2]), abs(r[3] - r[4])) for r in rows) * 100:.2f} points")
PY
