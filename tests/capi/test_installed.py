"""ckpt as an installed package: `meson install` into a temporary root, then
consumers build against it the way users do, and run with no LD_LIBRARY_PATH:
  - C, pkg-config ckpt, shared (the program carries an rpath to the libdir;
    libckpt finds its own libraries through RUNPATH $ORIGIN)
  - C, pkg-config --static ckpt, linking the installed archives
  - C++, pkg-config ckpt-format
  - CMake, find_package(ckpt) with ckpt::ckpt and ckpt::format
Values are checked against numpy reading the snapshot's raw bytes."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

BUILD = os.environ["CKPT_BUILD_ROOT"]
SOURCE = os.environ["CKPT_SOURCE_ROOT"]
EXAMPLES = os.path.join(SOURCE, "examples")
SNAPSHOT = os.path.join(os.environ["CKPT_FIXTURES"], "oneflow-real", "models_mobilenetv3_legacy_eager")
# The consumers must find everything without help from the environment.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PKG_CONFIG_PATH", "CMAKE_PREFIX_PATH")}
# Under scripts/sanitize.sh the installed libraries are instrumented: the
# consumers link the sanitizer runtimes too.
SANITIZE = ["-fsanitize=address,undefined"] if os.environ.get("CKPT_SANITIZED") else []


def run(*command, env=CLEAN_ENV, cwd=None):
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def dynamic_section(path):
    return run("readelf", "-d", path)


class Installed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.root = os.path.join(cls.tmp, "root")
        run("meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", cls.root, env=os.environ)
        (pc,) = glob.glob(os.path.join(cls.root, "**", "pkgconfig", "ckpt.pc"), recursive=True)
        cls.libdir = os.path.dirname(os.path.dirname(pc))
        cls.prefix = os.path.join(cls.root, "usr", "local")
        cls.pkg_env = dict(CLEAN_ENV, PKG_CONFIG_PATH=os.path.dirname(pc), PKG_CONFIG_SYSROOT_DIR=cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def pkg_config(self, *args):
        return run("pkg-config", *args, env=self.pkg_env).split()

    def check_load_checkpoint(self, program):
        lines = run(program, SNAPSHOT).splitlines()
        self.assertEqual(lines[0], f"{SNAPSHOT}: oneflow, 210 tensors")
        self.assertEqual(len(lines), 211)
        by_name = {line.split()[0]: line for line in lines[1:]}
        self.assertTrue(by_name["classifier.3.bias"].startswith("classifier.3.bias kFloat [1000] 4000 bytes sum="))
        expected = np.fromfile(os.path.join(SNAPSHOT, "classifier.3.bias", "out"), dtype="<f4").sum(dtype=np.float64)
        self.assertAlmostEqual(float(by_name["classifier.3.bias"].rsplit("sum=", 1)[1]), expected, places=3)
        self.assertTrue(by_name["classifier.3.weight"].startswith("classifier.3.weight kFloat [1000, 1024] 4096000 bytes"))

    def check_save_and_load(self, program):
        out_dir = os.path.join(self.tmp, os.path.basename(os.path.dirname(program)) + "-linear")
        out = run(program, out_dir)
        self.assertIn(f"{out_dir}: L1/E1 with 2 variables, valid", out)
        self.assertIn("bias = [-1, 1], weight[1][2] = 0.6", out)
        np.testing.assert_array_equal(np.fromfile(os.path.join(out_dir, "linear.bias", "out"), dtype="<f4"), [-1, 1])

    def test_libraries_find_each_other_from_any_prefix(self):
        for name in ("libckpt.so", "libckpt-convert.so"):
            section = dynamic_section(os.path.join(self.libdir, name))
            self.assertIn("Library runpath: [$ORIGIN]", section)
        self.assertIn("[libckpt-format.so.0]", dynamic_section(os.path.join(self.libdir, "libckpt.so")))
        for archive in ("libckpt.a", "libckpt-convert.a", "libckpt-format.a"):
            self.assertTrue(os.path.isfile(os.path.join(self.libdir, archive)), archive)

    def test_c_program_shared_through_pkg_config(self):
        flags = self.pkg_config("--cflags", "--libs", "ckpt")
        self.assertEqual([f for f in flags if f.startswith("-l")], ["-lckpt"])
        # pkg-config prefixes the sysroot (the temporary root) to the libdir.
        libdir = self.pkg_config("--variable=libdir", "ckpt")[0]
        self.assertEqual(os.path.realpath(libdir), os.path.realpath(self.libdir))
        program = os.path.join(self.tmp, "load_checkpoint_shared")
        run("cc", "-std=c99", "-Wall", "-Wextra", "-Werror", *SANITIZE, os.path.join(EXAMPLES, "c", "load_checkpoint.c"),
            *flags, f"-Wl,-rpath,{self.libdir}", "-o", program)
        self.assertIn("[libckpt.so.0]", dynamic_section(program))
        self.check_load_checkpoint(program)

    def test_c_program_static_through_pkg_config(self):
        flags = self.pkg_config("--static", "--cflags", "--libs", "ckpt")
        # Take ckpt's archives (the directory also holds the shared
        # libraries); the system's libraries stay shared.
        static_flags = [f"-l:lib{f[2:]}.a" if f.startswith("-lckpt") else f for f in flags]
        self.assertEqual([f for f in static_flags if f.startswith("-l:")],
                         ["-l:libckpt.a", "-l:libckpt-convert.a", "-l:libckpt-format.a"])
        program = os.path.join(self.tmp, "load_checkpoint_static")
        run("cc", "-std=c99", "-Wall", "-Wextra", "-Werror", *SANITIZE, os.path.join(EXAMPLES, "c", "load_checkpoint.c"),
            *static_flags, "-o", program)
        self.assertNotIn("libckpt", dynamic_section(program))
        self.check_load_checkpoint(program)

    def test_cpp_program_through_pkg_config(self):
        flags = self.pkg_config("--cflags", "--libs", "ckpt-format")
        self.assertIn("-lckpt-format", flags)
        program_dir = os.path.join(self.tmp, "pkg-config-cpp")
        os.makedirs(program_dir)
        program = os.path.join(program_dir, "save_and_load")
        run("c++", "-std=c++20", *SANITIZE, os.path.join(EXAMPLES, "save_and_load.cpp"), *flags,
            f"-Wl,-rpath,{self.libdir}", "-o", program)
        self.check_save_and_load(program)

    def test_cmake_consumer(self):
        build = os.path.join(self.tmp, "cmake")
        run("cmake", "-S", os.path.join(SOURCE, "tests", "capi", "cmake_consumer"), "-B", build, "-G", "Ninja",
            f"-DCMAKE_PREFIX_PATH={self.prefix}", f"-DCKPT_EXAMPLES={EXAMPLES}",
            f"-DCMAKE_C_FLAGS={' '.join(SANITIZE)}", f"-DCMAKE_CXX_FLAGS={' '.join(SANITIZE)}")
        run("cmake", "--build", build)
        self.check_load_checkpoint(os.path.join(build, "load_checkpoint"))
        self.check_save_and_load(os.path.join(build, "save_and_load"))

    def test_cmake_version_file_refuses_another_minor(self):
        build = os.path.join(self.tmp, "cmake-version")
        os.makedirs(build)
        with open(os.path.join(build, "CMakeLists.txt"), "w") as f:
            # A language, so that CMake looks in lib/<multiarch>/cmake.
            f.write("cmake_minimum_required(VERSION 3.16)\nproject(v C)\nfind_package(ckpt 0.2 CONFIG REQUIRED)\n")
        done = subprocess.run(["cmake", "-S", build, "-B", os.path.join(build, "b"), f"-DCMAKE_PREFIX_PATH={self.prefix}"],
                              capture_output=True, text=True, env=CLEAN_ENV)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("0.1.0", done.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
