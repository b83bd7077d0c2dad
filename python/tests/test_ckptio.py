"""ckptio judged by its peers: numpy, torch and the safetensors package read
what it writes and write what it reads; values must be equal. Run by
tests/python/run_pytest.py in a venv where ckptio was installed with pip."""
import gc
import os
import resource
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import ckptio

FIXTURES = os.environ["CKPT_FIXTURES"]
SNAPSHOT = os.path.join(FIXTURES, "oneflow-real", "models_mobilenetv3_legacy_eager")


def snapshot_array(name, shape):
    return np.fromfile(os.path.join(SNAPSHOT, name, "out"), dtype="<f4").reshape(shape)


def mapped_file_of(array):
    """The file whose mapping holds the array's first byte, from /proc/self/maps."""
    address = array.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= address < high:
                return fields[5].strip() if len(fields) == 6 else ""
    return None


@pytest.fixture
def tensors():
    rng = np.random.default_rng(7)
    return {
        "embed.weight": rng.standard_normal((64, 16)).astype(np.float32),
        "linear.bias": rng.standard_normal(16).astype(np.float64),
        "steps": np.arange(10, dtype=np.int64),
        "mask": rng.random((3, 5)) > 0.5,
        "half": rng.standard_normal((4, 4)).astype(np.float16),
        "scalar": np.array(3, dtype=np.int32),
    }


def test_oneflow_snapshot_is_a_mapping_of_zero_copy_arrays():
    with ckptio.open(SNAPSHOT) as ckpt:
        assert ckpt.format == "oneflow"
        assert len(ckpt) == 210
        weight = ckpt["classifier.3.weight"]
        assert ckpt.is_mapped("classifier.3.weight")
    assert weight.shape == (1000, 1024) and weight.dtype == np.float32
    assert not weight.flags.writeable and not weight.flags.owndata
    np.testing.assert_array_equal(weight, snapshot_array("classifier.3.weight", (1000, 1024)))
    assert mapped_file_of(weight) == os.path.join(SNAPSHOT, "classifier.3.weight", "out")


def test_layout_names_the_generation_within_the_format(tmp_path, tensors):
    with ckptio.open(SNAPSHOT) as ckpt:
        assert ckpt.layout == "L1/E1"
    state = {"w": torch.arange(6, dtype=torch.float32)}
    torch.save(state, str(tmp_path / "zip.pt"))
    torch.save(state, str(tmp_path / "legacy.pt"), _use_new_zipfile_serialization=False)
    ckptio.save(tensors, tmp_path / "t.safetensors")
    for name, layout in [("zip.pt", "zip"), ("legacy.pt", "legacy"), ("t.safetensors", None)]:
        with ckptio.open(tmp_path / name) as ckpt:
            assert ckpt.layout == layout, name


def test_torch_records_are_mapped_in_place_when_aligned(tmp_path):
    state = {"fc.weight": torch.randn(64, 32), "fc.bias": torch.randn(64).double(),
             "steps": torch.arange(7, dtype=torch.int64), "half": torch.randn(5).half()}
    path = tmp_path / "model.pt"
    torch.save(state, str(path))
    expected = torch.load(str(path))
    with ckptio.open(path) as ckpt:
        arrays = {name: ckpt[name] for name in state}
        for name in state:
            # torch.save stores records uncompressed at 64-byte boundaries.
            assert ckpt.is_mapped(name), name
    for name, array in arrays.items():
        assert mapped_file_of(array) == str(path), name
        assert not array.flags.writeable and array.flags.aligned
        np.testing.assert_array_equal(array, expected[name].numpy())


def test_torch_views_not_in_place_are_copies(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"transposed": base.t(), "base": base}
    path = tmp_path / "views.pt"
    torch.save(state, str(path))
    with ckptio.open(path) as ckpt:
        assert ckpt.is_mapped("base") and not ckpt.is_mapped("transposed")
        np.testing.assert_array_equal(ckpt["transposed"], base.t().numpy())
        np.testing.assert_array_equal(ckpt["base"], base.numpy())


