"""ckpt as a Meson subproject: a parent project gets it with
dependency('ckpt') (the override in capi/meson.build), builds the C example
against it and reads a real checkpoint. Sums are checked against numpy."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

SOURCE = os.environ["CKPT_SOURCE_ROOT"]
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")

PARENT = """project('parent', 'c', default_options: ['c_std=c99'])
ckpt = dependency('ckpt', default_options: ['tests=false', 'cuda=disabled', 'fuzzing=false'])
executable('load_checkpoint', '{example}', dependencies: ckpt)
"""


class Subproject(unittest.TestCase):
    def test_parent_project_builds_and_reads(self):
        with tempfile.TemporaryDirectory() as parent:
            os.makedirs(os.path.join(parent, "subprojects"))
            os.symlink(SOURCE, os.path.join(parent, "subprojects", "ckpt"))
            example = os.path.join(SOURCE, "examples", "c", "load_checkpoint.c")
            with open(os.path.join(parent, "meson.build"), "w") as f:
                f.write(PARENT.format(example=example))
            build = os.path.join(parent, "build")
            env = {k: v for k, v in os.environ.items() if not k.startswith("MESON")}
            for command in (["meson", "setup", build, parent, "--wrap-mode=forcefallback"],
                            ["ninja", "-C", build, "load_checkpoint"]):
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
            out = subprocess.run([os.path.join(build, "load_checkpoint"), SNAPSHOT], capture_output=True, text=True,
                                 check=True, env=env).stdout
            self.assertIn("oneflow, 210 tensors", out)
            line = next(l for l in out.splitlines() if l.startswith("classifier.3.bias "))
            expected = np.fromfile(os.path.join(SNAPSHOT, "classifier.3.bias", "out"), dtype="<f4").sum(dtype=np.float64)
            self.assertAlmostEqual(float(line.rsplit("sum=", 1)[1]), expected, places=2)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
