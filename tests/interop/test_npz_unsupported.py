"""npz archives with members ckpt cannot represent, written by numpy itself
(/usr/bin/python3): a '|S3' __version__ (as MATLAB exports carry), a '<f16'
(long double), an object array and a structured array no longer block the
file. ckpt-inspect lists them (name, descr, reason), ckpt-validate warns
(E540) and stays valid, --exclude/--include skip them, and a conversion that
would drop them is refused unless --skip-unsupported, which warns with their
names. The arrays that are kept convert with numpy's values.

usage: test_npz_unsupported.py CKPT_CONVERT CKPT_INSPECT CKPT_VALIDATE   (run by meson test)
"""
import json
import os
import subprocess
import struct
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from schema_check import checked  # noqa: E402

CONVERT, INSPECT, VALIDATE = sys.argv[1:4]
UNSUPPORTED = {"__version__": "|S3", "extended": "<f16", "objects": "|O", "records": "[('a', '<i4'), ('b', '<f8')]"}


def run(*args, expect=0):
    done = subprocess.run([*map(str, args)], capture_output=True, text=True)
    assert done.returncode == expect, f"{args}: rc {done.returncode}, stderr:\n{done.stderr}"
    return done


class NpzUnsupportedMembers(unittest.TestCase):
    def setUp(self):
        self.temp = tempfile.TemporaryDirectory()
        self.dir = Path(self.temp.name)
        rng = np.random.default_rng(5)
        self.supported = {"weight": rng.standard_normal((4, 3)).astype(np.float32),
                          "steps": np.arange(6, dtype=np.int64)}
        self.source = self.dir / "mixed.npz"
        np.savez(self.source, __version__=np.array(b"1.0", dtype="S3"),
                 extended=np.arange(3, dtype=np.longdouble), objects=np.array([{"a": 1}, None], dtype=object),
                 records=np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]), **self.supported)

    def tearDown(self):
        self.temp.cleanup()

    def test_inspect_lists_them(self):
        document = checked(run(INSPECT, "--json", self.source).stdout)
        self.assertEqual([t["name"] for t in document["tensors"]], ["steps", "weight"])
        listed = {entry["name"]: entry for entry in document["unsupported"]}
        self.assertEqual({name: entry["descr"] for name, entry in listed.items()}, UNSUPPORTED)
        self.assertIn("object array", listed["objects"]["reason"])
        self.assertIn("structured", listed["records"]["reason"])
        self.assertIn("no OneFlow data type", listed["extended"]["reason"])
        text = run(INSPECT, self.source).stdout
        self.assertIn("unsupported (types ckpt cannot represent, not read):", text)
        self.assertRegex(text, r"\n  __version__ +\|S3 +descr '\|S3' has no OneFlow data type")

    def test_validate_warns_and_stays_valid(self):
        document = checked(run(VALIDATE, "--json", self.source).stdout)
        self.assertTrue(document["valid"])
        warned = {issue["variable"]: issue for issue in document["issues"] if issue["code"] == "E540"}
        self.assertEqual(sorted(warned), sorted(UNSUPPORTED))
        self.assertTrue(all(issue["severity"] == "warning" for issue in warned.values()))
        self.assertIn("descr '|S3'", warned["__version__"]["message"])

    def test_conversion_refuses_to_drop_them_silently(self):
        target = self.dir / "out.npz"
        done = run(CONVERT, self.source, target, expect=1)
        self.assertIn("E540", done.stderr)
        self.assertIn("__version__, extended, objects, records", done.stderr)
        self.assertFalse(target.exists())

    def test_exclude_include_and_skip(self):
        excluded = self.dir / "excluded.npz"
        run(CONVERT, "--quiet", "--exclude", "__version__", "--exclude", "extended", "--exclude", "objects",
            "--exclude", "records", self.source, excluded)
        included = self.dir / "included.npz"
        run(CONVERT, "--quiet", "--include", "weight", self.source, included)
        skipped = self.dir / "skipped.npz"
        done = run(CONVERT, "--skip-unsupported", self.source, skipped)
        self.assertIn("left out 4 tensor(s) of types ckpt cannot represent (--skip-unsupported): "
                      "__version__, extended, objects, records", done.stderr)
        report = checked(run(CONVERT, "--json", "--skip-unsupported", self.source, self.dir / "json.npz").stdout)
        self.assertEqual(report["skipped"], sorted(UNSUPPORTED))
        for path, names in [(excluded, ["steps", "weight"]), (included, ["weight"]), (skipped, ["steps", "weight"])]:
            with np.load(path) as loaded:
                self.assertEqual(sorted(loaded.files), names)
                for name in names:
                    np.testing.assert_array_equal(loaded[name], self.supported[name])
        # An include pattern that matches only an unsupported member is no typo: it is refused as a loss.
        done = run(CONVERT, "--include", "__version__", self.source, self.dir / "only.npz", expect=1)
        self.assertIn("E540", done.stderr)

    def test_a_broken_header_still_blocks(self):
        # Only a type ckpt cannot represent is listed; a malformed header stays an error.
        broken = self.dir / "broken.npz"
        header = b"{'descr': '<f4', }\n"
        with zipfile.ZipFile(broken, "w") as archive:
            archive.writestr("weight.npy", np.lib.format.magic(1, 0) + struct.pack("<H", len(header)) + header)
        self.assertIn("E503", run(INSPECT, broken, expect=1).stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
