"""ckpt-convert --force replaces a checkpoint or a file, never a user's
directory nor the source or a directory around it (spec/writing.md,
"Replacing"); the audit's two cases, through the command line."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

CONVERT = sys.argv[1]


def convert(*args):
    return subprocess.run([CONVERT, *args], capture_output=True, text=True)


class ConvertForce(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        self.source = os.path.join(self.root, "p", "sub", "src.npz")
        os.makedirs(os.path.dirname(self.source))
        np.savez(self.source, w=np.arange(4, dtype=np.float32))

    def tearDown(self):
        self.tmp.cleanup()

    def test_a_home_directory_survives(self):
        home = os.path.join(self.root, "home")
        os.makedirs(os.path.join(home, "docs"))
        with open(os.path.join(home, "notes.txt"), "w") as f:
            f.write("mine")
        run = convert(self.source, home, "--to", "npy", "--force")
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("E170 replace_not_checkpoint", run.stderr)
        self.assertIn('"docs/", "notes.txt"', run.stderr)
        self.assertEqual(sorted(os.listdir(home)), ["docs", "notes.txt"])
        self.assertEqual(sorted(os.listdir(self.root)), ["home", "p"])  # no staging leftover

    def test_the_source_and_its_ancestors_are_never_replaced(self):
        before = open(self.source, "rb").read()
        for destination in (os.path.join(self.root, "p"), os.path.join(self.root, "p", "sub"), self.source):
            run = convert(self.source, destination, "--to", "npy", "--force")
            self.assertEqual(run.returncode, 2, run.stderr)
            self.assertIn("E171 replace_overlaps_source", run.stderr)
            self.assertEqual(open(self.source, "rb").read(), before)

    def test_an_old_checkpoint_is_replaced(self):
        destination = os.path.join(self.root, "out")
        self.assertEqual(convert(self.source, destination, "--to", "npy").returncode, 0)
        np.savez(self.source, w=np.full(3, 7, dtype=np.int64))
        run = convert(self.source, destination, "--to", "npy", "--force")
        self.assertEqual(run.returncode, 0, run.stderr)
        np.testing.assert_array_equal(np.load(os.path.join(destination, "w.npy")), np.full(3, 7, dtype=np.int64))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
