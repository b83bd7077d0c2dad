"""Writes seed inputs for the fuzz targets into build-fuzz/corpus/<target>/:
real files made by numpy and torch, and the pickles of the fixtures."""
import io
import json
import os
import struct
import sys
import zipfile

import numpy as np

out = sys.argv[1]
fixtures = sys.argv[2]


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)


def npy_bytes(array, version=None):
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


arrays = {
    "f4_2d": np.arange(6, dtype="<f4").reshape(2, 3),
    "f8_be": np.arange(4, dtype=">f8"),
    "i2_fortran": np.asfortranarray(np.arange(12, dtype="<i2").reshape(3, 4)),
    "bool_0d": np.array(True),
    "c8_empty": np.zeros((0, 3), dtype="<c8"),
    "u1": np.arange(10, dtype="u1"),
}
for name, array in arrays.items():
    put("fuzz_npy", name, npy_bytes(array))
put("fuzz_npy", "v2", npy_bytes(arrays["f4_2d"], version=(2, 0)))
put("fuzz_npy", "v3", npy_bytes(arrays["f4_2d"], version=(3, 0)))

for compressed in (False, True):
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, a=arrays["f4_2d"], b=arrays["u1"])
    put("fuzz_zip", f"npz_{compressed}", buffer.getvalue())

for root, _, files in os.walk(fixtures):
    for f in files:
        if f == "pickled_data":
            path = os.path.join(root, f)
            put("fuzz_pickle", os.path.basename(root), open(path, "rb").read())
        elif f.startswith("C_single_file"):  # OneFlow 1.0's single file: numpy arrays and dtypes
            put("fuzz_pickle", f, open(os.path.join(root, f), "rb").read())

try:
    import torch
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3, dtype=torch.bfloat16)}
    state["view"] = state["w"].t()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    put("fuzz_torch", "state_dict", buffer.getvalue())
    put("fuzz_zip", "torch", buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as z:
        for name in z.namelist():
            if name.endswith("data.pkl"):
                put("fuzz_pickle", "torch_data_pkl", z.read(name))
except ImportError:
    pass

# IDX: a few real Fashion-MNIST records, plain and gzipped.
import gzip
images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
if os.path.exists(images):
    raw = gzip.open(images).read(16 + 3 * 784)
    put("fuzz_idx", "images_plain", bytes(raw[:4]) + struct.pack(">I", 3) + raw[8:])
    put("fuzz_idx", "images_gz", gzip.compress(bytes(raw[:4]) + struct.pack(">I", 3) + raw[8:]))
    put("fuzz_idx", "labels_plain", struct.pack(">II", 0x801, 4) + bytes([1, 2, 3, 9]))

header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                     "__metadata__": {"format": "pt"}}).encode()
header += b" " * (-len(header) % 8)
put("fuzz_safetensors", "small", struct.pack("<Q", len(header)) + header + np.arange(6, dtype="<f4").tobytes())
