"""Sharded safetensors interop, proven by the peers from pip: safetensors
loads the shards ckpt-convert writes (values equal, index as
huggingface_hub's splitter writes it, byte for byte), and a set made by
huggingface_hub's splitter and safetensors.numpy.save_file reads as one
checkpoint. Broken sets give their codes in ckpt-validate.

The peers live in the venv scripts/make-hf-venv.sh creates; without it the
test is skipped (exit 77).

usage: test_sharded_interop.py CKPT_CONVERT CKPT_VALIDATE CKPT_INSPECT CKPT_DIFF LIBCKPT   (run by meson test)
"""
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

VENV_PYTHON = Path(os.environ.get("CKPT_HF_VENV", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                  / "ckpt" / "hf-venv")) / "bin" / "python"
PEERS = "import safetensors.numpy, huggingface_hub, numpy"

if Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    if not VENV_PYTHON.exists() or subprocess.run([str(VENV_PYTHON), "-c", PEERS]).returncode != 0:
        print(f"skipped: no venv with safetensors and huggingface_hub at {VENV_PYTHON}; run scripts/make-hf-venv.sh")
        sys.exit(77)
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

import numpy as np  # noqa: E402
from huggingface_hub import constants, split_state_dict_into_shards_factory  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

CONVERT, VALIDATE, INSPECT, DIFF, LIBCKPT = sys.argv[1:6]
INDEX = "model.safetensors.index.json"


def run(*args, expect=0):
    done = subprocess.run([*map(str, args)], capture_output=True, text=True)
    assert done.returncode == expect, f"{args}: rc {done.returncode}, stderr:\n{done.stderr}"
    return done.stdout


def state_dict():
    """Tensors of several types and sizes, in name order (the order ckpt-convert adds them)."""
    rng = np.random.default_rng(15)
    tensors = {
        "embed.weight": rng.standard_normal((64, 48)).astype(np.float32),  # 12288 bytes: over the limit
        "layer.0.bias": rng.standard_normal(300).astype(np.float16),
        "layer.0.weight": rng.standard_normal((40, 30)).astype(np.float32),
        "layer.1.weight": rng.standard_normal((20, 20)).astype(np.float64),
        "layer.1.steps": rng.integers(-9, 9, size=(7,), dtype=np.int64),
        "norm.scale": rng.standard_normal(1000).astype(np.float32),
        "zeta": np.arange(6, dtype=np.uint8).reshape(2, 3),
    }
    return dict(sorted(tensors.items()))


def hf_split(tensors, limit):
    return split_state_dict_into_shards_factory(tensors, get_storage_size=lambda a: a.nbytes, max_shard_size=limit,
                                                filename_pattern=constants.SAFETENSORS_WEIGHTS_FILE_PATTERN)


def load_set(directory):
    """The whole set through the index, with safetensors: name -> array."""
    index = json.loads((directory / INDEX).read_text())
    loaded = {}
    for file in sorted(set(index["weight_map"].values())):
        shard = load_file(directory / file)
        for name in shard:
            assert index["weight_map"][name] == file, (name, file)
            assert name not in loaded
        loaded.update(shard)
    assert set(loaded) == set(index["weight_map"])
    return loaded, index


