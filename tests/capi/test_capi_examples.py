"""The C API wrapped zero-copy by numpy through ctypes (examples/python).
Installed consumers (pkg-config, CMake) are in test_installed.py."""
import importlib.util
import os
import subprocess
import sys
import unittest

import numpy as np

LIBCKPT = sys.argv[1]
SOURCE = os.environ["CKPT_SOURCE_ROOT"]
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")


def load_example():
    spec = importlib.util.spec_from_file_location("numpy_view", os.path.join(SOURCE, "examples", "python", "numpy_view.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot_array(name, dtype=np.float32):
    return np.fromfile(os.path.join(SNAPSHOT, name, "out"), dtype=dtype)


class NumpyZeroCopy(unittest.TestCase):
    def test_mapped_view_is_the_array_memory(self):
        example = load_example()
        tensor = example.MappedTensor(example.load_library(LIBCKPT), SNAPSHOT, "classifier.3.weight")
        array = tensor.array
        self.assertTrue(tensor.mapped)
        self.assertEqual(array.ctypes.data, tensor.address)
        self.assertFalse(array.flags.owndata)
        self.assertFalse(array.flags.writeable)
        self.assertEqual(array.shape, (1000, 1024))
        np.testing.assert_array_equal(array, snapshot_array("classifier.3.weight").reshape(1000, 1024))
        # The array alone keeps the mapping alive.
        del tensor
        np.testing.assert_array_equal(array[0], snapshot_array("classifier.3.weight")[:1024])

    def test_script_prints_its_promise(self):
        out = subprocess.run([sys.executable, os.path.join(SOURCE, "examples", "python", "numpy_view.py"), LIBCKPT,
                              SNAPSHOT, "classifier.3.bias"], check=True, capture_output=True, text=True).stdout
        self.assertIn("classifier.3.bias: float32 [1000], mapped=True, zero-copy=True", out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