def test_a_misaligned_tensor_is_a_copy(tmp_path):
    # Three uint8 bytes first put the float32 tensor at an odd offset.
    import json
    import struct
    header = json.dumps({"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes([1, 2, 3]) + struct.pack("<2f", 1.5, -2.0))
    expected = safetensors.numpy.load_file(str(path))
    with ckptio.open(path) as ckpt:
        assert ckpt.is_mapped("a") and not ckpt.is_mapped("b")
        assert ckpt["b"].flags.aligned
        for name, values in expected.items():
            np.testing.assert_array_equal(ckpt[name], values)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pt", ""])
def test_save_then_open_every_format(tmp_path, tensors, suffix):
    path = tmp_path / f"model{suffix}"
    ckptio.save(tensors, path)
    with ckptio.open(path) as ckpt:
        assert sorted(ckpt) == sorted(tensors)
        for name, expected in tensors.items():
            assert ckpt[name].dtype == expected.dtype
            np.testing.assert_array_equal(ckpt[name], expected)


def test_safetensors_package_reads_what_ckptio_writes_and_the_reverse(tmp_path, tensors):
    ours = tmp_path / "ours.safetensors"
    ckptio.save(tensors, ours)
    loaded = safetensors.numpy.load_file(str(ours))
    for name, expected in tensors.items():
        np.testing.assert_array_equal(loaded[name], expected)
    theirs = tmp_path / "theirs.safetensors"
    safetensors.numpy.save_file(tensors, str(theirs))
    with ckptio.open(theirs) as ckpt:
        assert ckpt.format == "safetensors"
        for name, expected in tensors.items():
            np.testing.assert_array_equal(ckpt[name], expected)
            if expected.size:
                assert ckpt.is_mapped(name)
        assert mapped_file_of(ckpt["embed.weight"]) == str(theirs)


def test_safetensors_metadata_is_written_and_read(tmp_path, tensors):
    # Without metadata, the default Hugging Face's loaders expect.
    plain = tmp_path / "plain.safetensors"
    ckptio.save(tensors, plain)
    with safetensors.safe_open(str(plain), framework="np") as peer:
        assert peer.metadata() == {"format": "pt"}
    # Given entries go over it, and the safetensors package reads them.
    tagged = tmp_path / "tagged.safetensors"
    ckptio.save(tensors, tagged, metadata={"source": "ckptio", "note": "ünïcode", "format": "np"})
    with safetensors.safe_open(str(tagged), framework="np") as peer:
        assert peer.metadata() == {"source": "ckptio", "note": "ünïcode", "format": "np"}
    # A file the safetensors package wrote: Checkpoint.metadata is its __metadata__.
    theirs = tmp_path / "theirs.safetensors"
    safetensors.numpy.save_file(tensors, str(theirs), metadata={"format": "pt", "step": "1200"})
    with ckptio.open(theirs) as ckpt:
        assert ckpt.metadata == {"format": "pt", "step": "1200"}
    with ckptio.open(tmp_path / "plain.safetensors", include=["steps"]) as ckpt:
        assert ckpt.metadata == {"format": "pt"}  # views keep the file's metadata


def test_metadata_is_empty_or_refused_where_the_format_has_none(tmp_path, tensors):
    npz = tmp_path / "t.npz"
    ckptio.save(tensors, npz)
    with ckptio.open(npz) as ckpt:
        assert ckpt.metadata == {}
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.save(tensors, tmp_path / "u.npz", metadata={"format": "pt"})
    assert error.value.name == "invalid_argument"
    assert not (tmp_path / "u.npz").exists()
    with pytest.raises(TypeError):
        ckptio.save(tensors, tmp_path / "v.safetensors", metadata={"step": 3})


def test_bfloat16_is_an_ml_dtypes_array(tmp_path):
    values = torch.linspace(-3, 3, 12).reshape(3, 4).to(torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"w": values}, str(path))
    with ckptio.open(path) as ckpt:
        array = ckpt["w"]
    assert array.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(array.astype(np.float32), values.float().numpy())
    # And back: torch bf16 tensors are saved as such.
    again = tmp_path / "again.safetensors"
    ckptio.save({"w": values}, again)
    assert torch.equal(safetensors.torch.load_file(str(again))["w"], values)


def test_torch_reads_what_ckptio_writes_and_the_reverse(tmp_path):
    state = {"fc.weight": torch.randn(8, 3), "fc.bias": torch.randn(8), "count": torch.tensor([1, 2, 3])}
    ours = tmp_path / "ours.pt"
    ckptio.save(state, ours)
    loaded = torch.load(str(ours))
    for name, expected in state.items():
        assert torch.equal(loaded[name], expected)
    theirs = tmp_path / "theirs.pt"
    torch.save(state, str(theirs))
    with ckptio.open(theirs) as ckpt:
        assert ckpt.format == "torch"
        for name, expected in state.items():
            np.testing.assert_array_equal(ckpt[name], expected.numpy())


def test_numpy_reads_what_ckptio_writes_and_the_reverse(tmp_path, tensors):
    ours = tmp_path / "ours.npz"
    ckptio.save(tensors, ours)
    with np.load(ours) as loaded:
        for name, expected in tensors.items():
            np.testing.assert_array_equal(loaded[name], expected)
    theirs = tmp_path / "theirs"  # a directory of .npy files, one per tensor
    theirs.mkdir()
    np.save(theirs / "embed.weight.npy", tensors["embed.weight"])
    np.save(theirs / "steps.npy", tensors["steps"])
    with ckptio.open(theirs) as ckpt:
        assert ckpt.format == "npy" and sorted(ckpt) == ["embed.weight", "steps"]
        for name in ckpt:
            np.testing.assert_array_equal(ckpt[name], tensors[name])
            assert ckpt.is_mapped(name)
        assert mapped_file_of(ckpt["steps"]) == str(theirs / "steps.npy")


def test_saving_numpy_does_not_import_torch(tmp_path):
    code = ("import sys, numpy as np, ckptio; ckptio.save({'a': np.ones(3)}, sys.argv[1]); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.npz")], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "False"