def write_hf_set(directory, tensors, limit):
    """A set exactly as huggingface_hub's split + safetensors save_file + index writes it."""
    directory.mkdir()
    split = hf_split(tensors, limit)
    for file, names in split.filename_to_tensors.items():
        save_file({n: tensors[n] for n in names}, directory / file, metadata={"format": "pt"})
    with open(directory / INDEX, "w") as f:
        json.dump({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, f, indent=2)
    return split


class ShardedInterop(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def assert_equal_tensors(self, got, expected):
        self.assertEqual(sorted(got), sorted(expected))
        for name, array in expected.items():
            self.assertEqual(got[name].dtype, array.dtype, name)
            np.testing.assert_array_equal(got[name], array, err_msg=name)

    def test_our_set_loads_in_safetensors_and_matches_the_splitter(self):
        tensors = state_dict()
        np.savez(self.dir / "in.npz", **tensors)
        out = self.dir / "out"
        run(CONVERT, self.dir / "in.npz", out, "--to", "safetensors-sharded", "--max-shard-size", "5KB")
        loaded, index = load_set(out)
        self.assert_equal_tensors(loaded, tensors)
        split = hf_split(tensors, "5KB")
        self.assertTrue(split.is_sharded)
        self.assertEqual(sorted(p.name for p in out.iterdir()), sorted([*split.filename_to_tensors, INDEX]))
        for file, names in split.filename_to_tensors.items():
            with safe_open(out / file, framework="np") as shard:
                self.assertEqual(sorted(shard.keys()), sorted(names), file)
                self.assertEqual(shard.metadata(), {"format": "pt"})
        expected_index = json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, indent=2)
        self.assertEqual((out / INDEX).read_text(), expected_index)
        self.assertEqual(index["metadata"]["total_size"], sum(a.nbytes for a in tensors.values()))

    def test_a_set_from_the_splitter_reads_as_one_checkpoint(self):
        tensors = state_dict()
        split = write_hf_set(self.dir / "hf", tensors, "3KB")
        self.assertGreater(len(split.filename_to_tensors), 3)
        for source in (self.dir / "hf", self.dir / "hf" / INDEX):
            report = json.loads(run(VALIDATE, source, "--json"))
            self.assertEqual(report["format"], "safetensors-sharded")
            self.assertTrue(report["valid"], report["issues"])
            self.assertEqual(len(report["tensors"]), len(tensors))
        run(CONVERT, self.dir / "hf", self.dir / "merged.npz")
        with np.load(self.dir / "merged.npz") as merged:
            self.assert_equal_tensors(dict(merged), tensors)
        # ckpt-diff, ckpt-inspect and the C API see the set as one checkpoint
        out = run(DIFF, self.dir / "hf", self.dir / "merged.npz")
        self.assertIn(f"equal: {len(tensors)} tensors in A (safetensors-sharded), {len(tensors)} in B (npz)", out)
        inspected = json.loads(run(INSPECT, self.dir / "hf", "--json"))
        self.assertEqual(inspected["format"], "safetensors-sharded")
        lib = ctypes.CDLL(LIBCKPT)
        lib.ckpt_tensor_count.restype = ctypes.c_size_t
        reader = ctypes.c_void_p()
        self.assertEqual(lib.ckpt_open(str(self.dir / "hf").encode(), None, ctypes.byref(reader)), 0)
        self.assertEqual(lib.ckpt_tensor_count(reader), len(tensors))
        lib.ckpt_close(reader)
        # and back into one safetensors file, and from it into a set again
        run(CONVERT, self.dir / "hf" / INDEX, self.dir / "one.safetensors")
        self.assert_equal_tensors(load_file(self.dir / "one.safetensors"), tensors)
        run(CONVERT, self.dir / "one.safetensors", self.dir / "again", "--to", "safetensors-sharded",
            "--max-shard-size", "3KB")
        self.assertEqual(sorted(p.name for p in (self.dir / "again").iterdir()),
                         sorted(p.name for p in (self.dir / "hf").iterdir()))
        self.assert_equal_tensors(load_set(self.dir / "again")[0], tensors)

    def test_broken_sets_give_their_codes(self):
        tensors = state_dict()

        def codes(directory):
            report = json.loads(run(VALIDATE, directory, "--json", expect=1))
            return sorted({issue["code"] for issue in report["issues"]})

        def fresh(name):
            split = write_hf_set(self.dir / name, tensors, "3KB")
            return self.dir / name, split

        missing, split = fresh("missing")
        (missing / list(split.filename_to_tensors)[1]).unlink()
        self.assertEqual(codes(missing), ["E821"])

        twice, split = fresh("twice")
        first, second = list(split.filename_to_tensors)[:2]
        extra = split.filename_to_tensors[first][0]
        save_file({**{n: tensors[n] for n in split.filename_to_tensors[second]}, extra: tensors[extra]},
                  twice / second, metadata={"format": "pt"})
        self.assertEqual(codes(twice), ["E823"])

        total, _ = fresh("total")
        index = json.loads((total / INDEX).read_text())
        index["metadata"]["total_size"] += 4
        (total / INDEX).write_text(json.dumps(index, indent=2))
        self.assertEqual(codes(total), ["E824"])

        misplaced, split = fresh("misplaced")
        index = json.loads((misplaced / INDEX).read_text())
        first, second = list(split.filename_to_tensors)[:2]
        index["weight_map"][split.filename_to_tensors[first][0]] = second
        (misplaced / INDEX).write_text(json.dumps(index, indent=2))
        self.assertEqual(codes(misplaced), ["E822"])
        run(CONVERT, misplaced, self.dir / "never.npz", expect=1)
        self.assertFalse((self.dir / "never.npz").exists())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
