"""ckpt-diff --include/--exclude/--rename (A viewed as ckpt-convert would)
and --cast (different dtypes compared by value, as float64): a bf16, renamed,
filtered copy of a checkpoint is equal within the error numpy computes for
the same rounding; without --cast a dtype difference is reported as such.

usage: test_diff_views.py CKPT_DIFF   (run by meson test)
"""
import os
import sys
import tempfile
import unittest
from pathlib import Path

import subprocess

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import safetensors_standin  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schema_check import checked  # noqa: E402

DIFF = sys.argv[1]


def run(*args, expect=0):
    done = subprocess.run([*map(str, args)], capture_output=True, text=True)
    assert done.returncode == expect, f"{args}: rc {done.returncode}, stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def bf16_bits(values):
    """f32 -> bf16 bits, rounded to nearest even (finite inputs)."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


class DiffViews(unittest.TestCase):
    def setUp(self):
        self.temp = tempfile.TemporaryDirectory()
        self.dir = Path(self.temp.name)
        rng = np.random.default_rng(12)
        self.weight = rng.standard_normal((16, 8)).astype(np.float32)
        self.bias = rng.standard_normal(8).astype(np.float32)
        self.a = self.dir / "a.safetensors"
        safetensors_standin.save({"layer.w": self.weight, "layer.b": self.bias,
                                  "skip.x": np.arange(3, dtype=np.int32)}, self.a)
        self.b = self.dir / "b.safetensors"
        safetensors_standin.save({"blk.w": ("BF16", bf16_bits(self.weight)), "blk.b": self.bias}, self.b)
        widened = (bf16_bits(self.weight).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        self.error = np.abs(self.weight.astype(np.float64) - widened)
        self.relative = self.error / np.abs(widened)

    def tearDown(self):
        self.temp.cleanup()

    def test_without_views_the_names_differ(self):
        report = checked(run(DIFF, "--json", self.a, self.b, expect=1).stdout)
        self.assertEqual(report["missing"], ["layer.b", "layer.w", "skip.x"])
        self.assertEqual(report["extra"], ["blk.b", "blk.w"])

    def test_a_dtype_difference_is_reported_as_such(self):
        views = ["--exclude", "skip.*", "--rename", "layer.=blk."]
        done = run(DIFF, *views, self.a, self.b, expect=1)
        self.assertIn("mismatch blk.w: dtype differs, A kFloat [16, 8], B kBFloat16 [16, 8] (--cast compares the values)",
                      done.stdout)
        report = checked(run(DIFF, "--json", *views, self.a, self.b, expect=1).stdout)
        self.assertEqual(report["mismatched"], [{"name": "blk.w", "a": {"dtype": "kFloat", "shape": [16, 8]},
                                                 "b": {"dtype": "kBFloat16", "shape": [16, 8]}}])
        self.assertEqual((report["missing"], report["extra"]), ([], []))
        self.assertEqual([(t["name"], t["equal"]) for t in report["tensors"]], [("blk.b", True)])

    def test_cast_compares_by_value(self):
        views = ["--exclude", "skip.*", "--rename", "layer.=blk.", "--cast"]
        report = checked(run(DIFF, "--json", *views, self.a, self.b, expect=1).stdout)
        entry = next(t for t in report["tensors"] if t["name"] == "blk.w")
        self.assertEqual(entry["cast"], {"a": "kFloat", "b": "kBFloat16"})
        self.assertEqual(entry["differing"], int(np.count_nonzero(self.error)))
        self.assertEqual(entry["max_abs"], float(self.error.max()))
        self.assertEqual(entry["max_rel"], float(self.relative.max()))
        # Within the rounding error, equal.
        done = run(DIFF, *views, "--rtol", str(float(self.relative.max()) * 1.0001), self.a, self.b)
        self.assertIn("equal: 2 tensors in A (safetensors), 2 in B (safetensors)", done.stdout)
        # --include picks A's tensors by their own names; B's others are extra.
        report = checked(run(DIFF, "--json", "--include", "layer.w", "--rename", "layer.=blk.", "--cast", "--atol", "1",
                             self.a, self.b, expect=1).stdout)
        self.assertEqual((report["missing"], report["extra"]), ([], ["blk.b"]))
        self.assertTrue(report["tensors"][0]["equal"])

    def test_cast_leaves_other_mismatches_alone(self):
        c = self.dir / "c.safetensors"
        safetensors_standin.save({"layer.w": self.weight.reshape(8, 16), "layer.b": self.bias.astype(np.complex64),
                                  "skip.x": np.arange(3, dtype=np.int64)}, c)
        report = checked(run(DIFF, "--json", "--cast", self.a, c, expect=1).stdout)
        self.assertEqual(sorted(m["name"] for m in report["mismatched"]), ["layer.b", "layer.w"])
        # int32 against int64 holds the same values: equal by value.
        self.assertEqual([(t["name"], t["equal"]) for t in report["tensors"]], [("skip.x", True)])

    def test_a_bad_rename_is_a_usage_error(self):
        self.assertIn("--rename: expected OLD=NEW", run(DIFF, "--rename", "nothing", self.a, self.b, expect=2).stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
