"""The C API's pickle policy (ckpt_open_with) and the object's non-tensor values (ckpt_object_leaf_*),
through ctypes, on files Debian's torch 1.13 writes; Python's own values and repr() are the judges.
ckpt_convert_with (API version 4): the source's policy, skip_unsupported on an npz numpy writes with a
'|S3' member, and strict on a torch file with an epoch; numpy and torch read the results.

Usage: test_capi_pickle.py LIBCKPT
"""
import argparse
import ctypes
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

LIBCKPT = sys.argv.pop(1)

VALUE_NONE, VALUE_BOOL, VALUE_INT, VALUE_FLOAT, VALUE_STR, VALUE_BYTES, VALUE_OTHER = range(7)


class OpenOptions(ctypes.Structure):
    _fields_ = [("format", ctypes.c_char_p), ("allowed_globals", ctypes.POINTER(ctypes.c_char_p)),
                ("allowed_global_count", ctypes.c_size_t), ("stub_unknown", ctypes.c_int)]


class ObjectLeaf(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("type", ctypes.c_char_p), ("kind", ctypes.c_int32),
                ("int_value", ctypes.c_int64), ("float_value", ctypes.c_double), ("text", ctypes.c_void_p),
                ("text_size", ctypes.c_size_t), ("repr", ctypes.c_char_p)]


class ConvertOptions(ctypes.Structure):
    _fields_ = [("format", ctypes.c_char_p), ("flags", ctypes.c_uint), ("source_options", ctypes.POINTER(OpenOptions)),
                ("skip_unsupported", ctypes.c_int), ("strict", ctypes.c_int)]


def load():
    lib = ctypes.CDLL(LIBCKPT)
    lib.ckpt_open_with.argtypes = [ctypes.c_char_p, ctypes.POINTER(OpenOptions), ctypes.POINTER(ctypes.c_void_p)]
    lib.ckpt_close.argtypes = [ctypes.c_void_p]
    lib.ckpt_object_leaf_count.argtypes = [ctypes.c_void_p]
    lib.ckpt_object_leaf_count.restype = ctypes.c_size_t
    lib.ckpt_object_leaf_at.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ObjectLeaf)]
    lib.ckpt_tensor_count.argtypes = [ctypes.c_void_p]
    lib.ckpt_tensor_count.restype = ctypes.c_size_t
    lib.ckpt_last_error.restype = ctypes.c_char_p
    lib.ckpt_convert_with.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ConvertOptions)]
    lib.ckpt_reader_rename.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]
    return lib


def open_options(allowed=(), stub_unknown=False):
    names = (ctypes.c_char_p * max(1, len(allowed)))(*[a.encode() for a in allowed])
    return OpenOptions(None, names, len(allowed), 1 if stub_unknown else 0)


class LibraryTest(unittest.TestCase):
    """The library loaded once; a temporary directory per test."""

    @classmethod
    def setUpClass(cls):
        cls.lib = load()

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.addCleanup(self.directory.cleanup)


class CapiPickle(LibraryTest):
    def open(self, path, allowed=(), stub_unknown=False):
        options = open_options(allowed, stub_unknown)
        reader = ctypes.c_void_p()
        status = self.lib.ckpt_open_with(path.encode(), ctypes.byref(options), ctypes.byref(reader))
        if status == 0:
            self.addCleanup(self.lib.ckpt_close, reader)
        return status, reader

    def leaves(self, reader):
        out = {}
        for i in range(self.lib.ckpt_object_leaf_count(reader)):
            leaf = ObjectLeaf()
            self.assertEqual(self.lib.ckpt_object_leaf_at(reader, i, ctypes.byref(leaf)), 0)
            text = ctypes.string_at(leaf.text, leaf.text_size) if leaf.text else None
            out[leaf.path.decode()] = (leaf.type.decode(), leaf.kind, leaf.int_value, leaf.float_value, text,
                                       leaf.repr.decode() if leaf.repr else None)
        leaf = ObjectLeaf()
        self.assertEqual(self.lib.ckpt_object_leaf_at(reader, len(out), ctypes.byref(leaf)), 104)  # out of range
        return out

    def test_policy_and_values(self):
        path = os.path.join(self.directory.name, "train.pt")
        namespace = argparse.Namespace(lr=0.1, name="run")
        torch.save({"epoch": 3, "lr": 0.25, "tag": "a\x00b", "raw": b"\x00\xff", "ok": False, "none": None,
                    "args": namespace, "best": np.float64(0.5), "w": torch.ones(2)}, path)
        status, _ = self.open(path)
        self.assertEqual(status, 704)
        self.assertIn(b"argparse.Namespace", self.lib.ckpt_last_error())
        status, reader = self.open(path, ["argparse.Namespace", "numpy.core.multiarray.scalar"])
        self.assertEqual(status, 0, self.lib.ckpt_last_error())
        self.assertEqual(self.lib.ckpt_tensor_count(reader), 1)
        leaves = self.leaves(reader)
        self.assertEqual(leaves["epoch"][:3], ("int", VALUE_INT, 3))
        self.assertEqual((leaves["lr"][1], leaves["lr"][3]), (VALUE_FLOAT, 0.25))
        self.assertEqual((leaves["tag"][1], leaves["tag"][4]), (VALUE_STR, b"a\x00b"))
        self.assertEqual((leaves["raw"][1], leaves["raw"][4], leaves["raw"][5]), (VALUE_BYTES, b"\x00\xff", repr(b"\x00\xff")))
        self.assertEqual(leaves["ok"][1:3], (VALUE_BOOL, 0))
        self.assertEqual(leaves["none"][1], VALUE_NONE)
        self.assertEqual((leaves["args"][0], leaves["args"][1], leaves["args"][5]),
                         ("argparse.Namespace", VALUE_OTHER, "argparse." + repr(namespace)))
        self.assertEqual((leaves["best"][0], leaves["best"][1], leaves["best"][3]), ("numpy.float64", VALUE_FLOAT, 0.5))
        self.assertEqual(set(leaves), {"epoch", "lr", "tag", "raw", "ok", "none", "args", "best"})
        # A rename view keeps the object.
        rules = (ctypes.c_char_p * 1)(b"w=weight")
        self.assertEqual(self.lib.ckpt_reader_rename(reader, rules, 1), 0)
        self.assertEqual(self.leaves(reader), leaves)
        # --stub-unknown opens it too.
        status, _ = self.open(path, stub_unknown=True)
        self.assertEqual(status, 0)

    def test_flat_formats_have_no_values(self):
        path = os.path.join(self.directory.name, "w.npz")
        np.savez(path, w=np.ones(2, dtype=np.float32))
        status, reader = self.open(path)
        self.assertEqual(status, 0)
        self.assertEqual(self.lib.ckpt_object_leaf_count(reader), 0)


