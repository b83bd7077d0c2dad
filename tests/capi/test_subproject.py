"""ckpt as a Meson subproject: a parent project gets the C API with
dependency('ckpt') and the C++ library with dependency('ckpt-format') (the
overrides in capi/meson.build), with no options. A plain `ninja` in the
parent builds ckpt's libraries only: no tests, tools or trainer. The two
programs built read and write real checkpoints; sums are checked against numpy."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

import numpy as np

SOURCE = os.environ["CKPT_SOURCE_ROOT"]
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")

PARENT = """project('parent', 'c', 'cpp', default_options: ['c_std=c99', 'cpp_std=c++20'])
executable('load_checkpoint', '{source}/examples/c/load_checkpoint.c', dependencies: dependency('ckpt'))
executable('save_and_load', '{source}/examples/save_and_load.cpp', dependencies: dependency('ckpt-format'))
"""


class Subproject(unittest.TestCase):
    def test_parent_project_builds_only_the_libraries_and_reads(self):
        with tempfile.TemporaryDirectory() as parent:
            os.makedirs(os.path.join(parent, "subprojects"))
            os.symlink(SOURCE, os.path.join(parent, "subprojects", "ckpt"))
            with open(os.path.join(parent, "meson.build"), "w") as f:
                f.write(PARENT.format(source=SOURCE))
            build = os.path.join(parent, "build")
            env = {k: v for k, v in os.environ.items() if not k.startswith("MESON")}

            def run(*command):
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
                return done.stdout

            run("meson", "setup", build, parent, "--wrap-mode=forcefallback")
            targets = [line.split(":")[0] for line in run("ninja", "-C", build, "-t", "targets", "all").splitlines()]
            ckpt_outputs = [t for t in targets if t.startswith("subprojects/ckpt/") and not t.endswith((".o", ".h", ".cc"))]
            self.assertTrue(any(t.startswith("subprojects/ckpt/capi/libckpt.so") for t in ckpt_outputs), ckpt_outputs)
            for excluded in ("tests/", "tools/", "libtrain/", "examples/", "fuzz/", "bench/"):
                self.assertEqual([t for t in ckpt_outputs if t.startswith("subprojects/ckpt/" + excluded)], [])
            # Every step a plain ninja would run; the libraries alone (with MPI
            # found, the collective ones too) are a few dozen.
            steps = [line for line in run("ninja", "-C", build, "-n").splitlines() if re.match(r"\[\d+/\d+\]", line)]
            self.assertLess(len(steps), 80, steps)
            run("ninja", "-C", build)

            out = run(os.path.join(build, "load_checkpoint"), SNAPSHOT)
            self.assertIn("oneflow, 210 tensors", out)
            line = next(l for l in out.splitlines() if l.startswith("classifier.3.bias "))
            expected = np.fromfile(os.path.join(SNAPSHOT, "classifier.3.bias", "out"), dtype="<f4").sum(dtype=np.float64)
            self.assertAlmostEqual(float(line.rsplit("sum=", 1)[1]), expected, places=2)

            saved = os.path.join(parent, "linear")
            out = run(os.path.join(build, "save_and_load"), saved)
            self.assertIn("bias = [-1, 1], weight[1][2] = 0.6", out)
            np.testing.assert_array_equal(np.fromfile(os.path.join(saved, "linear.bias", "out"), dtype="<f4"), [-1, 1])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
