"""Interop with real numpy: numpy writes, ckpt-convert converts, numpy reads back.

usage: test_numpy_interop.py CKPT_CONVERT CKPT_VALIDATE   (run by meson test)
"""
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CONVERT, VALIDATE = sys.argv[1], sys.argv[2]
FIXTURES = Path(os.environ["CKPT_FIXTURES"]) / "oneflow-real"
rng = np.random.default_rng(1234)

KINDS = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"]
SHAPES = [(), (0,), (3, 0, 2), (7,), (3, 4), (2, 3, 5)]
LARGE = (512, 1024)  # 2 MiB of float32: several copy chunks for the swapped path


def convert(*args, expect=0):
    done = subprocess.run([CONVERT, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == expect, f"ckpt-convert {args}: rc {done.returncode}, stderr:\n{done.stderr}"
    return done.stderr


def values(kind, shape):
    dtype = np.dtype(kind)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def numpy_written_arrays(directory):
    """Every supported dtype, little and big endian, C and Fortran order, header versions 1/2/3."""
    arrays = {}
    cases = [(k, s) for k in KINDS for s in SHAPES] + [("f4", LARGE), ("f8", (300, 200))]
    for index, (kind, shape) in enumerate(cases):
        base = values(kind, shape)
        for order in ("C", "F"):
            for endian in ("<", ">"):
                array = np.asarray(base, dtype=np.dtype(kind).newbyteorder(endian), order=order)
                version = (index % 3) + 1
                name = f"{kind.replace('?', 'b1')}_{'x'.join(map(str, shape)) or 'scalar'}_{order}_{'le' if endian == '<' else 'be'}_v{version}"
                with open(directory / f"{name}.npy", "wb") as f:
                    np.lib.format.write_array(f, array, version=(version, 0))
                arrays[name] = array
    return arrays


def check_equal(name, expected, actual):
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype.newbyteorder("<"), (name, actual.dtype, expected.dtype)
    assert np.array_equal(actual, expected), name


def test_npy_round_trip(work):
    source = work / "numpy"
    source.mkdir()
    arrays = numpy_written_arrays(source)
    convert(source, work / "snapshot")
    assert (work / "snapshot" / "snapshot_done").is_file()
    # The snapshot holds C-order little-endian bytes of the same values.
    for name, array in arrays.items():
        out = np.fromfile(work / "snapshot" / name / "out", dtype=array.dtype.newbyteorder("<"))
        check_equal(name, array, out.reshape(array.shape))
    convert(work / "snapshot", work / "back", "--to", "npy")
    for name, array in arrays.items():
        path = work / "back" / f"{name}.npy"
        check_equal(name, array, np.load(path))
        check_equal(name, array, np.load(path, mmap_mode="r"))
        raw = path.read_bytes()
        assert raw[6] == 1, (name, "the oldest version that fits is 1.0")
        assert (len(raw) - array.nbytes) % 64 == 0, (name, "data aligned to 64 bytes")
    print(f"npy round trip: {len(arrays)} numpy-written arrays")


def test_npz(work):
    arrays = {"w": values("f4", (4, 5)), "b": values("i8", (5,)), "s": values("c16", ()), "e": values("u1", (0, 2))}
    np.savez(work / "stored.npz", **arrays)
    np.savez_compressed(work / "deflated.npz", **arrays)
    for kind in ("stored", "deflated"):
        convert(work / f"{kind}.npz", work / f"{kind}_snapshot")
        for flags in ([], ["--compress"]):
            target = work / f"{kind}{'_z' if flags else ''}_back.npz"
            convert(work / f"{kind}_snapshot", target, *flags)
            with zipfile.ZipFile(target) as archive:
                assert archive.testzip() is None
                method = archive.getinfo("w.npy").compress_type
                assert method == (zipfile.ZIP_DEFLATED if flags else zipfile.ZIP_STORED)
            with np.load(target) as loaded:
                assert sorted(loaded.files) == sorted(arrays)
                for name, array in arrays.items():
                    check_equal(name, array, loaded[name])
    report = json.loads(subprocess.run([VALIDATE, work / "stored_back.npz", "--json"], capture_output=True,
                                       text=True, check=True).stdout)
    assert report["format"] == "npz" and report["valid"] and len(report["tensors"]) == 4
    report = json.loads(subprocess.run([VALIDATE, work / "numpy", "--json"], capture_output=True, text=True).stdout)
    assert report["format"] == "npy" and report["valid"]
    print("npz: np.savez and np.savez_compressed read; ours opened by np.load and zipfile")


def test_bfloat16_and_refusals(work):
    source = work / "special"
    source.mkdir()
    bits = np.array([0x3F80, 0xC000, 0x7F80], dtype="<u2")  # bfloat16 1.0, -2.0, inf
    np.save(source / "bf.npy", bits.view("V2"))
    stderr = convert(source, work / "bf_refused", expect=1)
    assert "bf.npy" in stderr and "bfloat16" in stderr, stderr
    convert(source, work / "bf_snapshot", "--v2-as-bfloat16")
    assert "data_type: kBFloat16" in (work / "bf_snapshot" / "bf" / "meta").read_text()
    convert(work / "bf_snapshot", work / "bf_back", "--to", "npy")
    back = np.load(work / "bf_back" / "bf.npy")
    assert back.dtype == np.dtype("V2") and back.tobytes() == bits.tobytes()

    cases = {
        "object": lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "structured": lambda p: np.save(p, np.zeros(2, dtype=[("x", "<f4"), ("y", "<i2")])),
        "text": lambda p: np.save(p, np.array(["abc"])),
    }
    for name, write in cases.items():
        directory = work / f"refuse_{name}"
        directory.mkdir()
        write(directory / f"{name}.npy")
        stderr = convert(directory, work / f"refused_{name}", expect=1)
        assert f"{name}.npy" in stderr and f"'{name}'" in stderr, stderr
        assert not (work / f"refused_{name}").exists()
    truncated = work / "truncated"
    truncated.mkdir()
    np.save(truncated / "t.npy", np.arange(100, dtype="<f8"))
    with open(truncated / "t.npy", "r+b") as f:
        f.truncate(500)
    stderr = convert(truncated, work / "t_out", expect=1)
    assert "E505" in stderr and "t.npy" in stderr, stderr
    print("bfloat16 with --v2-as-bfloat16; object, structured, text and truncated arrays refused")


def test_real_checkpoints(work):
    mobilenet = FIXTURES / "models_mobilenetv3_legacy_eager"
    convert(mobilenet, work / "mobilenet_npy", "--to", "npy")
    convert(work / "mobilenet_npy", work / "mobilenet_back")
    names = sorted(p.name for p in mobilenet.iterdir() if p.is_dir())
    assert len(names) == 210
    for name in names:
        for part in ("out", "meta"):
            assert filecmp.cmp(mobilenet / name / part, work / "mobilenet_back" / name / part, shallow=False), name
    sample = np.load(work / "mobilenet_npy" / "classifier.3.bias.npy")
    assert sample.shape == (1000,) and abs(sample[0] - -0.4402038) < 1e-6
    convert(work / "mobilenet_npy", work / "mobilenet_back", expect=2)  # exists: refused
    convert(work / "mobilenet_npy", work / "mobilenet_back", "--force")

    lazy = FIXTURES / "doc_lazy_legacy_mlp_models_1"
    convert(lazy, work / "lazy_npy", "--to", "npy", expect=1)  # no meta: shapes needed
    shapes = {
        "Dense_5-weight": {"dtype": "kFloat", "shape": [512, 784]},
        "Dense_5-bias": {"dtype": "kFloat", "shape": [512]},
        "Dense_6-weight": {"dtype": "kFloat", "shape": [10, 512]},
        "Dense_6-bias": {"dtype": "kFloat", "shape": [10]},
        "System-Train-TrainStep-train_job": {"dtype": "kInt64", "shape": [1]},
    }
    (work / "shapes.json").write_text(json.dumps(shapes))
    convert(lazy, work / "lazy_npy", "--to", "npy", "--shapes", work / "shapes.json")
    step = np.load(work / "lazy_npy" / "System-Train-TrainStep-train_job.npy")
    assert step.dtype == np.int64 and step.tolist() == [30000]
    assert np.load(work / "lazy_npy" / "Dense_5-weight.npy").shape == (512, 784)
    print("mobilenetv3 -> npy -> snapshot byte-identical (210 out + meta); L0 with --shapes")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="ckpt-interop-") as tmp:
        work = Path(tmp)
        test_npy_round_trip(work)
        test_npz(work)
        test_bfloat16_and_refusals(work)
        test_real_checkpoints(work)
    print("all interop checks passed")
