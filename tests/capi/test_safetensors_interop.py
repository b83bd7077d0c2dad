"""safetensors interop, proven by the peer: the Python safetensors package
loads what we write, and we read what it writes (bf16 through torch when it
is installed). Without the package, an independent writer and reader written
here from the format description (spec/safetensors.md) stand in for it."""
import ctypes
import json
import os
import struct
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import safetensors_standin  # noqa: E402

try:
    import safetensors.numpy as peer
except ImportError:  # the stand-in below is used instead
    peer = None

LIBCKPT = sys.argv[1]
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")
NAMES = safetensors_standin.DTYPE_NAMES


def standin_load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    by_name = {v: k for k, v in NAMES.items()}
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        data = raw[8 + length + begin:8 + length + end]
        out[name] = np.frombuffer(data, dtype=by_name[entry["dtype"]]).reshape(entry["shape"])
    return out


save_file = peer.save_file if peer else safetensors_standin.save
load_file = peer.load_file if peer else standin_load


class Library:
    def __init__(self):
        self.lib = ctypes.CDLL(LIBCKPT)
        self.lib.ckpt_last_error.restype = ctypes.c_char_p

    def check(self, status):
        if status != 0:
            raise AssertionError(self.lib.ckpt_last_error().decode())

    def convert(self, source, destination, fmt):
        self.check(self.lib.ckpt_convert(source.encode(), destination.encode(), fmt.encode(), 0))

    def read_all(self, path, names_and_sizes):
        reader = ctypes.c_void_p()
        self.check(self.lib.ckpt_open(path.encode(), None, ctypes.byref(reader)))
        try:
            out = {}
            for name, size in names_and_sizes.items():
                buffer = ctypes.create_string_buffer(max(size, 1))
                self.check(self.lib.ckpt_read(reader, name.encode(), buffer, ctypes.c_uint64(size)))
                out[name] = buffer.raw[:size]
            return out
        finally:
            self.lib.ckpt_close(reader)


class SafetensorsInterop(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.library = Library()

    def tearDown(self):
        self.tmp.cleanup()

    def test_peer_loads_our_conversion_of_a_real_snapshot(self):
        path = os.path.join(self.tmp.name, "mobilenet.safetensors")
        self.library.convert(SNAPSHOT, path, "safetensors")
        loaded = load_file(path)
        self.assertEqual(len(loaded), 210)
        weight = loaded["classifier.3.weight"]
        self.assertEqual((weight.dtype, weight.shape), (np.float32, (1000, 1024)))
        for name, array in loaded.items():
            expected = np.fromfile(os.path.join(SNAPSHOT, name, "out"), dtype=array.dtype)
            np.testing.assert_array_equal(array.reshape(-1), expected, err_msg=name)

    def test_we_read_every_dtype_the_peer_writes(self):
        rng = np.random.default_rng(6)
        tensors = {f"t.{dtype.name}": rng.integers(0, 100, size=(3, 2)).astype(dtype) for dtype in NAMES}
        tensors["t.bool"] = np.array([True, False, True])
        tensors["scalar"] = np.array(2.5, dtype=np.float64)
        tensors["empty"] = np.zeros((0, 4), dtype=np.float32)
        path = os.path.join(self.tmp.name, "peer.safetensors")
        save_file(tensors, path)
        back = self.library.read_all(path, {name: array.nbytes for name, array in tensors.items()})
        for name, array in tensors.items():
            self.assertEqual(back[name], array.tobytes(), name)
        # And we convert the peer's file to a OneFlow snapshot with the same bytes.
        snapshot = os.path.join(self.tmp.name, "snapshot")
        self.library.convert(path, snapshot, "oneflow")
        with open(os.path.join(snapshot, "t.float16", "out"), "rb") as f:
            self.assertEqual(f.read(), tensors["t.float16"].tobytes())
        with open(os.path.join(snapshot, "t.float16", "meta")) as f:
            self.assertEqual(f.read(), "shape {\n  dim: 3\n  dim: 2\n}\ndata_type: kFloat16\n")

    @unittest.skipIf(peer is None, "bf16 needs the safetensors package with torch")
    def test_bfloat16_from_torch(self):
        try:
            import torch
            import safetensors.torch
        except ImportError:
            self.skipTest("torch is not installed")
        values = torch.tensor([[1.0, -2.5], [3.0, 1e30]], dtype=torch.bfloat16)
        path = os.path.join(self.tmp.name, "bf16.safetensors")
        safetensors.torch.save_file({"w": values}, path)
        back = self.library.read_all(path, {"w": 8})
        self.assertEqual(back["w"], values.view(torch.int16).numpy().tobytes())
        ours = os.path.join(self.tmp.name, "ours.safetensors")
        self.library.convert(path, ours, "safetensors")
        self.assertTrue(torch.equal(safetensors.torch.load_file(ours)["w"], values))


if __name__ == "__main__":
    print(f"peer: {'safetensors ' + __import__('safetensors').__version__ if peer else 'stand-in writer/reader'}")
    unittest.main(argv=sys.argv[:1], verbosity=2)
