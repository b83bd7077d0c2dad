"""torch itself proves the interop: torch.save -> our reader, and our writer -> torch.load(weights_only=True),
for flat state_dicts, the real OneFlow P1 fixture and the nested tutorial object through P1.

Usage: test_torch_interop.py TORCH_TOOL CKPT_CONVERT CKPT_INSPECT; CKPT_FIXTURES set.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
import struct
import zipfile

import torch

from torch_names import flat

TOOL = sys.argv.pop(1)
CONVERT = sys.argv.pop(1)
INSPECT = sys.argv.pop(1)


def run(command, *args):
    """torch_tool dump|write ..., or a conversion through ckpt-convert itself."""
    argv = [CONVERT, args[0], args[1], "--to", args[2]] if command == "convert" else [TOOL, command, *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {done.stderr}")



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


class WholeModel(torch.nn.Module):
    """A module with parameters, buffers and nested modules, saved whole (its class is __main__'s)."""

    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(3, 2)
        self.bn = torch.nn.BatchNorm1d(2)
        self.seq = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.ReLU())


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

    def assert_same_object(self, ours, theirs, where="object"):
        """Equal trees: same container types and keys, equal plain leaves, equal tensors."""
        if isinstance(theirs, torch.Tensor):
            self.assertIsInstance(ours, torch.Tensor, where)
            self.assertEqual(ours.dtype, theirs.dtype, where)
            self.assertTrue(torch.equal(ours, theirs), where)
        elif isinstance(theirs, dict):
            self.assertIsInstance(ours, dict, where)
            self.assertEqual(list(ours), list(theirs), where)
            for key in theirs:
                self.assert_same_object(ours[key], theirs[key], f"{where}[{key!r}]")
        elif isinstance(theirs, (list, tuple)):
            self.assertEqual(type(ours), type(theirs), where)
            self.assertEqual(len(ours), len(theirs), where)
            for index, (a, b) in enumerate(zip(ours, theirs)):
                self.assert_same_object(a, b, f"{where}[{index}]")
        else:
            self.assertEqual(ours, theirs, where)

    def test_real_oneflow_p1_converts_to_a_file_torch_loads_with_equal_values(self):
        frappe = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_dcn_frappe_pickledir_proto3")
        run("convert", frappe, self.path("frappe.pt"), "torch")
        loaded = torch.load(self.path("frappe.pt"), weights_only=True)
        os.mkdir(self.path("p1"))
        run("dump", frappe, self.path("p1"))
        expected = load_dump(self.path("p1"))
        self.assertEqual(len(expected), 42)
        self.assertEqual(sorted(flat(loaded)), sorted(expected))
        for name, tensor in flat(loaded).items():
            with self.subTest(name=name):
                self.assertEqual(tensor.dtype, expected[name].dtype)
                self.assertTrue(torch.equal(tensor, expected[name]))

    def test_tutorial_object_round_trips_through_p1_and_torch(self):
        state = sample_state()
        torch.save(state, self.path("tutorial.pt"))
        run("convert", self.path("tutorial.pt"), self.path("p1"), "oneflow-pickle")
        run("convert", self.path("p1"), self.path("back.pt"), "torch")
        # torch 1.13's weights_only unpickler has no BINFLOAT, so it cannot load
        # the float lr, not even from torch.save's own file: the whole object is
        # checked with the full unpickler, the float-free part with weights_only.
        loaded = torch.load(self.path("back.pt"))
        # Views come back contiguous with the same values; everything else as saved.
        self.assert_same_object(loaded, state)
        self.assertEqual(loaded["epoch"], 3)
        self.assertEqual(list(loaded["optimizer"]["state"]), [0])

        del state["optimizer"]["param_groups"][0]["lr"]
        torch.save(state, self.path("no_float.pt"))
        run("convert", self.path("no_float.pt"), self.path("p1_no_float"), "oneflow-pickle")
        run("convert", self.path("p1_no_float"), self.path("no_float_back.pt"), "torch")
        self.assert_same_object(torch.load(self.path("no_float_back.pt"), weights_only=True), state)

    def test_torch_state_dict_through_a_snapshot_back_to_torch(self):
        state = sample_state()["model"]
        torch.save(state, self.path("source.pt"))
        run("convert", self.path("source.pt"), self.path("snapshot"), "oneflow")
        self.assertTrue(os.path.exists(os.path.join(self.path("snapshot"), "snapshot_done")))
        run("convert", self.path("snapshot"), self.path("back.pt"), "torch")
        loaded = torch.load(self.path("back.pt"), weights_only=True)
        self.assertEqual(sorted(loaded), sorted(state))
        for name, tensor in state.items():
            with self.subTest(name=name):
                self.assertEqual(loaded[name].dtype, tensor.dtype)
                self.assertTrue(torch.equal(loaded[name], tensor))

    def test_whole_module_save_reads_as_its_state_dict(self):
        """torch.save(model): the classes become inert stubs, the tensors are named as state_dict() names them."""
        torch.manual_seed(0)
        model = WholeModel()
        torch.save(model, self.path("model.pt"))
        os.mkdir(self.path("dump"))
        run("dump", self.path("model.pt"), self.path("dump"))
        ours = load_dump(self.path("dump"))
        expected = model.state_dict()
        self.assertEqual(sorted(ours), sorted(expected))
        for name, tensor in expected.items():
            with self.subTest(name=name):
                self.assertEqual(ours[name].dtype, tensor.dtype)
                self.assertTrue(torch.equal(ours[name], tensor))

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

    def refused(self, data, name):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        done = subprocess.run([CONVERT, path, self.path(name + ".npz")], capture_output=True, text=True)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertFalse(os.path.exists(self.path(name + ".npz")))
        return done.stderr

    def test_zip_records_outside_the_archive_or_overlapping_are_refused(self):
        buffer = io.BytesIO()
        torch.save({"w": torch.arange(4, dtype=torch.float32), "b": torch.ones(2)}, buffer)
        good = buffer.getvalue()
        members = zipfile.ZipFile(io.BytesIO(good))

        # A storage record renamed to leave the archive's root folder.
        escaped = io.BytesIO()
        with zipfile.ZipFile(escaped, "w", zipfile.ZIP_STORED) as out:
            for name in members.namelist():
                out.writestr("../evil/data/0" if name.endswith("data/0") else name, members.read(name))
        self.assertIn("E603", self.refused(escaped.getvalue(), "escaped.pt"))

        # Two central-directory entries pointing at the same local record.
        raw = bytearray(good)
        end = raw.rfind(b"PK\x05\x06")
        position = struct.unpack_from("<I", raw, end + 16)[0]
        offsets = {}
        while raw[position:position + 4] == b"PK\x01\x02":
            name_length, extra_length, comment_length = struct.unpack_from("<HHH", raw, position + 28)
            offsets[bytes(raw[position + 46:position + 46 + name_length]).decode()] = position
            position += 46 + name_length + extra_length + comment_length
        first = next(p for n, p in offsets.items() if n.endswith("data/0"))
        second = next(p for n, p in offsets.items() if n.endswith("data/1"))
        struct.pack_into("<I", raw, second + 42, struct.unpack_from("<I", raw, first + 42)[0])
        stderr = self.refused(bytes(raw), "overlap.pt")
        self.assertIn("E601", stderr)
        self.assertIn("overlap", stderr)

    def test_stride_zero_views_read_in_bounded_memory(self):
        """Audit 4: a 648-byte .pt whose view is [2^31, 16] with stride 0 over 16 floats (128 GiB) was gathered
        into one buffer: std::bad_alloc, rc 134. Under a 1 GiB address-space limit, reads anywhere in the view
        return torch's values, and --stats over a 1 GiB stride-0 view streams it."""
        storage = torch.arange(16, dtype=torch.float32)
        torch.save({"huge": storage.expand(2 ** 31, 16)}, self.path("views.pt"))
        torch.save({"gib": storage.expand(2 ** 24, 16)}, self.path("gib.pt"))
        self.assertLess(os.path.getsize(self.path("views.pt")), 4096)

        def limited():
            import resource
            if not sanitized(TOOL):  # AddressSanitizer reserves terabytes of address space
                resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

        row = storage.numpy().tobytes()
        for offset in (0, 4 * 16 * (2 ** 30) + 4 * 3, 4 * 16 * (2 ** 31) - 64):
            with self.subTest(offset=offset):
                done = subprocess.run([TOOL, "sample", self.path("views.pt"), "huge", str(offset), "64"],
                                      capture_output=True, text=True, preexec_fn=limited, timeout=120)
                self.assertEqual(done.returncode, 0, done.stderr)
                start = offset % 64
                self.assertEqual(bytes.fromhex(done.stdout.strip()), (row + row)[start:start + 64])
        done = subprocess.run([INSPECT, self.path("gib.pt"), "--stats", "--json"], capture_output=True, text=True,
                              preexec_fn=limited, timeout=600)
        self.assertEqual(done.returncode, 0, done.stderr)
        stats = json.loads(done.stdout)["tensors"][0]["stats"]
        self.assertEqual((stats["min"], stats["max"], stats["finite"]), (0.0, 15.0, 2 ** 28))
        self.assertAlmostEqual(stats["mean"], 7.5, places=6)


def sanitized(binary):
    linked = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in linked


if __name__ == "__main__":
    unittest.main()
