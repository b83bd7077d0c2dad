"""The hostile inputs of issue #14's audit, run through the tools as a user would: each ends promptly with
its code, never a hang, a crash, a read outside the checkpoint or an unbounded allocation.

Usage: test_hostile_inputs.py CKPT_VALIDATE CKPT_INSPECT CKPT_CONVERT; CKPT_FIXTURES set.
"""
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

VALIDATE, INSPECT, CONVERT = sys.argv[1:4]
del sys.argv[1:4]
FIXTURES = os.environ["CKPT_FIXTURES"]
SNAPSHOT = os.path.join(FIXTURES, "oneflow-emulated", "A_legacy_v0.5_linear")
PICKLE_DIR = os.path.join(FIXTURES, "oneflow-emulated", "B_pickle_dir_v0.6-0.9_py38plus_proto4")
# A FIFO nobody writes to: a blocking open() would wait forever, so a hang fails here.
PROMPT_SECONDS = 60


def run(*argv):
    done = subprocess.run(argv, capture_output=True, timeout=PROMPT_SECONDS)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def npy_bytes(descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


class HostileInputs(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, *parts):
        return os.path.join(self.dir.name, *parts)

    def copy(self, source):
        destination = self.path(os.path.basename(source))
        shutil.copytree(source, destination)
        return destination

    def assert_refused(self, code, *argv):
        rc, output = run(*argv)
        self.assertNotIn(rc, (0, -11, -6, 134, 139), output)
        self.assertIn(code, output)
        return output

    def assert_every_tool_refuses(self, checkpoint, code):
        self.assert_refused(code, VALIDATE, checkpoint)
        self.assert_refused(code, INSPECT, checkpoint)
        self.assert_refused(code, CONVERT, checkpoint, self.path("out.safetensors"))
        self.assertFalse(os.path.exists(self.path("out.safetensors")))

    # Audit 5: a FIFO anywhere in a checkpoint is refused at once.
    def test_fifo_in_place_of_any_file_returns_promptly(self):
        p1 = self.copy(PICKLE_DIR)
        os.remove(os.path.join(p1, "pickled_data"))
        os.mkfifo(os.path.join(p1, "pickled_data"))
        self.assert_every_tool_refuses(p1, "E211")

        snapshot = self.copy(SNAPSHOT)
        os.remove(os.path.join(snapshot, "bias", "out"))
        os.mkfifo(os.path.join(snapshot, "bias", "out"))
        self.assert_every_tool_refuses(snapshot, "E211")

        for name in ("model.pt", "model.safetensors", "model.npz", "model.npy"):
            with self.subTest(file=name):
                os.mkfifo(self.path(name))
                for tool in (VALIDATE, INSPECT):
                    rc, output = run(tool, self.path(name))
                    self.assertNotEqual(rc, 0, output)
                    self.assertNotIn(rc, (-11, -6, 134, 139), output)

        shapes = self.path("shapes.json")
        os.mkfifo(shapes)
        rc, output = run(CONVERT, snapshot, self.path("out.npz"), "--shapes", shapes)
        self.assertNotEqual(rc, 0, output)

    # Audit 8: pickled_data -> /etc/passwd used to be parsed and its first byte quoted.
    def test_symlinked_pickled_data_is_refused_without_reading_it(self):
        secret = self.path("secret")
        with open(secret, "wb") as f:
            f.write(b"root:x:0:0:SECRET-CONTENT\n")
        p1 = self.copy(PICKLE_DIR)
        os.remove(os.path.join(p1, "pickled_data"))
        os.symlink(secret, os.path.join(p1, "pickled_data"))
        for tool in (VALIDATE, INSPECT):
            output = self.assert_refused("E208", tool, p1)
            self.assertNotIn("SECRET", output)
        output = self.assert_refused("E208", CONVERT, p1, self.path("out.npz"))
        self.assertNotIn("SECRET", output)

    # Audit 11: a symlink loop is a loop, not "leaves the checkpoint".
    def test_symlink_loop_is_reported_as_a_loop(self):
        snapshot = self.copy(SNAPSHOT)
        os.remove(os.path.join(snapshot, "bias", "out"))
        os.symlink("out", os.path.join(snapshot, "bias", "out"))
        output = self.assert_refused("E260", VALIDATE, snapshot)
        self.assertNotIn("leaves the checkpoint", output)
        self.assertNotIn("E208", output)

    # Audit 11: *.npy entries that are not regular files are refused, not skipped by a conversion.
    def test_npy_directory_with_irregular_arrays_refuses(self):
        for kind in ("fifo", "dangling", "symlink"):
            with self.subTest(kind=kind):
                directory = self.path("arrays-" + kind)
                os.mkdir(directory)
                with open(os.path.join(directory, "good.npy"), "wb") as f:
                    f.write(npy_bytes("<f4", "(2,)", b"\0" * 8))
                odd = os.path.join(directory, "odd.npy")
                if kind == "fifo":
                    os.mkfifo(odd)
                elif kind == "dangling":
                    os.symlink("missing.npy", odd)
                else:
                    os.symlink("good.npy", odd)
                destination = self.path("converted-" + kind + ".npz")
                output = self.assert_refused("E211", CONVERT, directory, destination)
                self.assertIn("odd", output)
                self.assertFalse(os.path.exists(destination))
                output = self.assert_refused("E211", VALIDATE, directory)
                self.assertIn("odd", output)

    # Audit 3: nested unknown fields used to overflow libprotobuf's stack (SIGSEGV).
    def test_deeply_nested_meta_is_a_syntax_error(self):
        snapshot = self.copy(SNAPSHOT)
        with open(os.path.join(snapshot, "bias", "meta"), "w") as f:
            f.write("x{" * 21000 + "}" * 21000)
        self.assert_every_tool_refuses(snapshot, "E302")

    # Audit 7: 4.19M NONEs (4.2 MB) took 1.7 GB; the decoded-bytes budget refuses it.
    def test_pickle_of_millions_of_nones_is_refused_by_the_byte_budget(self):
        p1 = self.copy(PICKLE_DIR)
        count = 4_190_000
        with open(os.path.join(p1, "pickled_data"), "wb") as f:
            f.write(b"\x80\x02]q\x00(" + b"N" * count + b"e.")
        output = self.assert_refused("E706", VALIDATE, p1)
        self.assertIn("max_decoded_bytes", output)

    # Audit 7: a 1 MB torch zip whose data.pkl inflates to 1 GiB is refused before inflating.
    def test_torch_data_pkl_inflating_to_a_gigabyte_is_refused(self):
        bomb = self.path("bomb.pt")
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            with archive.open("bomb/data.pkl", "w", force_zip64=True) as member:
                chunk = b"N" * (1 << 24)
                for _ in range(64):
                    member.write(chunk)
            archive.writestr("bomb/version", "3\n")
        self.assertLess(os.path.getsize(bomb), 8 << 20)
        output = self.assert_refused("E706", VALIDATE, bomb)
        self.assertIn("data.pkl", output)

    # Audit 11: a bool byte other than 0/1 is an error with the first offending offset.
    def test_bool_bytes_other_than_zero_and_one_are_an_error(self):
        directory = self.path("bools")
        os.mkdir(directory)
        with open(os.path.join(directory, "mask.npy"), "wb") as f:
            f.write(npy_bytes("|b1", "(6,)", b"\x01\x00\x01\x02\x01\xff"))
        output = self.assert_refused("E460", VALIDATE, directory)
        self.assertIn("element 3", output)
        self.assertIn("0x02", output)
        with open(os.path.join(directory, "mask.npy"), "wb") as f:
            f.write(npy_bytes("|b1", "(6,)", b"\x01\x00\x01\x00\x01\x01"))
        rc, output = run(VALIDATE, directory)
        self.assertEqual(rc, 0, output)


class SpecAgreesWithCode(unittest.TestCase):
    """spec/errors.md lists exactly the codes of error.hpp, with the names error.cpp prints."""

    def test_every_code_is_documented_with_its_name(self):
        import re
        root = os.environ["CKPT_SOURCE_ROOT"]
        with open(os.path.join(root, "libformat", "include", "ckpt", "format", "error.hpp")) as f:
            numbers = dict(re.findall(r"^\s+(k\w+) = (\d+),", f.read(), re.M))
        with open(os.path.join(root, "libformat", "src", "core", "error.cpp")) as f:
            names = dict(re.findall(r'case ErrorCode::(k\w+): return "(\w+)";', f.read()))
        code = {(int(number), names[enum]) for enum, number in numbers.items()}
        with open(os.path.join(root, "spec", "errors.md")) as f:
            documented = {(int(number), name) for number, name in re.findall(r"^\| E(\d+) \| (\w+) \|", f.read(), re.M)}
        self.assertGreater(len(code), 60)
        self.assertEqual(code, documented)


if __name__ == "__main__":
    unittest.main()
