"""Loading checkpoints from Python: ckptio against safetensors, numpy and
torch on the "big" (8 tensors x 128 MiB) and "many" (5,000 x 32 KiB)
checkpoints of bench/convert_bench.sh, page cache warm, best of RUNS.

  open + touch: open, then sum every tensor (every byte read once)
  open + read : open, then a private in-memory copy of every tensor

and the cost of opening alone for the same 8 tensors at 1 GiB and 8 GiB
(sparse files: nothing is read, so only O(tensors) work can stay flat).

  <venv>/bin/python bench/python_load_bench.py [WORK_DIR] [RUNS]
(the venv of tests/python/run_pytest.py has ckptio, safetensors and
ml_dtypes; torch and numpy are Debian's)."""
import os
import shutil
import sys
import time

import numpy as np
import safetensors.numpy
import torch
from safetensors import safe_open

import ckptio

WORK = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ckpt-pybench"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def best(job):
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def make(kind, count, floats):
    root = os.path.join(WORK, kind)
    os.makedirs(root)
    rng = np.random.default_rng(1)
    chunk = rng.standard_normal(floats, dtype=np.float32)
    tensors = {f"v{i:05d}": chunk + np.float32(i) for i in range(count)}  # distinct: torch.save would share one storage
    paths = {"safetensors": os.path.join(root, "m.safetensors"), "npy": os.path.join(root, "npy"),
             "torch": os.path.join(root, "m.pt")}
    safetensors.numpy.save_file(tensors, paths["safetensors"])
    os.makedirs(paths["npy"])
    for name, array in tensors.items():
        np.save(os.path.join(paths["npy"], name + ".npy"), array)
    torch.save({name: torch.from_numpy(array) for name, array in tensors.items()}, paths["torch"])
    return paths, count * floats * 4


def jobs(paths):
    st, npy, pt = paths["safetensors"], paths["npy"], paths["torch"]
    npy_files = sorted(os.listdir(npy))

    def ckptio_touch(path):
        with ckptio.open(path) as ckpt:
            for name in ckpt:
                ckpt[name].sum()

    def ckptio_read(path):
        with ckptio.open(path) as ckpt:
            for name in ckpt:
                np.array(ckpt[name])

    def safe_open_touch():
        with safe_open(st, framework="numpy") as f:
            for name in f.keys():
                f.get_tensor(name).sum()

    def np_mmap_touch():
        for file in npy_files:
            np.load(os.path.join(npy, file), mmap_mode="r").sum()

    def np_read():
        for file in npy_files:
            np.load(os.path.join(npy, file))

    def torch_touch():
        for tensor in torch.load(pt).values():
            tensor.sum()

    return [
        ("open + touch", "ckptio.open (safetensors)", lambda: ckptio_touch(st)),
        ("open + touch", "ckptio.open (npy dir)", lambda: ckptio_touch(npy)),
        ("open + touch", "ckptio.open (torch)", lambda: ckptio_touch(pt)),
        ("open + touch", "safetensors safe_open", safe_open_touch),
        ("open + touch", "np.load(mmap_mode='r') (npy dir)", np_mmap_touch),
        ("open + touch", "torch.load", torch_touch),
        ("open + read", "ckptio.open (safetensors) + np.array", lambda: ckptio_read(st)),
        ("open + read", "ckptio.open (npy dir) + np.array", lambda: ckptio_read(npy)),
        ("open + read", "safetensors.numpy.load_file", lambda: safetensors.numpy.load_file(st)),
        ("open + read", "np.load (npy dir)", np_read),
        ("open + read", "torch.load", lambda: torch.load(pt)),
    ]


def sparse_safetensors(path, count, floats):
    """A safetensors file of `count` float32 tensors whose data is a hole."""
    import json
    import struct

    header = {f"v{i}": {"dtype": "F32", "shape": [floats], "data_offsets": [i * floats * 4, (i + 1) * floats * 4]}
              for i in range(count)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + count * floats * 4)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    for kind, count, floats in (("big", 8, 32 << 20), ("many", 5000, 8 << 10)):
        paths, nbytes = make(kind, count, floats)
        print(f"\n### {kind}: {count} tensors, {nbytes:,} bytes of float32\n")
        print("| job | reader | time | GB/s |")
        print("|---|---|---|---|")
        for job, reader, run in jobs(paths):
            seconds = best(run)
            print(f"| {job} | {reader} | {seconds:.3f} s | {nbytes / seconds / 1e9:.2f} |", flush=True)
        shutil.rmtree(os.path.join(WORK, kind))
    print("\n### open alone, 8 tensors: 1 GiB vs 8 GiB (sparse files)\n")
    print("| size | ckptio.open + close | safe_open |")
    print("|---|---|---|")
    for gib in (1, 8):
        path = os.path.join(WORK, f"sparse{gib}.safetensors")
        sparse_safetensors(path, 8, gib * (32 << 20))
        opened = best(lambda: ckptio.open(path).close())
        safe = best(lambda: safe_open(path, framework="numpy").keys())
        print(f"| {gib} GiB | {opened * 1e6:.0f} µs | {safe * 1e6:.0f} µs |")
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
