"""ckpt-validate as a user runs it: exit codes, the table, the JSON shape."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

TOOL = sys.argv[1]
FIXTURES = os.environ["CKPT_FIXTURES"]
REAL = os.path.join(FIXTURES, "oneflow-real")


def run(*args):
    result = subprocess.run([TOOL, *args], capture_output=True, text=True, errors="replace", check=False)
    return result.returncode, result.stdout, result.stderr


class ValidateCli(unittest.TestCase):
    def test_real_snapshot_json(self):
        code, out, _ = run(os.path.join(REAL, "models_mobilenetv3_legacy_eager"), "--json")
        self.assertEqual(code, 0)
        report = json.loads(out)
        self.assertEqual(report["format"], "oneflow-snapshot")
        self.assertTrue(report["valid"])
        self.assertEqual(len(report["variables"]), 210)
        self.assertEqual(report["issues"], [])
        by_name = {v["name"]: v for v in report["variables"]}
        self.assertEqual(by_name["classifier.3.weight"],
                         {"name": "classifier.3.weight", "dtype": "kFloat", "shape": [1000, 1024], "bytes": 4096000})

    def test_lazy_and_pickle_formats(self):
        code, out, _ = run(os.path.join(REAL, "doc_lazy_legacy_mlp_models_1"), "--json")
        self.assertEqual(code, 0)
        report = json.loads(out)
        self.assertEqual(report["format"], "oneflow-lazy")
        self.assertEqual({i["code"] for i in report["issues"]}, {"E301"})
        self.assertIsNone(report["variables"][0]["dtype"])
        code, out, _ = run(os.path.join(REAL, "models_dcn_frappe_pickledir_proto3"), "--json")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["format"], "oneflow-pickle")

    def test_broken_snapshot_table_and_exit_code(self):
        with tempfile.TemporaryDirectory() as tmp:
            snap = os.path.join(tmp, "snap")
            shutil.copytree(os.path.join(FIXTURES, "oneflow-emulated", "A_legacy_v0.5_linear"), snap)
            with open(os.path.join(snap, "weight", "out"), "ab") as f:
                f.write(b"\0" * 4)
            os.remove(os.path.join(snap, "snapshot_done"))
            code, out, _ = run(snap)
            self.assertEqual(code, 1)
            self.assertIn("E401 data_size_mismatch [weight]", out)
            self.assertIn("expected 24 bytes", out)
            self.assertIn("found 28", out)
            self.assertIn("E204 missing_snapshot_done", out)
            self.assertIn("INVALID: 2 errors", out)
            code, out, _ = run(snap, "--quiet")
            self.assertEqual(code, 1)
            self.assertEqual(len(out.strip().splitlines()), 2)

    def test_safetensors_problems_are_all_collected(self):
        import struct
        header = json.dumps({
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            "c": {"dtype": "X9", "shape": [1], "data_offsets": [12, 13]},
        }).encode()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bad.safetensors")
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", len(header)) + header + bytes(10))
            code, out, _ = run(path, "--json")
            self.assertEqual(code, 1)
            report = json.loads(out)
            self.assertEqual(report["format"], "safetensors")
            self.assertEqual(sorted(i["code"] for i in report["issues"]), ["E808", "E810", "E813"])
            self.assertEqual({i["variable"] for i in report["issues"]}, {"b", "c", None})

    def test_usage_and_io_errors(self):
        code, _, err = run()
        self.assertEqual(code, 2)
        self.assertIn("usage", err)
        code, _, _ = run("--bogus", REAL)
        self.assertEqual(code, 2)
        code, out, _ = run("/nonexistent/ckpt", "--json")
        self.assertEqual(code, 2)
        self.assertEqual(json.loads(out)["issues"][0]["code"], "E102")
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        self.assertIn("--json", out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
