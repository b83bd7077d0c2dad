"""Whatever ckpt's writers commit from hostile names and shapes, the peers
read back equal: numpy (npy directories, npz), torch 1.13 (.pt,
weights_only), safetensors (the pip package when installed, else a strict
reader written here from the format: UTF-8 JSON header, offsets into the
buffer). hostile_writes has already checked ckpt's own reader and that every
tensor it could not store was refused."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

try:
    import safetensors.numpy as safetensors_peer
except ImportError:
    safetensors_peer = None

HOSTILE_WRITES = sys.argv[1]
ROUNDS = os.environ.get("CKPT_HOSTILE_ROUNDS", "60")
SEED = os.environ.get("CKPT_HOSTILE_SEED", "20261129")

# OneFlow dtype name -> the numpy dtype the peers give back (None: numpy has none).
NUMPY_DTYPE = {
    "kChar": "int8", "kInt8": "int8", "kUInt8": "uint8", "kBool": "bool", "kInt16": "int16", "kUInt16": "uint16",
    "kInt32": "int32", "kUInt32": "uint32", "kInt64": "int64", "kUInt64": "uint64", "kFloat16": "float16",
    "kFloat": "float32", "kDouble": "float64", "kComplex64": "complex64", "kComplex128": "complex128",
    "kBFloat16": None,
}
TORCH_DTYPE = {
    "kChar": torch.int8, "kInt8": torch.int8, "kUInt8": torch.uint8, "kBool": torch.bool, "kInt16": torch.int16,
    "kInt32": torch.int32, "kInt64": torch.int64, "kFloat16": torch.float16, "kFloat": torch.float32,
    "kDouble": torch.float64, "kComplex64": torch.complex64, "kComplex128": torch.complex128,
    "kBFloat16": torch.bfloat16,
}


def expected_tensors(line):
    return {bytes.fromhex(t["name"]): t for t in line["tensors"]}


class HostileWrites(unittest.TestCase):
    def check_numpy_array(self, array, tensor):
        self.assertEqual(list(array.shape), tensor["shape"])
        wanted = NUMPY_DTYPE[tensor["dtype"]]
        if wanted is not None:
            self.assertEqual(array.dtype, np.dtype(wanted))
        else:
            self.assertEqual(array.dtype, np.dtype("V2"))  # bfloat16 is stored as '<V2'
        self.assertEqual(np.ascontiguousarray(array).tobytes(), bytes.fromhex(tensor["data"]))

    def check_npy(self, line):
        root = os.fsencode(line["path"])
        for name, tensor in expected_tensors(line).items():
            self.check_numpy_array(np.load(os.path.join(root, name + b".npy")), tensor)
        self.assertEqual(len([n for n in os.listdir(root) if n.endswith(b".npy")]), len(line["tensors"]))

    def check_npz(self, line):
        with np.load(line["path"]) as archive:
            wanted = {name.decode("utf-8"): t for name, t in expected_tensors(line).items()}
            self.assertEqual(sorted(archive.files), sorted(wanted))
            for name, tensor in wanted.items():
                self.check_numpy_array(archive[name], tensor)

    def check_torch(self, line):
        if any(t["dtype"] not in TORCH_DTYPE for t in line["tensors"]):
            # uint16/32/64, float8, complex32 go through _rebuild_tensor_v3, which torch 1.13
            # cannot read; tests/interop/test_formats_interop.py checks them by torch's own rules.
            return
        state = torch.load(line["path"], weights_only=True)
        wanted = {name.decode("utf-8"): t for name, t in expected_tensors(line).items()}
        self.assertEqual(sorted(state), sorted(wanted))
        for name, tensor in wanted.items():
            value = state[name]
            self.assertEqual(list(value.shape), tensor["shape"])
            self.assertEqual(value.dtype, TORCH_DTYPE[tensor["dtype"]])
            raw = value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            self.assertEqual(raw, bytes.fromhex(tensor["data"]))

    def check_safetensors(self, line):
        wanted = {name.decode("utf-8"): t for name, t in expected_tensors(line).items()}
        with open(line["path"], "rb") as f:
            raw = f.read()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + length].decode("utf-8"))  # strict: invalid UTF-8 raises
        header.pop("__metadata__", None)
        self.assertEqual(sorted(header), sorted(wanted))
        for name, tensor in wanted.items():
            begin, end = header[name]["data_offsets"]
            self.assertEqual(header[name]["shape"], tensor["shape"])
            self.assertEqual(raw[8 + length + begin:8 + length + end], bytes.fromhex(tensor["data"]))
        if safetensors_peer is not None and all(t["dtype"] != "kBFloat16" for t in wanted.values()):
            loaded = safetensors_peer.load_file(line["path"])
            for name, tensor in wanted.items():
                self.check_numpy_array(loaded[name], tensor)

    def test_peers_read_back_what_was_committed(self):
        checks = {"npy": self.check_npy, "npz": self.check_npz, "torch": self.check_torch,
                  "safetensors": self.check_safetensors}
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run([HOSTILE_WRITES, tmp, SEED, ROUNDS], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            print(run.stdout.strip())
            checked = {}
            with open(os.path.join(tmp, "manifest.jsonl")) as manifest:
                for text in manifest:
                    line = json.loads(text)
                    if line["format"] not in checks:
                        continue  # OneFlow formats: no peer here; hostile_writes read them back
                    with self.subTest(path=line["path"]):
                        checks[line["format"]](line)
                    checked[line["format"]] = checked.get(line["format"], 0) + 1
            print("checked by peers:", checked, "(safetensors:", "package)" if safetensors_peer else "strict reader)")
            self.assertEqual(set(checked), set(checks))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
