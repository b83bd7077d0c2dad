"""The pickle policy against files Debian's torch 1.13 writes: argparse.Namespace, pathlib.PosixPath,
functools.partial, numpy scalars and HF Trainer's rng_state.pth (numpy arrays, random.getstate()).
Refused by default, naming the global; with --allow-global / --stub-unknown read, and converted to
torch again with data.pkl byte for byte as torch wrote it (one documented exception), which torch.load
itself then rebuilds into equal objects.

The non-tensor data around the tensors: ckpt-inspect lists each value with Python's own repr() as the
judge, a conversion to a flat format names what it drops (--strict refuses, E150), and ckpt-diff compares
the values (a config pickle and an empty npz are not equal).

Usage: test_pickle_policy.py CKPT_CONVERT CKPT_VALIDATE CKPT_INSPECT CKPT_DIFF
"""
import argparse
import functools
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import unittest
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from schema_check import checked  # noqa: E402  (each --json document against spec/schema)

CONVERT = sys.argv.pop(1)
VALIDATE = sys.argv.pop(1)
INSPECT = sys.argv.pop(1)
DIFF = sys.argv.pop(1)

NUMPY_ARRAYS = ["numpy.core.multiarray._reconstruct"]


def data_pkl(path):
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


def hf_rng_state():
    """What transformers' Trainer._save_rng_state writes to rng_state.pth (CPU only)."""
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    return {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}


CASES = {
    # name: (object, the global named in the refusal, the flags that allow it)
    "namespace": ({"args": argparse.Namespace(lr=0.1, name="run", layers=[1, 2]), "w": torch.arange(6.0).reshape(2, 3)},
                  "argparse.Namespace", ["--allow-global", "argparse.Namespace"]),
    "posixpath": ({"out": pathlib.PosixPath("/tmp/run/ckpt"), "w": torch.ones(2)},
                  "pathlib.PosixPath", ["--allow-global", "pathlib.PosixPath"]),
    "partial": ({"fn": functools.partial(torch.nn.functional.relu, inplace=True), "w": torch.ones(2)},
                "torch.nn.functional.relu",
                ["--allow-global", "functools.partial", "--allow-global", "torch.nn.functional.relu"]),
    "scalars": ({"best": np.float64(0.25), "step": np.int64(7), "flag": np.bool_(True), "w": torch.ones(1)},
                "numpy.dtype", ["--allow-global", "numpy.core.multiarray.scalar"]),
    "rng_state": (hf_rng_state(), "numpy.ndarray", ["--allow-global", NUMPY_ARRAYS[0]]),
}


