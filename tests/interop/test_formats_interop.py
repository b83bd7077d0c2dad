"""The files users have, written by their real producers where one runs here (numpy, Debian's torch 1.13):
a single .npy, legacy torch files (torch < 1.6 format), TorchScript archives; torch >= 2.1 records
(_rebuild_tensor_v3 over an UntypedStorage), which torch 1.13 cannot write, are written byte by byte
from torch's own rules (torch/_tensor.py _reduce_ex_internal, torch/serialization.py _save/_load);
and the diagnosis of files no format matches.

Usage: test_formats_interop.py TORCH_TOOL CKPT_CONVERT CKPT_VALIDATE
"""
import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

import numpy as np
import torch

from torch_names import flat

TOOL = sys.argv.pop(1)
CONVERT = sys.argv.pop(1)
VALIDATE = sys.argv.pop(1)

NUMPY_OF = {
    "kFloat": np.float32, "kDouble": np.float64, "kFloat16": np.float16, "kInt64": np.int64, "kInt32": np.int32,
    "kInt16": np.int16, "kInt8": np.int8, "kUInt8": np.uint8, "kBool": np.bool_, "kUInt16": np.uint16,
    "kUInt32": np.uint32, "kUInt64": np.uint64, "kComplex64": np.complex64, "kComplex128": np.complex128,
    # Raw bytes: the test compares their bit patterns.
    "kBFloat16": np.uint16, "kFloat8E4M3": np.uint8, "kFloat8E5M2": np.uint8, "kFloat8E8M0": np.uint8,
}


def run(argv, expect=0):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if done.returncode != expect:
        raise AssertionError(f"{argv}: rc {done.returncode}, expected {expect}: {done.stdout}{done.stderr}")
    return done


def dump(path, *name):
    """{name: (OneFlow dtype name, numpy array)} as our reader gives them."""
    with tempfile.TemporaryDirectory() as out:
        run([TOOL, "dump", path, out, *name])
        result = {}
        with open(os.path.join(out, "manifest.tsv")) as manifest:
            for index, line in enumerate(manifest):
                tensor_name, dtype, dims = line.rstrip("\n").split("\t")
                shape = [int(d) for d in dims.split(",")] if dims else []
                raw = open(os.path.join(out, f"{index}.bin"), "rb").read()
                result[tensor_name] = (dtype, np.frombuffer(raw, dtype=NUMPY_OF[dtype]).reshape(shape))
        return result


def torch_bytes(tensor):
    """A torch tensor's values as numpy, bf16 as its bit patterns."""
    if tensor.dtype == torch.bfloat16:
        return tensor.detach().contiguous().view(torch.int16).numpy().view(np.uint16)
    return tensor.detach().contiguous().numpy()


class SingleNpy(unittest.TestCase):
    def test_numpy_arrays_read_as_one_tensor_named_by_the_stem(self):
        rng = np.random.default_rng(7)
        cases = {
            "weights": rng.standard_normal((3, 4)).astype(np.float32),
            "fortran_big": np.asfortranarray(rng.standard_normal((5, 2)).astype(">f8")),
            "ids": rng.integers(-100, 100, size=(7,), dtype=np.int64),
            "scalar": np.array(2.5, dtype=np.float16),
            "flags": np.array([True, False, True]),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for stem, array in cases.items():
                path = os.path.join(tmp, f"{stem}.npy")
                np.save(path, array)
                got = dump(path)
                self.assertEqual(list(got), [stem])
                np.testing.assert_array_equal(got[stem][1], np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))))
                named = dump(path, "model.w")
                self.assertEqual(list(named), ["model.w"])
                run([VALIDATE, path])
            # A conversion of the file reads back in numpy under the stem's name.
            out = os.path.join(tmp, "out.npz")
            run([CONVERT, os.path.join(tmp, "weights.npy"), out, "--to", "npz"])
            np.testing.assert_array_equal(np.load(out)["weights"], cases["weights"])

    def test_structured_and_object_arrays_are_refused_saying_so(self):
        with tempfile.TemporaryDirectory() as tmp:
            structured = os.path.join(tmp, "rec.npy")
            np.save(structured, np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))
            self.assertIn("structured", run([TOOL, "dump", structured, tmp], expect=1).stderr)
            objects = os.path.join(tmp, "obj.npy")
            np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
            self.assertIn("object array", run([TOOL, "dump", objects, tmp], expect=1).stderr)


