"""ckpt-convert as users run it: destination formats from the registry, the
JSON envelope, errors that name the user's path, and SIGINT/SIGTERM/SIGHUP
mid-write leaving no staging output behind."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schema_check import checked  # noqa: E402

CONVERT = sys.argv[1]


def run(*args):
    result = subprocess.run([CONVERT, *map(str, args)], capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr


def default_signals():
    # The test runner may ignore some; the tool must see the default actions.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


class ConvertCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.source = os.path.join(self.tmp, "src")
        os.mkdir(self.source)
        np.save(os.path.join(self.source, "w.npy"), np.arange(6, dtype=np.float32).reshape(2, 3))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def test_unknown_extension_is_refused_unless_to_names_a_format(self):
        for name in ("out.gguf", "out.onnx"):
            code, _, err = run(self.source, self.path(name))
            self.assertEqual(code, 2, err)
            self.assertIn(f"no format has the extension '{os.path.splitext(name)[1]}'", err)
            self.assertIn("hint: name the format with --to", err)
            self.assertFalse(os.path.exists(self.path(name)))
        code, _, err = run(self.source, self.path("out.gguf"), "--to", "oneflow")
        self.assertEqual(code, 0, err)
        self.assertTrue(os.path.isfile(self.path("out.gguf/w/out")))

    def test_safetensors_with_a_slash_is_a_file_or_an_error(self):
        code, _, err = run(self.source, self.path("x.safetensors") + "/")
        self.assertEqual(code, 0, err)
        self.assertTrue(os.path.isfile(self.path("x.safetensors")))
        os.mkdir(self.path("d.safetensors"))
        code, _, err = run(self.source, self.path("d.safetensors"))
        self.assertEqual(code, 2, err)
        self.assertIn("is a directory", err)
        self.assertEqual(os.listdir(self.path("d.safetensors")), [])

    def test_json_envelope_and_error_names_the_destination(self):
        code, out, _ = run(self.source, self.path("m.safetensors"), "--json", "--dtype", "torch.bfloat16")
        self.assertEqual(code, 0)
        report = checked(out)
        self.assertEqual((report["format"], report["destination"]["format"]), ("npy", "safetensors"))
        self.assertEqual(report["tensors"], [{"name": "w", "dtype": "kBFloat16", "format_dtype": "BF16",
                                              "shape": [2, 3], "bytes": 12}])
        self.assertEqual((report["variables"], report["bytes"]), (1, 12))
        code, out, err = run(self.source, self.path("m.safetensors"), "--json")
        self.assertEqual(code, 2)
        error = checked(out)["error"]
        self.assertEqual((error["code"], error["file"]), ("E103", self.path("m.safetensors")))
        self.assertIn("hint: pass --force to replace it", err)
        self.assertNotIn(".ckpt-tmp-", err)

    def test_options_take_both_spellings_and_suggest_on_typos(self):
        code, _, err = run(self.source, f"--to=npz", self.path("a.out"), "--dtype=BF16")
        self.assertEqual(code, 0, err)
        code, _, err = run(self.source, self.path("b.npz"), "--forse")
        self.assertEqual(code, 2)
        self.assertIn("did you mean --force?", err)
        code, _, err = run(self.source, self.path("b.npz"), "--to", "gguf")
        self.assertEqual(code, 2)
        self.assertIn("gguf", err)

    def test_signals_mid_write_remove_the_staging_output(self):
        big = self.path("big")
        os.mkdir(big)
        # ~200 MB in, 400 MB out through a cast: long enough to interrupt.
        np.save(os.path.join(big, "a.npy"), np.ones(50 * 1024 * 1024, dtype=np.float32))
        cases = [(signal.SIGINT, "out.safetensors"), (signal.SIGTERM, "out_dir"), (signal.SIGHUP, "out.npz")]
        for number, name in cases:
            with self.subTest(signal=number.name, destination=name):
                destination = self.path(name)
                proc = subprocess.Popen([CONVERT, big, destination, "--dtype", "f64"], preexec_fn=default_signals,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 60
                staged = []
                while not staged and proc.poll() is None and time.monotonic() < deadline:
                    staged = glob.glob(os.path.join(self.tmp, f".{name}.ckpt-tmp-*"))
                    time.sleep(0.001)
                self.assertTrue(staged, "the conversion finished before it could be interrupted")
                proc.send_signal(number)
                self.assertEqual(proc.wait(timeout=60), -number)
                self.assertEqual(glob.glob(os.path.join(self.tmp, ".*ckpt-tmp-*")), [])
                self.assertFalse(os.path.exists(destination))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
