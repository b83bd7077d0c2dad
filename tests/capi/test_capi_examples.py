"""The C API as embedders use it: installed with meson install, found with
pkg-config by a C program (examples/c), and wrapped zero-copy by numpy
through ctypes (examples/python)."""
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

LIBCKPT = sys.argv[1]
BUILD = os.environ["CKPT_BUILD_ROOT"]
SOURCE = os.environ["CKPT_SOURCE_ROOT"]
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")


def load_example():
    spec = importlib.util.spec_from_file_location("numpy_view", os.path.join(SOURCE, "examples", "python", "numpy_view.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot_array(name, dtype=np.float32):
    return np.fromfile(os.path.join(SNAPSHOT, name, "out"), dtype=dtype)


class InstalledCProgram(unittest.TestCase):
    def test_pkg_config_build_and_run(self):
        with tempfile.TemporaryDirectory() as root:
            subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", root],
                           check=True, capture_output=True)
            pc_dirs = {os.path.dirname(p) for p in glob.glob(os.path.join(root, "**", "ckpt.pc"), recursive=True)}
            self.assertEqual(len(pc_dirs), 1)
            env = dict(os.environ, PKG_CONFIG_PATH=pc_dirs.pop(), PKG_CONFIG_SYSROOT_DIR=root)
            flags = subprocess.run(["pkg-config", "--cflags", "--libs", "ckpt"], env=env, check=True,
                                   capture_output=True, text=True).stdout.split()
            self.assertIn("-lckpt", flags)
            # A staged install is not in ld.so.conf: point the linker (for
            # libckpt's own dependency, libckpt-format) and the loader at it.
            libdirs = [flag[2:] for flag in flags if flag.startswith("-L")]
            run_env = dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs))
            program = os.path.join(root, "load_checkpoint")
            subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror",
                            os.path.join(SOURCE, "examples", "c", "load_checkpoint.c"), *flags, "-o", program],
                           env=run_env, check=True)
            out = subprocess.run([program, SNAPSHOT], env=run_env, check=True, capture_output=True, text=True).stdout
        lines = out.splitlines()
        self.assertEqual(lines[0], f"{SNAPSHOT}: oneflow, 210 tensors")
        self.assertEqual(len(lines), 211)
        by_name = {line.split()[0]: line for line in lines[1:]}
        bias_sum = float(by_name["classifier.3.bias"].rsplit("sum=", 1)[1])
        self.assertTrue(by_name["classifier.3.bias"].startswith("classifier.3.bias kFloat [1000] 4000 bytes sum="))
        self.assertAlmostEqual(bias_sum, float(snapshot_array("classifier.3.bias").astype(np.float64).sum()), places=3)
        self.assertTrue(by_name["classifier.3.weight"].startswith("classifier.3.weight kFloat [1000, 1024] 4096000 bytes"))


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
