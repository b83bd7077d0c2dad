#!/usr/bin/env bash
# Multi-rank save and load throughput (spec/collective.md) on 1, 2 and 4
# ranks for a few checkpoint sizes, then a plot (Debian's python3-matplotlib).
#   bench/collective_bench.sh BUILD_DIR WORK_DIR [SIZES_MIB] [RUNS]
# Each run writes a new directory (outputs are never deleted just before a
# timed run: on this file system creating files right after a mass delete is
# slower); all are removed at the end. Prints a CSV with the median of RUNS
# per point and writes WORK_DIR/collective.png.
set -euo pipefail
build=$1 work=$2 sizes=${3:-"64 256 1024"} runs=${4:-3}
tensors=16
bench="$build/bench/collective_bench"
mkdir -p "$work"
csv="$work/collective.csv"
echo "ranks,bytes,tensors,save_s,load_rows_s,load_columns_s" > "$csv"
n=0
for size in $sizes; do
  for ranks in 1 2 4; do
    for run in $(seq "$runs"); do
      n=$((n + 1))
      mpirun --oversubscribe --allow-run-as-root -np "$ranks" "$bench" "$work/out-$n" "$size" "$tensors" >> "$csv"
    done
  done
done
rm -rf "$work"/out-*
/usr/bin/python3 "$(dirname "$0")/plot_collective.py" "$csv" "$work/collective.png"
