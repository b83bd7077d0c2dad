"""ckpt-inspect and ckpt-diff as users run them, on a OneFlow snapshot and
safetensors files: values checked against numpy, exit codes, JSON shape."""
import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import safetensors_standin  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schema_check import checked  # noqa: E402

INSPECT, DIFF, LIBCKPT = sys.argv[1:4]
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")


def run(*args):
    result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr


def write_safetensors(path, tensors):
    safetensors_standin.save(tensors, path)


class Tools(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_inspect_stats_match_numpy(self):
        values = np.array([1.5, -2.0, np.nan, np.inf, 4.0, -np.inf], dtype=np.float32)
        halves = np.array([[0.5, 65504.0], [-1.0, 2.0]], dtype=np.float16)
        path = os.path.join(self.tmp, "x.safetensors")
        write_safetensors(path, {"v": ("F32", values), "h": ("F16", halves),
                                 "c": ("C64", np.array([1 + 2j], dtype=np.complex64))})
        code, out, _ = run(INSPECT, path, "--stats", "--json")
        self.assertEqual(code, 0)
        report = checked(out)
        self.assertEqual((report["tool"], report["format"], report["layout"]), ("ckpt-inspect", "safetensors", None))
        by_name = {t["name"]: t for t in report["tensors"]}
        self.assertEqual([t["name"] for t in report["tensors"]], ["c", "h", "v"])
        v = by_name["v"]
        self.assertEqual((v["dtype"], v["format_dtype"], v["shape"], v["bytes"]), ("kFloat", "F32", [6], 24))
        finite = np.array([1.5, -2.0, 4.0])
        self.assertEqual(v["stats"]["nan"], 1)
        self.assertEqual(v["stats"]["inf"], 2)
        self.assertEqual((v["stats"]["min"], v["stats"]["max"]), (-2.0, 4.0))
        self.assertAlmostEqual(v["stats"]["mean"], finite.mean())
        self.assertAlmostEqual(v["stats"]["std"], finite.std())
        h = by_name["h"]["stats"]
        self.assertEqual((h["min"], h["max"]), (-1.0, 65504.0))
        self.assertAlmostEqual(h["mean"], float(halves.astype(np.float64).mean()))
        self.assertIsNone(by_name["c"]["stats"])

    def test_inspect_real_snapshot_table(self):
        code, out, _ = run(INSPECT, SNAPSHOT, "--stats")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], f"{SNAPSHOT}: oneflow (L1/E1), 210 tensors, 10219872 bytes")
        bias = np.fromfile(os.path.join(SNAPSHOT, "classifier.3.bias", "out"), dtype=np.float32).astype(np.float64)
        line = next(l for l in lines if l.split()[0] == "classifier.3.bias")
        self.assertIn(f"min={bias.min():.6g} max={bias.max():.6g}", line)
        self.assertIn(f"std={bias.std():.6g} nan=0 inf=0", line)
        self.assertEqual(run(INSPECT, os.path.join(self.tmp, "none"))[0], 2)

    def test_inspect_failure_is_an_envelope_with_an_error(self):
        code, out, err = run(INSPECT, os.path.join(self.tmp, "none"), "--json")
        self.assertEqual(code, 2)
        report = checked(out)
        self.assertEqual((report["error"]["code"], report["error"]["name"]), ("E102", "not_found"))
        self.assertEqual(report["tensors"], [])
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("ckpt-inspect: error: E102 not_found"), err)
        # An invalid input exits 1, as in every tool.
        bad = os.path.join(self.tmp, "bad.safetensors")
        with open(bad, "wb") as f:
            f.write(struct.pack("<Q", 8) + b'{"a": 1}')
        code, out, _ = run(INSPECT, bad, "--json")
        self.assertEqual(code, 1)
        self.assertEqual(checked(out)["error"]["code"], "E806")
        self.assertEqual(run(DIFF, bad, bad)[0], 1)

    def test_error_lines_escape_terminal_controls(self):
        name = "w\x1b]0;pwned\x07\x1b[31m\nx"
        a = os.path.join(self.tmp, "a.safetensors")
        b = os.path.join(self.tmp, "b.safetensors")
        write_safetensors(a, {name: ("F32", np.zeros(2, np.float32))})
        write_safetensors(b, {name: ("F32", np.ones(2, np.float32))})
        code, out, _ = run(DIFF, a, b)
        self.assertEqual(code, 1)
        self.assertNotIn("\x1b", out)
        self.assertIn("differ   w\\x1b]0;pwned\\x07\\x1b[31m\\x0ax:", out)
        code, out, _ = run(INSPECT, a)
        self.assertNotIn("\x1b", out)
        self.assertNotIn("\x07", out)

    def test_diff_across_formats_and_tolerances(self):
        converted = os.path.join(self.tmp, "m.safetensors")
        lib = ctypes.CDLL(LIBCKPT)
        self.assertEqual(lib.ckpt_convert(SNAPSHOT.encode(), converted.encode(), b"safetensors", 0), 0)
        code, out, _ = run(DIFF, SNAPSHOT, converted)
        self.assertEqual(code, 0)
        self.assertIn("equal: 210 tensors in A (oneflow), 210 in B (safetensors)", out)

        changed = os.path.join(self.tmp, "changed")
        shutil.copytree(SNAPSHOT, changed)
        bias_path = os.path.join(changed, "classifier.3.bias", "out")
        bias = np.fromfile(bias_path, dtype=np.float32)
        original = float(bias[7])
        bias[7] += np.float32(0.25)
        bias.tofile(bias_path)
        shutil.rmtree(os.path.join(changed, "classifier.0.bias"))
        code, out, _ = run(DIFF, converted, changed, "--json")
        self.assertEqual(code, 1)
        report = checked(out)
        self.assertFalse(report["equal"])
        self.assertEqual(report["missing"], ["classifier.0.bias"])
        self.assertEqual(report["extra"], [])
        entry = next(t for t in report["tensors"] if t["name"] == "classifier.3.bias")
        self.assertEqual(entry["differing"], 1)
        expected_abs = abs(original - float(bias[7]))
        self.assertAlmostEqual(entry["max_abs"], expected_abs, places=6)
        self.assertAlmostEqual(entry["max_rel"], expected_abs / abs(float(bias[7])), places=5)
        # Within a tolerance that covers the change, only the missing tensor differs.
        code, out, _ = run(DIFF, converted, changed, "--atol", "0.3")
        self.assertEqual(code, 1)
        self.assertEqual(out.splitlines()[0], "missing  classifier.0.bias (only in A)")
        self.assertNotIn("differ ", out)

    def test_diff_mismatch_nan_and_usage(self):
        a = os.path.join(self.tmp, "a.safetensors")
        b = os.path.join(self.tmp, "b.safetensors")
        nan = np.array([np.nan, 1.0], dtype=np.float64)
        write_safetensors(a, {"n": ("F64", nan), "s": ("I32", np.zeros(4, np.int32))})
        write_safetensors(b, {"n": ("F64", nan), "s": ("I32", np.zeros((2, 2), np.int32)), "e": ("U8", np.ones(1, np.uint8))})
        code, out, _ = run(DIFF, a, b, "--json")
        self.assertEqual(code, 1)
        report = checked(out)
        self.assertEqual(report["extra"], ["e"])
        self.assertEqual(report["mismatched"], [{"name": "s", "a": {"dtype": "kInt32", "shape": [4]},
                                                 "b": {"dtype": "kInt32", "shape": [2, 2]}}])
        self.assertEqual(report["tensors"], [{"name": "n", "equal": True, "max_abs": 0.0, "max_rel": 0.0, "differing": 0}])
        self.assertEqual(run(DIFF, a)[0], 2)
        self.assertEqual(run(DIFF, a, b, "--atol", "-1")[0], 2)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