class CapiConvertOptions(LibraryTest):
    def path(self, name):
        return os.path.join(self.directory.name, name)

    def convert(self, source, destination, fmt, skip_unsupported=0, strict=0, allowed=()):
        source_options = open_options(allowed)
        options = ConvertOptions(fmt.encode(), 0, ctypes.pointer(source_options) if allowed else None,
                                 skip_unsupported, strict)
        return self.lib.ckpt_convert_with(source.encode(), destination.encode(), ctypes.byref(options))

    def test_skip_unsupported(self):
        # As tests/interop/test_npz_unsupported.py writes it: a '|S3' __version__ beside real arrays.
        source, target = self.path("mixed.npz"), self.path("out.npz")
        weight = np.arange(12, dtype=np.float32).reshape(4, 3)
        np.savez(source, __version__=np.array(b"1.0", dtype="S3"), weight=weight)
        self.assertEqual(self.convert(source, target, "npz"), 540)
        self.assertIn(b"__version__", self.lib.ckpt_last_error())
        self.assertFalse(os.path.exists(target))
        self.assertEqual(self.convert(source, target, "npz", skip_unsupported=1), 0, self.lib.ckpt_last_error())
        with np.load(target) as converted:
            self.assertEqual(sorted(converted.files), ["weight"])
            np.testing.assert_array_equal(converted["weight"], weight)

    def test_strict_and_the_source_policy(self):
        source = self.path("train.pt")
        torch.save({"epoch": 3, "args": argparse.Namespace(lr=0.1), "w": torch.arange(6.0)}, source)
        self.assertEqual(self.convert(source, self.path("refused.npz"), "npz"), 704)
        allowed = ["argparse.Namespace"]
        self.assertEqual(self.convert(source, self.path("strict.npz"), "npz", strict=1, allowed=allowed), 150)
        self.assertIn(b"epoch", self.lib.ckpt_last_error())
        self.assertFalse(os.path.exists(self.path("strict.npz")))
        self.assertEqual(self.convert(source, self.path("flat.npz"), "npz", allowed=allowed), 0, self.lib.ckpt_last_error())
        with np.load(self.path("flat.npz")) as flat:
            np.testing.assert_array_equal(flat["w"], np.arange(6, dtype=np.float32))
        # A pickle destination keeps the object: torch reads the epoch back.
        self.assertEqual(self.convert(source, self.path("copy.pt"), "torch", strict=1, allowed=allowed), 0)
        copy = torch.load(self.path("copy.pt"))
        self.assertEqual(copy["epoch"], 3)
        self.assertEqual(copy["args"].lr, 0.1)
        # NULL options: ckpt_convert(source, destination, NULL, 0), a OneFlow snapshot.
        npz = self.path("plain.npz")
        np.savez(npz, w=np.ones(2, dtype=np.float32))
        self.assertEqual(self.lib.ckpt_convert_with(npz.encode(), self.path("snapshot").encode(), None), 0)
        self.assertTrue(os.path.isdir(self.path("snapshot")))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
