"""Issue 15, item 6: a 4 GiB float32 checkpoint (205 tensors of 20 MiB)
converted single safetensors -> sharded set -> single with ckpt-convert
--jobs 1 and --jobs 2, against `cp` (+ `sync -f`) of the input and against
Python doing the same job (safetensors `save_file` per shard with
huggingface_hub's splitter; `load_file` of every shard + `save_file`),
plain and followed by `sync -f`; `ckpt-inspect --stats` against numpy on the
same file; 5,000 small tensors (npy directory -> safetensors) against numpy +
`save_file`. Every job is a whole process, timed from start to exit, with its
peak resident memory (GNU time's %M). Runs alternate; medians of RUNS.

Outputs are renamed aside after each run, never deleted just before a timed
run; the 4 GiB outputs do not fit on the disk many times over, so each is
deleted after its run followed by `sync -f` and a 3 s pause, and the small
ones are deleted after all runs.

    /usr/bin/python3 bench/parallel_bench.py BUILD_DIR WORK_DIR [RUNS]

Peers run in the venv of scripts/make-hf-venv.sh (safetensors,
huggingface_hub, numpy 2).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

BUILD, WORK = sys.argv[1], sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERT = os.path.join(BUILD, "tools/ckpt-convert/ckpt-convert")
INSPECT = os.path.join(BUILD, "tools/ckpt-inspect/ckpt-inspect")
PEER = subprocess.run([os.path.join(ROOT, "scripts/make-hf-venv.sh")], capture_output=True, text=True,
                      check=True).stdout.strip()
TENSORS = int(os.environ.get("BENCH_TENSORS", 205))  # fewer for a quick check of the script
ROWS, COLS = 2560, 2048  # 205 x 20 MiB = 4,299,161,600 bytes of data
SHARD = "500MB"

MAKE_SINGLE = r'''
import json, struct, sys
import numpy as np
path, count, rows, cols = sys.argv[1], *map(int, sys.argv[2:5])
size = rows * cols * 4
header = {f"layers.{i:03}.weight": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [i * size, (i + 1) * size]}
          for i in range(count)}
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
rng = np.random.default_rng(15)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for i in range(count):
        f.write(rng.standard_normal((rows, cols), dtype=np.float32).tobytes())
'''

PEER_SPLIT = r'''
import json, os, subprocess, sys
import numpy as np
from huggingface_hub import constants, split_state_dict_into_shards_factory
from safetensors import safe_open
from safetensors.numpy import save_file
source, out, limit, sync = sys.argv[1:5]
with safe_open(source, framework="numpy") as f:
    sizes = {name: int(np.prod(f.get_slice(name).get_shape())) * 4 for name in f.keys()}
    split = split_state_dict_into_shards_factory(sizes, get_storage_size=lambda size: size, max_shard_size=limit,
                                                 filename_pattern=constants.SAFETENSORS_WEIGHTS_FILE_PATTERN)
    os.mkdir(out)
    for file, names in split.filename_to_tensors.items():
        save_file({name: f.get_tensor(name) for name in names}, os.path.join(out, file), metadata={"format": "pt"})
with open(os.path.join(out, constants.SAFETENSORS_INDEX_FILE), "w") as index:
    json.dump({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, index, indent=2)
if sync == "sync":
    subprocess.run(["sync", "-f", out], check=True)
'''

PEER_MERGE = r'''
import json, os, subprocess, sys
from safetensors.numpy import load_file, save_file
source, out, sync = sys.argv[1:4]
with open(os.path.join(source, "model.safetensors.index.json")) as f:
    files = sorted(set(json.load(f)["weight_map"].values()))
tensors = {}
for file in files:
    tensors.update(load_file(os.path.join(source, file)))
save_file(tensors, out)
if sync == "sync":
    subprocess.run(["sync", "-f", out], check=True)
'''

PEER_STATS = r'''
import sys
import numpy as np
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    for name in f.keys():
        a = f.get_tensor(name)
        finite = a[np.isfinite(a)]
        print(name, finite.min(), finite.max(), finite.mean(dtype=np.float64), finite.std(dtype=np.float64),
              np.isnan(a).sum(), np.isinf(a).sum())
'''

MAKE_MANY = r'''
import os, sys
import numpy as np
root = sys.argv[1]
os.mkdir(root)
rng = np.random.default_rng(5)
for i in range(5000):
    np.save(f"{root}/v{i:05}.npy", rng.standard_normal(8192, dtype=np.float32))
'''

PEER_MANY = r'''
import os, subprocess, sys
import numpy as np
from safetensors.numpy import save_file
source, out, sync = sys.argv[1:4]
save_file({file[:-4]: np.load(os.path.join(source, file)) for file in sorted(os.listdir(source))}, out)
if sync == "sync":
    subprocess.run(["sync", "-f", out], check=True)
'''


def timed(args):
    """Wall seconds and peak RSS (bytes) of one process, the latter from GNU
    time (a child of Python would carry the interpreter's peak across exec)."""
    report = work("rss")
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report, *args], stdout=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    with open(report) as f:
        return elapsed, int(f.read().split()[-1]) * 1024


