"""torch itself proves the interop: torch.save -> our reader, and our writer -> torch.load(weights_only=True).

Usage: test_torch_interop.py TORCH_TOOL (the tests/interop/torch_tool executable).
"""
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

import torch

TOOL = sys.argv.pop(1)


def run(*args):
    done = subprocess.run([TOOL, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"torch_tool {' '.join(args)} failed: {done.stderr}")


def flat(obj, prefix=""):
    """The dotted names our reader gives: keys and indices joined by '.'."""
    if isinstance(obj, torch.Tensor):
        return {prefix or "data": obj}
    out = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    for key, value in items:
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


DTYPES = {
    "kFloat": torch.float32, "kDouble": torch.float64, "kFloat16": torch.float16, "kBFloat16": torch.bfloat16,
    "kInt64": torch.int64, "kInt32": torch.int32, "kInt16": torch.int16, "kInt8": torch.int8, "kUInt8": torch.uint8,
    "kBool": torch.bool,
}


def load_dump(directory):
    tensors = {}
    with open(os.path.join(directory, "manifest.tsv")) as manifest:
        for index, line in enumerate(manifest):
            name, dtype, dims = line.rstrip("\n").split("\t")
            shape = [int(d) for d in dims.split(",")] if dims else []
            with open(os.path.join(directory, f"{index}.bin"), "rb") as data:
                raw = bytearray(data.read())
            flat_tensor = torch.frombuffer(raw, dtype=DTYPES[dtype]) if raw else torch.empty(0, dtype=DTYPES[dtype])
            tensors[name] = flat_tensor.reshape(shape)
    return tensors


def sample_state():
    torch.manual_seed(5)
    base = torch.randn(6, 8)
    shared = torch.arange(20, dtype=torch.int64)
    return {
        "model": {
            "l1.weight": torch.randn(4, 3),
            "transposed": base.t(),                # non-contiguous view
            "sliced": base[1:5, 2:7:2],            # offset + strides
            "tied": base,                          # shares the storage of the two views above
            "bf16": torch.randn(3, 5).to(torch.bfloat16),
            "half": torch.randn(2, 2).half(),
            "int64": shared[3:11],                 # a view at an offset
            "int64_full": shared,
            "bool": torch.tensor([True, False, True, True]),
            "uint8": torch.arange(7, dtype=torch.uint8),
            "scalar": torch.tensor(2.5, dtype=torch.float64),
            "empty": torch.zeros(0, 3),
        },
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(4, 3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "epoch": 3,
    }


class TorchInterop(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_torch_save_reads_with_equal_values(self):
        state = sample_state()
        torch.save(state, self.path("state.pt"))
        os.mkdir(self.path("dump"))
        run("dump", self.path("state.pt"), self.path("dump"))
        ours = load_dump(self.path("dump"))
        expected = flat(state)
        self.assertEqual(sorted(ours), sorted(expected))
        for name, tensor in expected.items():
            with self.subTest(name=name):
                self.assertEqual(ours[name].dtype, tensor.dtype)
                self.assertEqual(list(ours[name].shape), list(tensor.shape))
                self.assertTrue(torch.equal(ours[name], tensor))

    def test_our_write_loads_with_weights_only(self):
        state = sample_state()["model"]
        torch.save(state, self.path("source.pt"))
        os.mkdir(self.path("dump"))
        run("dump", self.path("source.pt"), self.path("dump"))
        run("write", self.path("ours.pt"), self.path("dump"))
        loaded = torch.load(self.path("ours.pt"), weights_only=True)
        self.assertIsInstance(loaded, dict)
        self.assertEqual(sorted(loaded), sorted(state))
        for name, tensor in state.items():
            with self.subTest(name=name):
                self.assertEqual(loaded[name].dtype, tensor.dtype)
                self.assertTrue(torch.equal(loaded[name], tensor))
        # Records start at multiples of 64, as torch writes them.
        with zipfile.ZipFile(self.path("ours.pt")) as archive:
            for info in archive.infolist():
                with open(self.path("ours.pt"), "rb") as raw:
                    raw.seek(info.header_offset + 26)
                    name_length = int.from_bytes(raw.read(2), "little")
                    extra_length = int.from_bytes(raw.read(2), "little")
                data_offset = info.header_offset + 30 + name_length + extra_length
                self.assertEqual(data_offset % 64, 0, info.filename)
        # And our reader reads back its own file.
        os.mkdir(self.path("again"))
        run("dump", self.path("ours.pt"), self.path("again"))
        self.assertEqual(sorted(load_dump(self.path("again"))), sorted(state))

    def test_hostile_pickle_in_a_torch_file_runs_nothing(self):
        witness = self.path("pwned")

        class Exploit:
            def __reduce__(self):
                return (os.system, (f"touch {witness}",))

        torch.save({"x": Exploit()}, self.path("evil.pt"))
        done = subprocess.run([TOOL, "dump", self.path("evil.pt"), self.dir.name], capture_output=True, text=True)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("posix.system", done.stderr)
        self.assertFalse(os.path.exists(witness))


if __name__ == "__main__":
    unittest.main()