def assert_same(test, ours, theirs, where="object"):
    test.assertIs(type(ours), type(theirs), where)
    if isinstance(theirs, dict):
        test.assertEqual(list(ours), list(theirs), where)
        for key in theirs:
            assert_same(test, ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        test.assertEqual(len(ours), len(theirs), where)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(test, a, b, f"{where}[{i}]")
    elif isinstance(theirs, torch.Tensor):
        test.assertTrue(torch.equal(ours, theirs), where)
    elif isinstance(theirs, np.ndarray):
        test.assertEqual(ours.dtype, theirs.dtype, where)
        test.assertTrue(np.array_equal(ours, theirs), where)
    elif isinstance(theirs, functools.partial):
        test.assertEqual((ours.func, ours.args, ours.keywords), (theirs.func, theirs.args, theirs.keywords), where)
    else:
        test.assertEqual(ours, theirs, where)


class InTemporaryDirectory(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.addCleanup(self.directory.cleanup)

    def path(self, name):
        return os.path.join(self.directory.name, name)


class PicklePolicy(InTemporaryDirectory):
    def saved(self, name):
        obj = CASES[name][0]
        path = self.path(f"{name}.pt")
        torch.save(obj, path)
        return obj, path

    def test_each_file_is_refused_by_default_naming_the_global(self):
        for name, (_, global_name, _) in CASES.items():
            with self.subTest(name):
                _, path = self.saved(name)
                done = subprocess.run([VALIDATE, path], capture_output=True, text=True)
                self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
                self.assertIn("E704", done.stdout)
                self.assertIn(f"'{global_name}'", done.stdout)
                self.assertIn("nothing was run", done.stdout)
                converted = subprocess.run([CONVERT, path, self.path(f"{name}.out.pt"), "--to", "torch"],
                                           capture_output=True, text=True)
                self.assertEqual(converted.returncode, 1)
                self.assertIn("--allow-global", converted.stderr)  # the hint
                self.assertFalse(os.path.exists(self.path(f"{name}.out.pt")))

    def convert(self, path, out, flags):
        done = subprocess.run([CONVERT, "-q", path, out, "--to", "torch", *flags], capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_allowed_globals_convert_to_the_same_pickle_and_torch_rebuilds_them(self):
        for name, (_, _, flags) in CASES.items():
            for policy in (flags, ["--stub-unknown"]):
                with self.subTest(name, policy=policy[0]):
                    obj, path = self.saved(name)
                    out = self.path(f"{name}.{policy[0][2:]}.pt")
                    self.convert(path, out, policy)
                    if name != "rng_state":
                        self.assertEqual(data_pkl(out), data_pkl(path))
                    assert_same(self, torch.load(out), obj)

    def test_rng_state_differs_only_where_torch_shared_the_str_cpu(self):
        # torch's pickle refers back to the dict key 'cpu' for the storage's location 'cpu' (one
        # interned str); ours writes the location again: the same object, 8 bytes more.
        _, path = self.saved("rng_state")
        out = self.path("rng.out.pt")
        self.convert(path, out, CASES["rng_state"][2])
        theirs, ours = data_pkl(path), data_pkl(out)
        self.assertEqual(len(ours) - len(theirs), 8)
        same = len(os.path.commonprefix([ours, theirs]))
        self.assertGreater(same, len(theirs) - 100)  # numpy's arrays, random's state: all as torch wrote them
        self.assertTrue(theirs[same:].startswith(b"h"), theirs[same:same + 8])  # BINGET of the key 'cpu'
        self.assertTrue(ours[same:].startswith(b"X\x03\x00\x00\x00cpu"), ours[same:same + 8])

    def test_allowing_one_global_does_not_allow_another(self):
        obj = {"args": argparse.Namespace(out=pathlib.PosixPath("/x")), "w": torch.ones(1)}
        path = self.path("both.pt")
        torch.save(obj, path)
        done = subprocess.run([VALIDATE, path, "--allow-global", "argparse.Namespace"], capture_output=True, text=True)
        self.assertEqual(done.returncode, 1)
        self.assertIn("'pathlib.PosixPath'", done.stdout)
        done = subprocess.run([VALIDATE, path, "--allow-global", "argparse.Namespace", "--allow-global",
                               "pathlib.PosixPath"], capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stdout)

    def test_a_module_name_without_a_dot_is_a_usage_error(self):
        _, path = self.saved("namespace")
        done = subprocess.run([VALIDATE, path, "--allow-global", "Namespace"], capture_output=True, text=True)
        self.assertEqual(done.returncode, 2)
        self.assertIn("MODULE.NAME", done.stderr)



class NonTensorData(InTemporaryDirectory):
    def saved(self, obj, name):
        path = self.path(name)
        torch.save(obj, path)
        return path

    def run_tool(self, *argv, code=0):
        done = subprocess.run(list(argv), capture_output=True, text=True)
        self.assertEqual(done.returncode, code, done.stdout + done.stderr)
        return done

    def test_inspect_lists_each_value_as_python_shows_it(self):
        namespace = argparse.Namespace(lr=0.1, name="run", layers=[1, 2])
        obj = {"epoch": 3, "lr": 1e-05, "tag": "a\nb\x1b'c", "ok": True, "none": None, "betas": (0.9, 0.999),
               "state": {}, "args": namespace, "nested": {"seed": -7, "w": torch.ones(2)}, "blob": b"\x00\xffz"}
        path = self.saved(obj, "train.pt")
        done = self.run_tool(INSPECT, "--json", path, "--allow-global", "argparse.Namespace")
        objects = {o["path"]: o for o in checked(done.stdout)["objects"]}
        expected = {"epoch": 3, "lr": 1e-05, "tag": "a\nb\x1b'c", "ok": True, "none": None, "betas": (0.9, 0.999),
                    "state": {}, "nested.seed": -7, "blob": b"\x00\xffz"}
        for key, value in expected.items():
            self.assertEqual(objects[key]["value"], repr(value), key)  # Python's repr is the judge
            self.assertEqual(objects[key]["type"], type(value).__name__.replace("NoneType", "None"), key)
        self.assertEqual(objects["args"]["type"], "argparse.Namespace")
        self.assertEqual(objects["args"]["value"], "argparse." + repr(namespace))
        self.assertNotIn("nested.w", objects)  # a tensor, listed as one
        self.assertEqual(len(objects), len(expected) + 1)
        # Text: escaped for the terminal, no raw control byte.
        text = self.run_tool(INSPECT, path, "--allow-global", "argparse.Namespace").stdout
        self.assertIn("objects (non-tensor values", text)
        self.assertNotIn("\x1b", text)
        self.assertRegex(text, r"\n  tag +str +\"a\\nb\\x1b'c\"\n")

    def test_numpy_values_show_as_numpy_shows_them(self):
        path = self.saved(hf_rng_state(), "rng_state.pth")
        done = self.run_tool(INSPECT, "--json", path, "--allow-global", NUMPY_ARRAYS[0])
        objects = {o["path"]: o for o in checked(done.stdout)["objects"]}
        # The uint32 array is a tensor (numpy.1); the tuple's other items are values.
        self.assertEqual([(objects[p]["type"], objects[p]["value"]) for p in ("numpy.0", "numpy.2", "numpy.4")],
                         [("str", "'MT19937'"), ("int", "624"), ("float", "0.0")])
        self.assertNotIn("numpy.1", objects)
        self.assertIsNone(objects["python"]["value"])  # 625 ints: longer than 256 bytes
        # An array of a dtype ckpt has no tensor type for stays a value, shown as numpy shows its type.
        words = self.saved({"words": np.array(["ab", "c"]), "w": torch.ones(1)}, "words.pt")
        done = self.run_tool(INSPECT, "--json", words, "--allow-global", NUMPY_ARRAYS[0])
        objects = {o["path"]: o for o in checked(done.stdout)["objects"]}
        self.assertEqual(objects["words"]["value"], "array(shape=(2,), dtype='<U2')")
        scalars = self.saved({"best": np.float64(0.25), "step": np.int64(7), "w": torch.ones(1)}, "scalars.pt")
        done = self.run_tool(INSPECT, "--json", scalars, "--allow-global", "numpy.core.multiarray.scalar")
        objects = {o["path"]: o for o in checked(done.stdout)["objects"]}
        self.assertEqual((objects["best"]["type"], objects["best"]["value"]), ("numpy.float64", "float64(0.25)"))
        self.assertEqual((objects["step"]["type"], objects["step"]["value"]), ("numpy.int64", "int64(7)"))

    def test_a_flat_destination_names_what_it_drops_and_strict_refuses(self):
        path = self.saved({"epoch": 3, "config": {"lr": 0.1}, "model": {"w": torch.ones(2)}}, "train.pt")
        out = self.path("train.npz")
        done = self.run_tool(CONVERT, path, out)
        self.assertIn("warning: npz keeps tensors only; 2 non-tensor values of the object were dropped: epoch, "
                      "config.lr", done.stderr)
        self.assertEqual(sorted(np.load(out).files), ["model.w"])
        strict = self.path("strict.npz")
        done = self.run_tool(CONVERT, path, strict, "--strict", code=2)
        self.assertIn("E150", done.stderr)
        self.assertIn("2 non-tensor values of the object would be dropped: epoch, config.lr", done.stderr)
        self.assertFalse(os.path.exists(strict))
        # Between pickle formats nothing is dropped, so --strict converts.
        self.run_tool(CONVERT, "-q", path, self.path("copy.pt"), "--strict")
        doc = checked(self.run_tool(CONVERT, "--json", path, self.path("again.npz")).stdout)
        self.assertEqual(doc["dropped"], ["epoch", "config.lr"])

    def test_a_filter_or_rename_names_what_it_drops_and_strict_refuses(self):
        # The views present the tensors without the object, for pickle destinations too.
        path = self.saved({"epoch": 3, "model": {"w": torch.ones(2), "b": torch.zeros(1)}}, "train.pt")
        for view in (["--exclude", "model.b"], ["--include", "model.*"], ["--rename", "model.="]):
            for destination in ("out.npz", "out.pt"):
                out = self.path(destination)
                done = self.run_tool(CONVERT, path, out, "--force", *view)
                self.assertIn("warning: --include/--exclude/--rename keeps tensors only; 1 non-tensor values of the "
                              "object were dropped: epoch", done.stderr)
                strict = self.path("strict-" + destination)
                done = self.run_tool(CONVERT, path, strict, "--strict", *view, code=2)
                self.assertIn("E150 object_data_dropped", done.stderr)
                self.assertIn("a filter or rename view keeps tensors only; 1 non-tensor values of the object would be "
                              "dropped: epoch", done.stderr)
                self.assertFalse(os.path.exists(strict))
        self.assertEqual(sorted(torch.load(self.path("out.pt"), weights_only=True)), ["b", "w"])
        # A cast keeps the object: nothing is dropped between pickle formats.
        done = self.run_tool(CONVERT, path, self.path("half.pt"), "--dtype", "f16", "--strict")
        self.assertNotIn("warning", done.stderr)

    def test_diff_compares_the_values_of_pickles(self):
        ones = torch.ones(2)
        a = self.saved({"epoch": 3, "args": argparse.Namespace(lr=0.1), "w": ones}, "a.pt")
        same = self.saved({"epoch": 3, "args": argparse.Namespace(lr=0.1), "w": ones.clone()}, "same.pt")
        later = self.saved({"epoch": 4, "args": argparse.Namespace(lr=0.2), "w": ones}, "later.pt")
        allow = ["--allow-global", "argparse.Namespace"]
        self.run_tool(DIFF, a, same, *allow)
        done = self.run_tool(DIFF, a, later, *allow, code=1)
        self.assertIn("differ   object epoch: A int 3, B int 4", done.stdout)
        self.assertIn("differ   object args: A argparse.Namespace argparse.Namespace(lr=0.1), B argparse.Namespace "
                      "argparse.Namespace(lr=0.2)", done.stdout)
        doc = checked(self.run_tool(DIFF, "--json", a, later, *allow, code=1).stdout)
        self.assertEqual([d["path"] for d in doc["objects"]["differing"]], ["args", "epoch"])
        # Its own npz copy has the tensor and nothing else: not equal.
        flat = self.path("a.npz")
        self.run_tool(CONVERT, "-q", a, flat, *allow)
        done = self.run_tool(DIFF, a, flat, *allow, code=1)
        self.assertIn("missing  object epoch int (only in A)", done.stdout)
        # A config pickle and an empty npz.
        config = self.saved({"lr": 0.1, "name": "run"}, "config.pt")
        empty = self.path("empty.npz")
        np.savez(empty)
        done = self.run_tool(DIFF, config, empty, code=1)
        self.assertIn("DIFFERENT", done.stdout)
        self.assertIn("missing  object lr float (only in A)", done.stdout)

    def test_diff_compares_values_under_filters_and_renames(self):
        a = self.saved({"epoch": 3, "model": {"w": torch.ones(2)}, "opt": {"m": torch.zeros(2)}}, "a.pt")
        later = self.saved({"epoch": 4, "model": {"w": torch.ones(2)}, "opt": {"m": torch.ones(2)}}, "later.pt")
        # An identity rename keeps a file equal to itself: its values are compared, not lost.
        self.run_tool(DIFF, a, a, "--rename", "model.=model.")
        # Excluding A's optimizer tensors still finds the changed epoch (the
        # filters present A only: B's opt.m is extra).
        done = self.run_tool(DIFF, a, later, "--exclude", "opt.*", code=1)
        self.assertIn("differ   object epoch: A int 3, B int 4", done.stdout)
        self.assertIn("extra    opt.m (only in B)", done.stdout)


def safetensors_arrays(path):
    """The arrays of a safetensors file as the safetensors package loads them (in the venv of
    scripts/make-hf-venv.sh, which has no torch), or None where that venv is missing."""
    venv = pathlib.Path(os.environ.get("CKPT_HF_VENV", pathlib.Path.home() / ".cache/ckpt/hf-venv")) / "bin/python"
    if not venv.exists():
        return None
    npz = path + ".judged.npz"
    subprocess.run([str(venv), "-c", "import sys, numpy; from safetensors.numpy import load_file; "
                    "numpy.savez(sys.argv[2], **load_file(sys.argv[1]))", path, npz], check=True)
    with np.load(npz) as arrays:
        return {name: arrays[name] for name in arrays.files}


class NumpyArraysAsTensors(InTemporaryDirectory):
    """numpy arrays inside torch pickles (HF Trainer's rng_state.pth), allowed by the policy, are
    tensors of the checkpoint named by their object path; torch.load's arrays are the judge."""

    ALLOW = ["--allow-global", NUMPY_ARRAYS[0]]

    def run_tool(self, *argv, code=0):
        done = subprocess.run(list(argv), capture_output=True, text=True)
        self.assertEqual(done.returncode, code, done.stdout + done.stderr)
        return done

    def saved(self, obj, name, **save):
        path = self.path(name)
        torch.save(obj, path, **save)
        return path

    def rng_files(self):
        np.random.seed(21)
        obj = {"numpy": np.random.get_state(), "w": torch.arange(6.0)}
        return obj, [self.saved(obj, "rng.pth"), self.saved(obj, "rng_legacy.pth", _use_new_zipfile_serialization=False)]

    def test_rng_state_arrays_are_tensors_in_zip_and_legacy_files(self):
        obj, paths = self.rng_files()
        for path in paths:
            with self.subTest(os.path.basename(path)):
                doc = checked(self.run_tool(INSPECT, "--json", path, *self.ALLOW).stdout)
                tensors = {t["name"]: t for t in doc["tensors"]}
                self.assertEqual(sorted(tensors), ["numpy.1", "w"])
                self.assertEqual((tensors["numpy.1"]["dtype"], tensors["numpy.1"]["shape"]), ("kUInt32", [624]))
                self.assertEqual(sorted(o["path"] for o in doc["objects"]), ["numpy.0", "numpy.2", "numpy.3", "numpy.4"])
                self.assertIn("2 tensors", self.run_tool(INSPECT, path, *self.ALLOW).stdout)
                loaded = torch.load(path)
                out = self.path(os.path.basename(path) + ".safetensors")
                done = self.run_tool(CONVERT, path, out, *self.ALLOW)
                self.assertIn("4 non-tensor values of the object were dropped: numpy.0, numpy.2, numpy.3, numpy.4",
                              done.stderr)
                arrays = safetensors_arrays(out)
                if arrays is None:  # no safetensors package here: numpy judges an npz instead
                    npz = self.path(os.path.basename(path) + ".npz")
                    self.run_tool(CONVERT, "-q", path, npz, *self.ALLOW)
                    with np.load(npz) as flat:
                        arrays = {name: flat[name] for name in flat.files}
                self.assertEqual(sorted(arrays), ["numpy.1", "w"])
                self.assertEqual(arrays["numpy.1"].dtype, np.uint32)
                self.assertTrue(np.array_equal(arrays["numpy.1"], loaded["numpy"][1]))
                self.assertTrue(np.array_equal(arrays["numpy.1"], obj["numpy"][1]))
                self.assertTrue(np.array_equal(arrays["w"], loaded["w"].numpy()))

    def test_arrays_are_labelled_by_their_numpy_descr_and_tensors_by_their_storage(self):
        obj = {"rng": np.random.get_state(), "short": np.arange(3, dtype=np.int16), "w": torch.arange(6.0),
               "h": torch.zeros(2, dtype=torch.int16)}
        for path in (self.saved(obj, "labels.pth"), self.saved(obj, "labels_legacy.pth",
                                                                  _use_new_zipfile_serialization=False)):
            with self.subTest(os.path.basename(path)):
                expected = {"rng.1": ("kUInt32", "<u4"), "short": ("kInt16", "<i2"), "w": ("kFloat", "FloatStorage"),
                            "h": ("kInt16", "ShortStorage")}
                for tool in (INSPECT, VALIDATE):
                    doc = checked(self.run_tool(tool, "--json", path, *self.ALLOW).stdout)
                    self.assertEqual({t["name"]: (t["dtype"], t["format_dtype"]) for t in doc["tensors"]}, expected)
                    text = self.run_tool(tool, path, *self.ALLOW).stdout
                    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
                    for name, (dtype, label) in expected.items():
                        self.assertIn(f" {dtype} ({label}) ", rows[name])

    def test_strict_refuses_the_values_around_the_arrays(self):
        _, paths = self.rng_files()
        out = self.path("strict.safetensors")
        done = self.run_tool(CONVERT, paths[0], out, "--strict", *self.ALLOW, code=2)
        self.assertIn("E150", done.stderr)
        self.assertIn("numpy.0, numpy.2, numpy.3, numpy.4", done.stderr)
        self.assertFalse(os.path.exists(out))

    def test_default_policy_still_refuses_arrays(self):
        _, paths = self.rng_files()
        for path in paths:
            done = self.run_tool(VALIDATE, path, code=1)
            self.assertIn("E704", done.stdout)

    def test_fortran_order_arrays_are_read_in_c_order(self):
        fortran = np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
        obj = {"f": fortran, "c": np.arange(5, dtype=np.float16), "flags": np.array([True, False, True])}
        for path in (self.saved(obj, "f.pt"), self.saved(obj, "f_legacy.pt", _use_new_zipfile_serialization=False)):
            with self.subTest(os.path.basename(path)):
                out = self.path(os.path.basename(path) + ".npz")
                self.run_tool(CONVERT, "-q", path, out, "--strict", *self.ALLOW)
                loaded = torch.load(path)
                with np.load(out) as flat:
                    self.assertEqual(sorted(flat.files), ["c", "f", "flags"])
                    for name in flat.files:
                        self.assertEqual(flat[name].dtype, loaded[name].dtype, name)
                        self.assertTrue(np.array_equal(flat[name], loaded[name]), name)
                # torch -> torch: each array goes back as a numpy array (C order now), equal for torch.load.
                again = self.path(os.path.basename(path) + ".again.pt")
                self.run_tool(CONVERT, "-q", path, again, *self.ALLOW)
                assert_same(self, torch.load(again), loaded)
                self.assertTrue(torch.load(again)["f"].flags.c_contiguous)

    def test_an_array_cast_on_the_way_is_written_as_a_torch_tensor(self):
        path = self.saved({"a": np.linspace(0, 1, 5), "n": np.arange(3)}, "cast.pt")
        out = self.path("cast.f16.pt")
        self.run_tool(CONVERT, "-q", path, out, "--dtype", "f16", *self.ALLOW)
        loaded = torch.load(out)
        self.assertEqual((type(loaded["a"]), loaded["a"].dtype), (torch.Tensor, torch.float16))
        self.assertTrue(torch.equal(loaded["a"], torch.from_numpy(np.linspace(0, 1, 5)).half()))
        self.assertIsInstance(loaded["n"], np.ndarray)  # not cast: still the numpy array
        self.assertTrue(np.array_equal(loaded["n"], np.arange(3)))

    def test_arrays_of_a_oneflow_pickle_directory_are_tensors_under_the_same_policy(self):
        # torch -> P1 writes each array back as a numpy array in pickled_data (flow.load's own check is in
        # test_oneflow_interop.py); read as P1 they are tensors only where the policy names _reconstruct,
        # though OneFlow's allow-list reads them as values without it.
        obj, paths = self.rng_files()
        p1 = self.path("rng_p1")
        self.run_tool(CONVERT, "-q", paths[0], p1, "--to", "oneflow-pickle", *self.ALLOW)
        self.assertIn(b"_reconstruct", open(os.path.join(p1, "pickled_data"), "rb").read())
        self.assertEqual(sorted(os.listdir(p1)), ["pickled_data", "tensor_1"])  # "w" only has a directory
        plain = checked(self.run_tool(INSPECT, "--json", p1).stdout)
        self.assertEqual([t["name"] for t in plain["tensors"]], ["w"])
        self.assertEqual([(o["path"], o["type"]) for o in plain["objects"]], [("numpy", "tuple")])
        for policy in (self.ALLOW, ["--stub-unknown"]):
            for tool in (INSPECT, VALIDATE):
                doc = checked(self.run_tool(tool, "--json", p1, *policy).stdout)
                self.assertEqual(doc["layout"], "P1")
                self.assertEqual([(t["name"], t["dtype"], t["format_dtype"], t["shape"]) for t in doc["tensors"]],
                                 [("numpy.1", "kUInt32", "<u4", [624]), ("w", "kFloat", None, [6])])
        npz = self.path("rng_p1.npz")
        done = self.run_tool(CONVERT, p1, npz, *self.ALLOW)
        self.assertIn("numpy.0, numpy.2, numpy.3, numpy.4", done.stderr)
        with np.load(npz) as flat:
            self.assertEqual(sorted(flat.files), ["numpy.1", "w"])
            self.assertEqual(flat["numpy.1"].dtype, np.uint32)
            self.assertTrue(np.array_equal(flat["numpy.1"], obj["numpy"][1]))
            self.assertTrue(np.array_equal(flat["w"], obj["w"].numpy()))
        # P1 -> torch: torch.load rebuilds the same object, the array a numpy array again.
        back = self.path("rng_back.pt")
        self.run_tool(CONVERT, "-q", p1, back, *self.ALLOW)
        assert_same(self, torch.load(back), torch.load(paths[0]))

    def test_arrays_ckpt_has_no_type_for_stay_values(self):
        # An array inside a stub's arguments or tuple state has no state_dict() name: a value too.
        obj = {"words": np.array(["ab", "c"]), "big": np.arange(3, dtype=">i4"),
               "pairs": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]), "w": torch.ones(2),
               "fn": functools.partial(max, np.arange(3))}
        path = self.saved(obj, "odd.pt")
        doc = checked(self.run_tool(INSPECT, "--json", path, "--stub-unknown").stdout)
        self.assertEqual([t["name"] for t in doc["tensors"]], ["w"])
        self.assertEqual(sorted(o["path"] for o in doc["objects"]), ["big", "fn", "pairs", "words"])
        done = self.run_tool(CONVERT, path, self.path("odd.npz"), "--stub-unknown")
        self.assertIn("4 non-tensor values of the object were dropped", done.stderr)
        again = self.path("odd.again.pt")
        self.run_tool(CONVERT, "-q", path, again, "--stub-unknown")
        self.assertEqual(data_pkl(again), data_pkl(path))
        ours, theirs = torch.load(again), torch.load(path)  # torch 1.13 loads '>i4' as int32 itself
        self.assertTrue(np.array_equal(ours.pop("fn").args[0], theirs.pop("fn").args[0]))
        assert_same(self, ours, theirs)


class Protocol2Names(InTemporaryDirectory):
    """Python 3's pickler writes builtins.int as __builtin__.long in protocol 2 (torch.save's), as
    CPython's Lib/_compat_pickle.py REVERSE_NAME_MAPPING says; the reader maps it back as
    Unpickler.find_class does, so --allow-global names the Python 3 global."""

    def test_allow_global_builtins_int_matches_protocol_2s_long(self):
        path = self.path("partial.pt")
        torch.save({"fn": functools.partial(int, base=2), "w": torch.ones(2)}, path)
        self.assertIn(b"c__builtin__\nlong\n", data_pkl(path))  # what torch 1.13 wrote
        flags = ["--allow-global", "functools.partial"]
        done = subprocess.run([VALIDATE, path, *flags], capture_output=True, text=True)
        self.assertEqual(done.returncode, 1, done.stdout)
        self.assertIn("'__builtin__.long'", done.stdout)
        flags += ["--allow-global", "builtins.int"]
        done = subprocess.run([VALIDATE, path, *flags], capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stdout)
        out = self.path("partial.out.pt")
        subprocess.run([CONVERT, "-q", path, out, *flags], check=True)
        self.assertEqual(data_pkl(out), data_pkl(path))  # the Python 2 name is kept as written
        fn = torch.load(out)["fn"]
        self.assertEqual((fn.func, fn.args, fn.keywords), (int, (), {"base": 2}))


if __name__ == "__main__":
    unittest.main()
