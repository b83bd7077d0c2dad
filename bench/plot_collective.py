"""Plots bench/collective_bench.sh's CSV: time against ranks (one line per
size) and throughput against checkpoint size (one line per rank count), for
save and the two loads. Prints the medians as a Markdown table.

usage: plot_collective.py CSV PNG
"""
import csv
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = list(csv.DictReader(open(sys.argv[1])))
runs = defaultdict(list)
for row in rows:
    runs[(int(row["ranks"]), int(row["bytes"]))].append(row)
jobs = [("save_s", "save"), ("load_rows_s", "load, same split"), ("load_columns_s", "load, columns (resharded)")]
median = {key: {job: statistics.median(float(r[job]) for r in group) for job, _ in jobs} for key, group in runs.items()}
ranks = sorted({k[0] for k in median})
sizes = sorted({k[1] for k in median})

print("| ranks | checkpoint | save | GB/s | load, same split | GB/s | load, columns | GB/s |")
print("|---|---|---|---|---|---|---|---|")
for size in sizes:
    for r in ranks:
        m = median[(r, size)]
        cells = " | ".join(f"{m[job]:.3f} s | {size / m[job] / 1e9:.2f}" for job, _ in jobs)
        print(f"| {r} | {size / 2**20:.0f} MiB | {cells} |")

figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
styles = {"save_s": "-", "load_rows_s": "--", "load_columns_s": ":"}
for size in sizes:
    for job, label in jobs:
        axes[0].plot(ranks, [median[(r, size)][job] for r in ranks], styles[job], marker="o",
                     label=f"{label}, {size / 2**20:.0f} MiB")
axes[0].set_xlabel("MPI ranks (sharing 2 cores)")
axes[0].set_ylabel("time (s)")
axes[0].set_xticks(ranks)
axes[0].set_title("time against ranks")
axes[0].legend(fontsize=7)
for r in ranks:
    for job, label in jobs:
        axes[1].plot([s / 2**20 for s in sizes], [s / median[(r, s)][job] / 1e9 for s in sizes], styles[job],
                     marker="o", label=f"{label}, {r} ranks")
axes[1].set_xscale("log", base=2)
axes[1].set_xlabel("checkpoint size (MiB)")
axes[1].set_ylabel("throughput (GB/s)")
axes[1].set_title("throughput against checkpoint size")
axes[1].legend(fontsize=7)
figure.suptitle("ckpt collective save/load (16 float32 tensors, row-split over the ranks; 2 shared cores)")
figure.tight_layout()
figure.savefig(sys.argv[2], dpi=110)
