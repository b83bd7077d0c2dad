"""safetensors __metadata__, judged by the safetensors package (from pip):
what a file carries is kept by ckpt-convert on safetensors -> safetensors
(single file and sharded, both ways), shown by ckpt-inspect (text and JSON),
set with --metadata KEY=VALUE, and written as {"format": "pt"} when the source
gives none; a format without metadata refuses --metadata.

The peer lives in the venv scripts/make-hf-venv.sh creates; without it the
test is skipped (exit 77).

usage: test_safetensors_metadata.py CKPT_CONVERT CKPT_INSPECT   (run by meson test)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from hf_venv import run_in_hf_venv  # noqa: E402

run_in_hf_venv("import safetensors.numpy, numpy")

import numpy as np  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

CONVERT, INSPECT = sys.argv[1:3]
PEFT_LIKE = {"format": "pt", "base_model": "some/model", "note": "naïve: \"quoted\""}


def run(*args, expect=0):
    done = subprocess.run([*map(str, args)], capture_output=True, text=True)
    assert done.returncode == expect, f"{args}: rc {done.returncode}, stderr:\n{done.stderr}"
    return done


def metadata_of(path):
    with safe_open(str(path), framework="np") as peer:
        return peer.metadata()


class SafetensorsMetadata(unittest.TestCase):
    def setUp(self):
        self.temp = tempfile.TemporaryDirectory()
        self.dir = Path(self.temp.name)
        rng = np.random.default_rng(3)
        self.tensors = {"a.weight": rng.standard_normal((32, 16)).astype(np.float32),
                        "b.bias": rng.standard_normal(16).astype(np.float16),
                        "c.steps": np.arange(5, dtype=np.int64)}

    def tearDown(self):
        self.temp.cleanup()

    def test_kept_from_safetensors_to_safetensors(self):
        source = self.dir / "peft.safetensors"
        save_file(self.tensors, str(source), metadata=PEFT_LIKE)
        copy = self.dir / "copy.safetensors"
        run(CONVERT, "--quiet", source, copy)
        self.assertEqual(metadata_of(copy), PEFT_LIKE)
        # Views (a cast, a filter, a rename) keep it too.
        cast = self.dir / "cast.safetensors"
        run(CONVERT, "--quiet", "--dtype", "bf16", "--exclude", "c.*", "--rename", "a.=x.", source, cast)
        self.assertEqual(metadata_of(cast), PEFT_LIKE)
        with safe_open(str(cast), framework="np") as peer:
            self.assertEqual(sorted(peer.keys()), ["b.bias", "x.weight"])

    def test_kept_through_a_sharded_set_and_back(self):
        source = self.dir / "tagged.safetensors"
        save_file(self.tensors, str(source), metadata={"format": "pt", "step": "7"})
        sharded = self.dir / "sharded"
        run(CONVERT, "--quiet", "--to", "safetensors-sharded", "--max-shard-size", "1KB", source, sharded)
        shards = sorted(sharded.glob("*.safetensors"))
        self.assertGreater(len(shards), 1)
        for shard in shards:  # every shard carries it, as save_torch_state_dict writes it
            self.assertEqual(metadata_of(shard), {"format": "pt", "step": "7"})
        back = self.dir / "back.safetensors"
        run(CONVERT, "--quiet", sharded, back)
        self.assertEqual(metadata_of(back), {"format": "pt", "step": "7"})

    def test_default_and_set_on_the_command_line(self):
        npz = self.dir / "plain.npz"
        np.savez(npz, **self.tensors)
        plain = self.dir / "plain.safetensors"
        run(CONVERT, "--quiet", npz, plain)
        self.assertEqual(metadata_of(plain), {"format": "pt"})
        tagged = self.dir / "tagged.safetensors"
        run(CONVERT, "--quiet", "--metadata", "license=mit", "--metadata", "expr=a=b", "--metadata", "empty=", npz,
            tagged)
        self.assertEqual(metadata_of(tagged), {"format": "pt", "license": "mit", "expr": "a=b", "empty": ""})
        # Over a source's metadata: a key given replaces the source's, the others stay.
        source = self.dir / "peft.safetensors"
        save_file(self.tensors, str(source), metadata=PEFT_LIKE)
        retagged = self.dir / "retagged.safetensors"
        run(CONVERT, "--quiet", "--metadata", "base_model=other/model", source, retagged)
        self.assertEqual(metadata_of(retagged), {**PEFT_LIKE, "base_model": "other/model"})
        np.testing.assert_array_equal(load_file(str(retagged))["a.weight"], self.tensors["a.weight"])

    def test_refused_where_it_has_no_place(self):
        source = self.dir / "s.safetensors"
        save_file(self.tensors, str(source))
        done = run(CONVERT, "--metadata", "k=v", source, self.dir / "out.npz", expect=2)
        self.assertIn("no place for metadata", done.stderr)
        self.assertFalse((self.dir / "out.npz").exists())
        done = run(CONVERT, "--metadata", "novalue", source, self.dir / "out.safetensors", expect=2)
        self.assertIn("KEY=VALUE", done.stderr)
        # To a flat format without metadata, it is dropped like any format's extras.
        run(CONVERT, "--quiet", source, self.dir / "fine.npz")

    def test_shown_by_inspect(self):
        source = self.dir / "peft.safetensors"
        save_file(self.tensors, str(source), metadata=PEFT_LIKE)
        text = run(INSPECT, source).stdout
        self.assertIn("metadata:\n  base_model: some/model\n  format: pt\n  note: naïve: \"quoted\"\n", text)
        document = json.loads(run(INSPECT, "--json", source).stdout)
        self.assertEqual(document["metadata"], PEFT_LIKE)
        bare = self.dir / "bare.safetensors"
        save_file(self.tensors, str(bare))
        self.assertNotIn("metadata", json.loads(run(INSPECT, "--json", bare).stdout))
        self.assertNotIn("metadata:", run(INSPECT, bare).stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