def sample_state():
    torch.manual_seed(3)
    base = torch.randn(6, 8)
    shared = torch.arange(20, dtype=torch.int64)
    return {
        "model": {
            "weight": torch.randn(4, 3),
            "transposed": base.t(),          # a strided view
            "sliced": base[1:5, 2:7:2],      # offset and strides
            "tied": base,                    # shares its storage with the two views
            "bf16": torch.randn(3, 5).to(torch.bfloat16),
            "half": torch.randn(2, 2).half(),
            "int64": shared[3:11],
            "int64_full": shared,
            "bool": torch.tensor([True, False, True]),
            "uint8": torch.arange(7, dtype=torch.uint8),
            "scalar": torch.tensor(2.5, dtype=torch.float64),
            "empty": torch.zeros(0, 3),
            "param": torch.nn.Parameter(torch.ones(2, 2)),
        },
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(4, 3)}}, "param_groups": [{"params": [0]}]},  # no float: torch 1.13 weights_only has no BINFLOAT
        "epoch": 3,
    }


class LegacyTorch(unittest.TestCase):
    def test_torch_113_legacy_files_read_with_equal_values(self):
        state = sample_state()
        with tempfile.TemporaryDirectory() as tmp:
            for protocol in (2, 4):
                path = os.path.join(tmp, f"legacy{protocol}.pt")
                torch.save(state, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
                self.assertFalse(zipfile.is_zipfile(path))
                got = dump(path)
                expected = flat(state)
                self.assertEqual(sorted(got), sorted(expected))
                for name, tensor in expected.items():
                    np.testing.assert_array_equal(got[name][1], torch_bytes(tensor), err_msg=name)
                run([VALIDATE, path])
            # Converted to the zip format, torch loads the same values.
            out = os.path.join(tmp, "zip.pt")
            run([CONVERT, os.path.join(tmp, "legacy2.pt"), out, "--to", "torch"])
            loaded = torch.load(out, weights_only=True)
            for name, tensor in flat(state).items():
                self.assertTrue(torch.equal(flat(loaded)[name], tensor.detach()), name)
            self.assertEqual(loaded["epoch"], 3)

    def test_damaged_legacy_files_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "legacy.pt")
            torch.save({"w": torch.arange(100, dtype=torch.float32)}, path, _use_new_zipfile_serialization=False)
            data = open(path, "rb").read()
            short = os.path.join(tmp, "short.pt")
            open(short, "wb").write(data[:-40])
            self.assertIn("E210", run([TOOL, "dump", short, tmp], expect=1).stderr)
            # The element count before the storage says 99, the persistent id 100.
            count_at = len(data) - 400 - 8
            self.assertEqual(struct.unpack_from("<q", data, count_at)[0], 100)
            wrong = bytearray(data)
            struct.pack_into("<q", wrong, count_at, 99)
            bad = os.path.join(tmp, "count.pt")
            open(bad, "wb").write(bytes(wrong))
            self.assertIn("E401", run([TOOL, "dump", bad, tmp], expect=1).stderr)


# ---- torch >= 2.1 records, byte by byte ----

def pickle_str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def pickle_int(value):
    return b"J" + struct.pack("<i", value)


def pickle_ints(values):
    return b"(" + b"".join(pickle_int(v) for v in values) + b"t"


