"""ckpt-validate as a user runs it: exit codes, the table, the JSON shape."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from schema_check import checked  # noqa: E402

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
        report = checked(out)
        self.assertEqual((report["format"], report["layout"]), ("oneflow", "L1/E1"))
        self.assertEqual((report["schema"], report["tool"], report["error"]), (1, "ckpt-validate", None))
        self.assertTrue(report["valid"])
        self.assertEqual(len(report["tensors"]), 210)
        self.assertEqual(report["issues"], [])
        by_name = {v["name"]: v for v in report["tensors"]}
        self.assertEqual(by_name["classifier.3.weight"],
                         {"name": "classifier.3.weight", "dtype": "kFloat", "format_dtype": None,
                          "shape": [1000, 1024], "bytes": 4096000})

    def test_lazy_and_pickle_formats(self):
        code, out, _ = run(os.path.join(REAL, "doc_lazy_legacy_mlp_models_1"), "--json")
        self.assertEqual(code, 0)
        report = checked(out)
        self.assertEqual((report["format"], report["layout"]), ("oneflow", "L0"))
        self.assertEqual({i["code"] for i in report["issues"]}, {"E301"})
        self.assertIsNone(report["tensors"][0]["dtype"])
        code, out, _ = run(os.path.join(REAL, "models_dcn_frappe_pickledir_proto3"), "--json")
        self.assertEqual(code, 0)
        report = checked(out)
        self.assertEqual((report["format"], report["layout"]), ("oneflow-pickle", "P1"))

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
            report = checked(out)
            self.assertEqual((report["format"], report["layout"]), ("safetensors", None))
            self.assertEqual(sorted(i["code"] for i in report["issues"]), ["E808", "E810", "E813"])
            self.assertEqual({i["variable"] for i in report["issues"]}, {"b", "c", None})

    def test_terminal_escapes_in_names_are_shown_escaped(self):
        import struct
        name = "w\x1b]0;pwned\x07\x1b[31m\nnext"
        header = json.dumps({name: {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}).encode()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "evil.safetensors")
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", len(header)) + header + bytes(2))
            code, out, _ = run(path)
            self.assertEqual(code, 0)
            self.assertNotIn("\x1b", out)
            self.assertNotIn("\x07", out)
            self.assertIn("w\\x1b]0;pwned\\x07\\x1b[31m\\x0anext", out)
            self.assertIn("kBFloat16 (BF16)", out)
            # JSON keeps the name as it is; the encoder escapes it.
            code, out, _ = run(path, "--json")
            self.assertEqual(checked(out)["tensors"][0]["name"], name)
            self.assertEqual(checked(out)["tensors"][0]["format_dtype"], "BF16")
            self.assertNotIn("\x1b", out)

    def test_usage_and_io_errors(self):
        code, _, err = run()
        self.assertEqual(code, 2)
        self.assertIn("PATH is required", err)
        self.assertIn("Run 'ckpt-validate --help'", err)
        self.assertEqual(len(err.strip().splitlines()), 2, err)
        code, _, err = run("--jsn", REAL)
        self.assertEqual(code, 2)
        self.assertIn("did you mean --json?", err)
        code, out, _ = run("--version")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^ckpt-validate \(ckpt\) \d+\.\d+\.\d+")
        code, _, err = run("--format", "oneflow-snapshot", REAL)
        self.assertEqual(code, 2)
        self.assertIn("oneflow-snapshot", err)
        code, out, _ = run("/nonexistent/ckpt", "--json")
        self.assertEqual(code, 2)
        self.assertEqual(checked(out)["issues"][0]["code"], "E102")
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        self.assertIn("--json", out)
        self.assertIn("safetensors", out)  # the registry's list


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