def test_get_slice_reads_rows(tmp_path, tensors):
    path = tmp_path / "model.npz"
    ckptio.save(tensors, path)
    expected = tensors["embed.weight"]
    with ckptio.open(path) as ckpt:
        rows = ckpt.get_slice("embed.weight")
        assert rows.shape == (64, 16) and rows.dtype == np.float32
        np.testing.assert_array_equal(rows[10:20], expected[10:20])
        np.testing.assert_array_equal(rows[-3], expected[-3])
        np.testing.assert_array_equal(rows[60:2:-7], expected[60:2:-7])
        np.testing.assert_array_equal(rows[5:9, 2:4], expected[5:9, 2:4])
        assert rows[70:80].shape == (0, 16)
        with pytest.raises(IndexError):
            rows[64]


def test_a_mapped_array_survives_replacement_by_a_crash_safe_save(tmp_path):
    path = tmp_path / "model.safetensors"
    old = np.arange(4096, dtype=np.float32)
    ckptio.save({"w": old}, path)
    with ckptio.open(path) as ckpt:
        mapped = ckpt["w"]
        assert ckpt.is_mapped("w")
    with pytest.raises(ckptio.CkptError) as refused:
        ckptio.save({"w": -old}, path)
    assert refused.value.name == "destination_exists"
    ckptio.save({"w": -old}, path, force=True)
    np.testing.assert_array_equal(mapped, old)  # the old generation stays mapped
    with ckptio.open(path) as ckpt:
        np.testing.assert_array_equal(ckpt["w"], -old)