def shell(command):
    return ["/bin/sh", "-c", command]


def work(name):
    return os.path.join(WORK, name)


def main():
    os.makedirs(WORK)
    single, sharded, many = work("single.safetensors"), work("sharded"), work("many")
    subprocess.run([PEER, "-c", MAKE_SINGLE, single, str(TENSORS), str(ROWS), str(COLS)], check=True)
    subprocess.run([CONVERT, single, sharded, "--to", "safetensors-sharded", "--max-shard-size", SHARD, "-q"], check=True)
    subprocess.run([PEER, "-c", MAKE_MANY, many], check=True)
    data_bytes = TENSORS * ROWS * COLS * 4
    big_jobs = {
        "split: ckpt-convert --jobs 1": lambda out: [CONVERT, single, out, "--to", "safetensors-sharded",
                                                     "--max-shard-size", SHARD, "--jobs", "1", "-q"],
        "split: ckpt-convert --jobs 2": lambda out: [CONVERT, single, out, "--to", "safetensors-sharded",
                                                     "--max-shard-size", SHARD, "--jobs", "2", "-q"],
        "split: Python splitter + save_file": lambda out: [PEER, "-c", PEER_SPLIT, single, out, SHARD, "nosync"],
        "split: Python splitter + save_file + sync -f": lambda out: [PEER, "-c", PEER_SPLIT, single, out, SHARD, "sync"],
        "split: cp (the single file)": lambda out: ["cp", single, out],
        "split: cp + sync -f": lambda out: shell(f"cp {single} {out} && sync -f {out}"),
        "merge: ckpt-convert --jobs 1": lambda out: [CONVERT, sharded, out + ".safetensors", "--jobs", "1", "-q"],
        "merge: ckpt-convert --jobs 2": lambda out: [CONVERT, sharded, out + ".safetensors", "--jobs", "2", "-q"],
        "merge: Python load_file + save_file": lambda out: [PEER, "-c", PEER_MERGE, sharded, out, "nosync"],
        "merge: Python load_file + save_file + sync -f": lambda out: [PEER, "-c", PEER_MERGE, sharded, out, "sync"],
        "merge: cp -r (the set)": lambda out: ["cp", "-r", sharded, out],
        "merge: cp -r + sync -f": lambda out: shell(f"cp -r {sharded} {out} && sync -f {out}"),
    }
    read_jobs = {
        "stats: ckpt-inspect --stats --jobs 1": [INSPECT, single, "--stats", "--jobs", "1"],
        "stats: ckpt-inspect --stats --jobs 2": [INSPECT, single, "--stats", "--jobs", "2"],
        "stats: numpy (finite min, max, mean, std; NaN and Inf counts)": [PEER, "-c", PEER_STATS, single],
    }
    many_jobs = {
        "many: ckpt-convert --jobs 1": lambda out: [CONVERT, many, out + ".safetensors", "--jobs", "1", "-q"],
        "many: ckpt-convert --jobs 2": lambda out: [CONVERT, many, out + ".safetensors", "--jobs", "2", "-q"],
        "many: numpy load + save_file": lambda out: [PEER, "-c", PEER_MANY, many, out, "nosync"],
        "many: numpy load + save_file + sync -f": lambda out: [PEER, "-c", PEER_MANY, many, out, "sync"],
    }
    results = {name: [] for name in [*big_jobs, *read_jobs, *many_jobs]}
    aside = work("aside")
    os.mkdir(aside)
    for run in range(RUNS):
        for i, (name, command) in enumerate(big_jobs.items()):
            out = work(f"out-{run}-{i}")
            results[name].append(timed(command(out)))
            for produced in (out, out + ".safetensors"):
                if os.path.lexists(produced):
                    os.rename(produced, os.path.join(aside, os.path.basename(produced)))
            shutil.rmtree(aside)
            os.mkdir(aside)
            subprocess.run(["sync", "-f", WORK], check=True)
            time.sleep(3)
        for name, command in read_jobs.items():
            results[name].append(timed(command))
        for i, (name, command) in enumerate(many_jobs.items()):
            out = work(f"many-out-{run}-{i}")
            results[name].append(timed(command(out)))
            for produced in (out, out + ".safetensors"):
                if os.path.lexists(produced):
                    os.rename(produced, os.path.join(aside, f"many-{run}-{i}-" + os.path.basename(produced)))
    report = {name: {"median_s": statistics.median(t for t, _ in runs), "runs_s": [round(t, 3) for t, _ in runs],
                     "peak_rss_mib": round(max(m for _, m in runs) / 2**20, 1)} for name, runs in results.items()}
    report["data_bytes"] = data_bytes
    print(json.dumps(report, indent=1))
    print("| job | median | runs (s) | peak RSS |\n|---|---|---|---|")
    for name, row in report.items():
        if isinstance(row, dict):
            runs = " ".join(f"{t:.2f}" for t in row["runs_s"])
            print(f"| {name} | {row['median_s']:.2f} s | {runs} | {row['peak_rss_mib']} MiB |")
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