def v3_record(key, nbytes, dtype, offset, shape, stride):
    """torch._utils._rebuild_tensor_v3(UntypedStorage pid, offset, size, stride, False, OrderedDict(), torch.<dtype>),
    as torch/_tensor.py builds it for the dtypes of torch.storage._new_dtypes()."""
    storage = (b"(" + pickle_str("storage") + b"ctorch\nUntypedStorage\n" + pickle_str(key) + pickle_str("cpu")
               + pickle_int(nbytes) + b"tQ")
    return (b"ctorch._utils\n_rebuild_tensor_v3\n(" + storage + pickle_int(offset) + pickle_ints(shape)
            + pickle_ints(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" + f"ctorch\n{dtype}\n".encode() + b"tR")


def write_torch2_file(path, tensors):
    """tensors: name -> (torch dtype name, key, raw bytes of the storage, offset, shape, stride)."""
    body = b"\x80\x02}("
    for name, (dtype, key, raw, offset, shape, stride) in tensors.items():
        body += pickle_str(name) + v3_record(key, len(raw), dtype, offset, shape, stride)
    body += b"u."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", body)
        for key, raw in {key: raw for _, key, raw, *_ in tensors.values()}.items():
            archive.writestr(f"archive/data/{key}", raw)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


TORCH2_DTYPES = {"uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64, "float8_e4m3fn": np.uint8,
                 "float8_e5m2": np.uint8, "float8_e8m0fnu": np.uint8}


class Torch2Loader(pickle.Unpickler):
    """What torch >= 2.1's _load does with these records (torch/serialization.py persistent_load,
    torch/_utils.py _rebuild_tensor_v3), with numpy arrays for tensors; float8 as raw bytes."""

    def __init__(self, archive, root):
        super().__init__(io.BytesIO(archive.read(f"{root}/data.pkl")))
        self.archive, self.root = archive, root

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v3"):
            return self.rebuild_v3
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_v2
        if module == "torch":
            return ("torch", name)
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        typename, storage_type, key, location, numel = pid
        assert typename == "storage" and location == "cpu"
        raw = self.archive.read(f"{self.root}/data/{key}")
        return storage_type[1], raw, numel

    @staticmethod
    def view(raw, dtype, offset, size, stride):
        flat = np.frombuffer(raw, dtype=dtype)
        return np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride]).copy()

    def rebuild_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        storage_type, raw, numel = storage
        assert storage_type == "UntypedStorage" and numel == len(raw) and dtype[0] == "torch"
        return dtype[1], self.view(raw, TORCH2_DTYPES[dtype[1]], offset, size, stride)

    def rebuild_v2(self, storage, offset, size, stride, requires_grad, hooks, metadata=None):
        storage_type, raw, numel = storage
        dtype = {"FloatStorage": np.float32, "ByteStorage": np.uint8}[storage_type]
        return storage_type, self.view(raw, dtype, offset, size, stride)


class Torch2Records(unittest.TestCase):
    def test_v3_records_read_views_included(self):
        rng = np.random.default_rng(11)
        u16 = rng.integers(0, 2**16, size=12, dtype=np.uint16)
        u32 = rng.integers(0, 2**32, size=6, dtype=np.uint32)
        u64 = rng.integers(0, 2**63, size=4, dtype=np.uint64) * 2 + 1
        f8 = np.arange(256, dtype=np.uint8)
        tensors = {
            "u16": ("uint16", "0", u16.tobytes(), 0, (3, 4), (4, 1)),
            "u16_t": ("uint16", "0", u16.tobytes(), 2, (2, 3), (1, 4)),  # a strided view of the same storage
            "u32": ("uint32", "1", u32.tobytes(), 0, (6,), (1,)),
            "u64": ("uint64", "2", u64.tobytes(), 1, (3,), (1,)),
            "e4m3": ("float8_e4m3fn", "3", f8.tobytes(), 0, (16, 16), (16, 1)),
            "e5m2": ("float8_e5m2", "4", f8[::-1].tobytes(), 0, (256,), (1,)),
            "e8m0": ("float8_e8m0fnu", "5", f8.tobytes(), 0, (2, 128), (128, 1)),
        }
        expected_dtype = {"u16": "kUInt16", "u16_t": "kUInt16", "u32": "kUInt32", "u64": "kUInt64",
                          "e4m3": "kFloat8E4M3", "e5m2": "kFloat8E5M2", "e8m0": "kFloat8E8M0"}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "torch2.pt")
            write_torch2_file(path, tensors)
            with zipfile.ZipFile(path) as archive:
                judged = Torch2Loader(archive, "archive").load()
            got = dump(path)
            self.assertEqual(sorted(got), sorted(tensors))
            for name, (dtype, values) in judged.items():
                self.assertEqual(got[name][0], expected_dtype[name])
                np.testing.assert_array_equal(got[name][1], values, err_msg=name)
            # A dtype torch names but this reader does not know is refused by name.
            write_torch2_file(path, {"q": ("bits16", "0", b"\0\0", 0, (1,), (1,))})
            self.assertIn("E70", run([TOOL, "dump", path, tmp], expect=1).stderr)

    def test_writer_writes_v3_records_as_torch_2_does(self):
        rng = np.random.default_rng(5)
        arrays = {
            "a.u16": ("kUInt16", rng.integers(0, 2**16, size=(2, 3), dtype=np.uint16)),
            "a.u32": ("kUInt32", rng.integers(0, 2**32, size=(5,), dtype=np.uint32)),
            "a.u64": ("kUInt64", rng.integers(0, 2**63, size=(2, 2), dtype=np.uint64)),
            "b.e4m3": ("kFloat8E4M3", np.arange(256, dtype=np.uint8).reshape(16, 16)),
            "b.e5m2": ("kFloat8E5M2", np.arange(256, dtype=np.uint8)),
            "f32": ("kFloat", rng.standard_normal((2, 2)).astype(np.float32)),
        }
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "src")
            os.mkdir(source)
            with open(os.path.join(source, "manifest.tsv"), "w") as manifest:
                for index, (name, (dtype, values)) in enumerate(arrays.items()):
                    manifest.write(f"{name}\t{dtype}\t{','.join(map(str, values.shape))}\n")
                    open(os.path.join(source, f"{index}.bin"), "wb").write(values.tobytes())
            path = os.path.join(tmp, "out.pt")
            run([TOOL, "write", path, source])
            with zipfile.ZipFile(path) as archive:
                root = archive.namelist()[0].split("/")[0]
                judged = Torch2Loader(archive, root).load()
                pickled = archive.read(f"{root}/data.pkl")
            self.assertIn(b"ctorch._utils\n_rebuild_tensor_v3\n", pickled)
            self.assertIn(b"ctorch\nUntypedStorage\n", pickled)
            self.assertIn(b"ctorch\nfloat8_e4m3fn\n", pickled)
            self.assertEqual(sorted(judged), sorted(arrays))
            for name, (dtype, values) in arrays.items():
                np.testing.assert_array_equal(judged[name][1], values, err_msg=name)
            # torch 1.13 knows none of these dtypes: it refuses the file rather than misreading it.
            with self.assertRaises(Exception):
                torch.load(path, weights_only=True)


