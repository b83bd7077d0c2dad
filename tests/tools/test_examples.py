"""The examples run and print what they promise."""
import os
import subprocess
import sys
import tempfile
import unittest

SAVE_AND_LOAD = sys.argv[1]
TUTORIAL_FLOW = sys.argv[2]


class Examples(unittest.TestCase):
    def test_save_and_load(self):
        with tempfile.TemporaryDirectory() as tmp:
            target = os.path.join(tmp, "linear")
            out = subprocess.run([SAVE_AND_LOAD, target], capture_output=True, text=True, check=True).stdout
            self.assertIn("L1/E1 with 2 variables, valid", out)
            self.assertIn("linear.weight kFloat [2, 3]", out)
            self.assertIn("bias = [-1, 1], weight[1][2] = 0.6", out)
            with open(os.path.join(target, "linear.bias", "meta")) as f:
                self.assertEqual(f.read(), "shape {\n  dim: 2\n}\ndata_type: kFloat\n")
            # A second save to the same place is refused, the first one kept.
            again = subprocess.run([SAVE_AND_LOAD, target], capture_output=True, text=True, check=False)
            self.assertEqual(again.returncode, 1)
            self.assertIn("E103 destination_exists", again.stderr)

    def test_tutorial_flow(self):
        with tempfile.TemporaryDirectory() as tmp:
            target = os.path.join(tmp, "mnist_model")
            done = subprocess.run([TUTORIAL_FLOW, target], capture_output=True, text=True, check=False,
                                  env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
            self.assertEqual(done.returncode, 0, done.stderr)
            lines = done.stdout.splitlines()
            self.assertRegex(lines[0], r"^epoch 1, train loss \d\.\d{4}, train acc 0\.\d{3}, test acc 0\.\d{3}$")
            accuracy = float(lines[0].rsplit(" ", 1)[1])
            self.assertGreater(accuracy, 0.6)
            loaded = float(lines[2].split("test acc ")[1].split(" ")[0])
            self.assertAlmostEqual(loaded, accuracy, places=3)
            self.assertEqual(sorted(os.listdir(target)),
                             ["l1.bias", "l1.weight", "l2.bias", "l2.weight", "l3.bias", "l3.weight", "snapshot_done"])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
