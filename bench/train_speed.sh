#!/usr/bin/env bash
# CPU epoch time of ckpt-train with each BLAS build against PyTorch at 1 and 2
# threads, side by side: ROUNDS rounds, each running every contender once for
# EPOCHS epochs (the tutorial's MLP on Fashion-MNIST, batch 128, each epoch
# including its test-set evaluation); prints the median epoch seconds of each
# (wall and process CPU time) and the ratio of each to PyTorch's best. CPU
# time is what an epoch costs when other jobs share the cores; wall time is
# what it costs alone. TORCH_THREADS (default "1 2") lists PyTorch's counts.
# usage: bench/train_speed.sh ROUNDS EPOCHS BUILD [BUILD ...]
#   each BUILD is a build directory (e.g. build with BLIS, build-openblas
#   configured with -Dblas_library=openblas); results in bench/out/speed/
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1 epochs=$2
shift 2
out=bench/out/speed
mkdir -p "$out"
python=/usr/bin/python3
logs=()
for round in $(seq "$rounds"); do
  for build in "$@"; do
    log="$out/ckpt-$(basename "$build")-r$round.log"
    OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1 "$build/tools/ckpt-train/ckpt-train" --device cpu --epochs "$epochs" \
      --force --out "$out/model-$(basename "$build")" >"$log" 2>&1
    logs+=("$log")
  done
  for threads in ${TORCH_THREADS:-1 2}; do
    log="$out/torch-${threads}t-r$round.log"
    $python bench/torch_mlp.py train --epochs "$epochs" --threads "$threads" >"$log" 2>&1
    logs+=("$log")
  done
done

$python - "${logs[@]}" <<'PY'
import collections, re, statistics, sys
wall, cpu, devices = collections.defaultdict(list), collections.defaultdict(list), {}
for path in sys.argv[1:]:
    name = re.sub(r"-r\d+\.log$", "", path.rsplit("/", 1)[1])
    text = open(path).read()
    for took, used in re.findall(r"epoch \d+ took (\d+\.\d+) s \((\d+\.\d+) s CPU\)", text):
        wall[name].append(float(took))
        cpu[name].append(float(used))
    device = re.search(r"device: (.*)", text)
    if device:
        devices[name] = device.group(1)
median = lambda values: {name: statistics.median(v) for name, v in values.items()}
wall_median, cpu_median = median(wall), median(cpu)
best_wall = min(v for name, v in wall_median.items() if name.startswith("torch"))
best_cpu = min(v for name, v in cpu_median.items() if name.startswith("torch"))
print("| contender | epochs timed | median wall s/epoch | ratio to PyTorch's best | median CPU s/epoch | ratio |")
print("|---|---|---|---|---|---|")
for name in wall:
    label = f"{name} ({devices[name]})" if name in devices else name
    print(f"| {label} | {len(wall[name])} | {wall_median[name]:.3f} | {wall_median[name] / best_wall:.2f} "
          f"| {cpu_median[name]:.3f} | {cpu_median[name] / best_cpu:.2f} |")
PY