# ---- TorchScript ----

class Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.tensor([1, 2], dtype=torch.int64))

    def forward(self, x):
        return self.lin(x)


class Outer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Inner()
        self.scale = torch.nn.Parameter(torch.ones(2))
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])

    def forward(self, x):
        y = self.inner(x) * self.scale
        for block in self.blocks:
            y = block(y)
        return y


class TorchScript(unittest.TestCase):
    def test_scripted_module_tensors_named_by_the_module_tree(self):
        torch.manual_seed(1)
        module = Outer()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "scripted.pt")
            torch.jit.save(torch.jit.script(module), path)
            got = dump(path)
            expected = module.state_dict()
            self.assertEqual(sorted(got), sorted(expected))
            for name, tensor in expected.items():
                np.testing.assert_array_equal(got[name][1], torch_bytes(tensor), err_msg=name)
            # Converted, it is a flat state_dict torch loads.
            out = os.path.join(tmp, "flat.pt")
            run([CONVERT, path, out, "--to", "torch"])
            loaded = torch.load(out, weights_only=True)
            for name, tensor in expected.items():
                self.assertTrue(torch.equal(loaded[name], tensor), name)

    def test_traced_constants_are_read(self):
        offset = torch.tensor([0.5, -1.5, 2.0])

        def shift(x):
            return x + offset

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "traced.pt")
            torch.jit.save(torch.jit.trace(shift, torch.zeros(3)), path)
            got = dump(path)
            self.assertIn("constants.0", got)
            np.testing.assert_array_equal(got["constants.0"][1], offset.numpy())


# ---- diagnosis ----

class Diagnosis(unittest.TestCase):
    def diagnose(self, name, content):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)
            open(path, "wb").write(content)
            dumped = run([TOOL, "dump", path, tmp], expect=1).stderr
            validated = subprocess.run([VALIDATE, path], capture_output=True, text=True)
            self.assertNotEqual(validated.returncode, 0)
            self.assertNotIn("is a directory", validated.stdout + validated.stderr)
            return dumped, validated.stdout + validated.stderr

    def test_git_lfs_pointer(self):
        pointer = (b"version https://git-lfs.github.com/spec/v1\n"
                   b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")
        for text in self.diagnose("model.safetensors", pointer):
            self.assertIn("fetch the file with git lfs", text)

    def test_html_page(self):
        for text in self.diagnose("model.pt", b"\n<!DOCTYPE html>\n<html><body>404</body></html>\n"):
            self.assertIn("HTML page", text)

    def test_truncated_torch_zip(self):
        buffer = io.BytesIO()
        torch.save({"w": torch.randn(64, 64)}, buffer)
        for text in self.diagnose("model.pt", buffer.getvalue()[: len(buffer.getvalue()) // 2]):
            self.assertIn("truncated", text)

    def test_hostile_safetensors_header_reports_safetensors_error(self):
        header = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
        # A length field far past the end of the file: not detected, but the name says safetensors.
        content = struct.pack("<Q", 1 << 40) + header + b"\0" * 8
        for text in self.diagnose("model.safetensors", content):
            self.assertIn("E80", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