def test_errors_carry_code_name_file_and_variable(tmp_path):
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.open(missing)
    assert isinstance(error.value.code, int) and error.value.code >= 100
    assert error.value.name != "unknown"
    assert str(missing) in str(error.value)
    with ckptio.open(SNAPSHOT) as ckpt:
        with pytest.raises(KeyError):
            ckpt["no.such.tensor"]
    path = tmp_path / "short.safetensors"
    ckptio.save({"w": np.zeros(100, np.float32)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # the data section is cut short
    with pytest.raises(ckptio.CkptError) as error:
        with ckptio.open(path) as ckpt:
            ckpt["w"]
    assert error.value.file is not None and os.path.basename(error.value.file) == "short.safetensors"
    report = ckptio.validate(path)
    assert report["valid"] is False and report["format"] == "safetensors"
    assert any(issue["severity"] == "error" for issue in report["issues"])


def test_hostile_files_raise_and_never_crash(tmp_path):
    rng = np.random.default_rng(11)
    good = tmp_path / "good.safetensors"
    ckptio.save({"a": np.ones((4, 4), np.float32), "b": np.arange(7, dtype=np.int64)}, good)
    original = bytearray(good.read_bytes())
    hostile = tmp_path / "hostile.safetensors"
    raised = 0
    for trial in range(300):
        data = bytearray(original)
        for _ in range(1 + trial % 4):
            data[rng.integers(0, len(data))] = rng.integers(0, 256)
        if trial % 5 == 0:
            data[:8] = int(rng.integers(0, 2**63)).to_bytes(8, "little")  # a header length of any size
        hostile.write_bytes(bytes(data))
        try:
            with ckptio.open(hostile) as ckpt:
                for name in ckpt:
                    ckpt[name].sum()
        except ckptio.CkptError:
            raised += 1
    assert raised >= 60  # every trial rewriting the header length at least


def test_convert_with_views_and_diff(tmp_path, tensors):
    source = tmp_path / "source.safetensors"
    ckptio.save(tensors, source)
    destination = tmp_path / "converted.npz"
    done = ckptio.convert(source, destination, dtype="kFloat16", include=["embed.*", "linear.*"],
                          rename=["embed.=model.embed."])
    assert done["variables"] == 2
    with ckptio.open(destination) as ckpt:
        assert sorted(ckpt) == ["linear.bias", "model.embed.weight"]
        np.testing.assert_array_equal(ckpt["model.embed.weight"], tensors["embed.weight"].astype(np.float16))
    assert ckptio.diff(source, source)["equal"]
    copy = tmp_path / "copy.pt"
    ckptio.convert(source, copy)
    assert ckptio.diff(source, copy) == {"equal": True, "only_in_a": [], "only_in_b": [], "changed": {}}
    changed = ckptio.diff(source, destination)
    assert not changed["equal"] and "steps" in changed["only_in_a"] and "model.embed.weight" in changed["only_in_b"]
    assert changed["changed"] == {"linear.bias": "dtype float64 != float16"}


def test_module_runs_the_tools(tmp_path, tensors):
    path = tmp_path / "m.safetensors"
    ckptio.save(tensors, path)
    out = subprocess.run([sys.executable, "-m", "ckptio", "validate", "--json", str(path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    import json

    report = json.loads(out.stdout)
    assert report["valid"] and report["format"] == "safetensors" and len(report["tensors"]) == len(tensors)
    out = subprocess.run([sys.executable, "-m", "ckptio", "inspect", SNAPSHOT], capture_output=True, text=True)
    assert out.returncode == 0 and "oneflow, 210 tensors" in out.stdout
    assert "classifier.3.weight float32 [1000, 1024]" in out.stdout
    # The tools' exit policy: 1 for an invalid checkpoint, 2 for a missing path (E102).
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:-1])
    out = subprocess.run([sys.executable, "-m", "ckptio", "validate", str(broken)], capture_output=True, text=True)
    assert out.returncode == 1, (out.stdout, out.stderr)
    out = subprocess.run([sys.executable, "-m", "ckptio", "validate", str(tmp_path / "absent")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "E102" in out.stdout, (out.stdout, out.stderr)


def test_memory_stays_bounded_over_10000_open_close_cycles(tmp_path):
    path = tmp_path / "m.safetensors"
    ckptio.save({f"t{i}": np.full(256, i, np.float32) for i in range(8)}, path)

    def cycles(count):
        for _ in range(count):
            with ckptio.open(path) as ckpt:
                assert ckpt["t3"][0] == 3

    def rss_kib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() // 1024

    cycles(1000)
    gc.collect()
    before = rss_kib()
    cycles(10000)
    gc.collect()
    growth = rss_kib() - before
    # A leak of even one 1 KiB tensor copy or one mapping per cycle would
    # add ~10 MiB; allocator noise stays far below 2 MiB.
    assert growth < 2048, f"RSS grew by {growth} KiB over 10000 cycles"
