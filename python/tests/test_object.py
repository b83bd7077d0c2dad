"""Checkpoint.object (the pickled object as Python values), the pickle policy
of open() and convert(), and convert()'s skip_unsupported and strict, judged
by Debian's torch 1.13 and numpy: the files are theirs, the values theirs."""
import argparse
import os
import zipfile

import numpy as np
import pytest
import torch

import ckptio


def training_file(path, **save_options):
    """What a training script saves: an epoch, its argparse arguments and a model."""
    weights = torch.arange(6.0)
    torch.save({"epoch": 3, "args": argparse.Namespace(lr=0.1), "model": {"w": weights}}, path, **save_options)
    return weights.numpy()


def mixed_npz(path):
    # As tests/interop/test_npz_unsupported.py writes it: a '|S3' __version__ (MATLAB exports) beside real arrays.
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savez(path, __version__=np.array(b"1.0", dtype="S3"), weight=weight)
    return weight


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_object_of_a_training_file_with_an_allowed_global(tmp_path, legacy):
    path = tmp_path / "train.pt"
    weights = training_file(path, **({"_use_new_zipfile_serialization": False} if legacy else {}))
    with ckptio.open(path, allow_global=["argparse.Namespace"]) as ckpt:
        assert ckpt.layout == ("legacy" if legacy else "zip")
        obj = ckpt.object
        assert list(obj) == ["epoch", "args", "model"]
        assert obj["epoch"] == 3 and type(obj["epoch"]) is int
        args = obj["args"]
        assert isinstance(args, ckptio.Stub)
        assert (args.module, args.name, args.args, args.state, args.items) == ("argparse", "Namespace", (), {"lr": 0.1},
                                                                             None)
        assert repr(args) == "Stub(argparse.Namespace, lr=0.1)"
        np.testing.assert_array_equal(obj["model"]["w"], weights)
        assert obj["model"]["w"].dtype == np.float32
        # The same array ckpt[name] gives: read-only, a map of the file's record.
        np.testing.assert_array_equal(obj["model"]["w"], ckpt["model.w"])
        assert not obj["model"]["w"].flags.writeable
        assert ckpt.object is obj  # built once


def test_default_policy_refuses_and_stub_unknown_accepts(tmp_path):
    path = tmp_path / "train.pt"
    weights = training_file(path)
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.open(path)
    assert error.value.code == 704 and error.value.name == "pickle_forbidden_global"
    assert "argparse" in str(error.value)
    with ckptio.open(path, stub_unknown=True) as ckpt:
        assert ckpt.object["args"] == ckptio.Stub("argparse", "Namespace", (), {"lr": 0.1})
        np.testing.assert_array_equal(ckpt.object["model"]["w"], weights)


def test_unknown_keywords_and_a_bare_string_are_type_errors(tmp_path):
    path = tmp_path / "train.pt"
    training_file(path)
    with pytest.raises(TypeError, match="allow_globals"):
        ckptio.open(path, allow_globals=["argparse.Namespace"])
    with pytest.raises(TypeError, match="allow_global"):
        ckptio.open(path, allow_global="argparse.Namespace")
    with pytest.raises(TypeError, match="skip_unsuported"):
        ckptio.convert(path, tmp_path / "x.npz", skip_unsuported=True)


def test_python_values_numpy_values_and_sharing(tmp_path):
    path = tmp_path / "values.pt"
    shared = [1, 2]
    numbers = np.arange(5, dtype=np.int16)
    torch.save({"none": None, "flag": True, "ratio": 0.25, "name": "run\u00e9", "raw": b"\x00\xff", "pair": (1, "a"),
                "tags": {"x", "y"}, "a": shared, "b": shared, "best": np.float64(0.5), "count": np.int32(7),
                "numbers": numbers, "kind": np.dtype("<f4"), "layers": [torch.ones(2), torch.zeros(3)]}, path)
    numpy_globals = ["numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar"]
    with ckptio.open(path, allow_global=numpy_globals) as ckpt:
        obj = ckpt.object
        assert {k: obj[k] for k in ("none", "flag", "ratio", "name", "raw", "pair", "tags")} == {
            "none": None, "flag": True, "ratio": 0.25, "name": "run\u00e9", "raw": b"\x00\xff", "pair": (1, "a"),
            "tags": {"x", "y"}}
        assert type(obj["flag"]) is bool and type(obj["pair"]) is tuple and type(obj["tags"]) is set
        assert obj["a"] == [1, 2] and obj["a"] is obj["b"]  # one list in the pickle, one list here
        assert type(obj["best"]) is np.float64 and obj["best"] == 0.5
        assert type(obj["count"]) is np.int32 and obj["count"] == 7
        assert isinstance(obj["numbers"], np.ndarray) and obj["numbers"].dtype == np.int16
        np.testing.assert_array_equal(obj["numbers"], numbers)
        assert obj["kind"] == np.dtype("<f4")
        np.testing.assert_array_equal(obj["layers"][0], np.ones(2, np.float32))
        np.testing.assert_array_equal(obj["layers"][1], np.zeros(3, np.float32))


def test_state_dict_is_an_ordered_dict_with_its_metadata(tmp_path):
    path = tmp_path / "model.pt"
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    torch.save(model.state_dict(), path)
    with ckptio.open(path) as ckpt:
        obj = ckpt.object
        assert type(obj).__name__ == "OrderedDict" and list(obj) == ["0.weight", "0.bias"]
        assert obj._metadata == model.state_dict()._metadata
        np.testing.assert_array_equal(obj["0.weight"], model[0].weight.detach().numpy())


def test_deep_nesting_within_the_readers_cap(tmp_path):
    path = tmp_path / "deep.pt"
    value = 0
    for _ in range(200):
        value = [value]
    torch.save({"deep": value}, path)
    with ckptio.open(path) as ckpt:
        got = ckpt.object["deep"]
        for _ in range(200):
            assert isinstance(got, list) and len(got) == 1
            got = got[0]
        assert got == 0


def test_torchscript_modules_are_stubs(tmp_path):
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.factor = 2.5

        def forward(self, x):
            return self.lin(x) * self.factor

    module = Scale()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    with ckptio.open(path) as ckpt:
        assert ckpt.layout == "torchscript"
        obj = ckpt.object
        assert isinstance(obj, ckptio.Stub) and obj.module.startswith("__torch__")
        assert obj.state["factor"] == 2.5
        lin = obj.state["lin"]
        assert isinstance(lin, ckptio.Stub)
        np.testing.assert_array_equal(lin.state["weight"], module.lin.weight.detach().numpy())
        np.testing.assert_array_equal(lin.state["weight"], ckpt["lin.weight"])


@pytest.mark.parametrize("to", ["oneflow-pickle", "oneflow-single-file"])
def test_oneflow_pickle_formats_written_by_the_project_keep_the_epoch(tmp_path, to):
    source = tmp_path / "train.pt"
    torch.save({"epoch": 7, "model": {"w": torch.arange(4.0)}}, source)
    target = tmp_path / ("p1" if to == "oneflow-pickle" else "s1.pkl")
    done = ckptio.convert(source, target, to=to, strict=True)
    assert done["dropped"] == [] and done["variables"] == 1
    with ckptio.open(target) as ckpt:
        assert ckpt.format == to
        obj = ckpt.object
        assert obj["epoch"] == 7
        np.testing.assert_array_equal(obj["model"]["w"], np.arange(4, dtype=np.float32))


def torch_archive(path, data_pkl):
    """A torch.save zip around a hand-made data.pkl (no tensors)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


def test_what_python_cannot_hold_raises(tmp_path):
    # set([([1],)]): a set whose member holds a list, which Python cannot hash (pickle.load fails on it too).
    path = tmp_path / "unhashable.pt"
    torch_archive(path, b"\x80\x02c__builtin__\nset\n]]K\x01a\x85a\x85R.")
    with ckptio.open(path) as ckpt:
        with pytest.raises(ckptio.CkptError) as error:
            ckpt.object
    assert error.value.code == 707 and "unhashable" in str(error.value)
    # torch hashes tensors, so a set may hold one; the reader names no tensor there.
    path = tmp_path / "tensor_in_set.pt"
    torch.save({"s": {torch.ones(2)}}, path)
    with ckptio.open(path) as ckpt:
        with pytest.raises(ckptio.CkptError) as error:
            ckpt.object
    assert error.value.code == 707 and "no name" in str(error.value)
    ckpt = ckptio.open(tmp_path / "unhashable.pt")
    ckpt.close()
    with pytest.raises(ckptio.CkptError, match="closed"):
        ckpt.object


def test_flat_formats_have_no_object(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.ones(2, np.float32))
    with ckptio.open(path) as ckpt:
        assert ckpt.object is None


def test_views_leave_the_object_as_the_file_holds_it(tmp_path):
    path = tmp_path / "train.pt"
    weights = training_file(path)
    with ckptio.open(path, allow_global=["argparse.Namespace"], dtype="kDouble", rename=["model.=net."]) as ckpt:
        assert list(ckpt) == ["net.w"] and ckpt["net.w"].dtype == np.float64
        assert ckpt.object["model"]["w"].dtype == np.float32
        np.testing.assert_array_equal(ckpt.object["model"]["w"], weights)


def test_convert_skip_unsupported(tmp_path):
    source, target = tmp_path / "mixed.npz", tmp_path / "out.npz"
    weight = mixed_npz(source)
    with ckptio.open(source) as ckpt:
        assert list(ckpt) == ["weight"]
        assert [entry[:2] for entry in ckpt.unsupported] == [("__version__", "|S3")]
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.convert(source, target)
    assert error.value.code == 540 and "__version__" in str(error.value)
    assert not target.exists()
    with pytest.warns(UserWarning, match="__version__"):
        done = ckptio.convert(source, target, skip_unsupported=True)
    assert done["skipped"] == ["__version__"] and done["variables"] == 1
    with np.load(target) as converted:
        assert converted.files == ["weight"]
        np.testing.assert_array_equal(converted["weight"], weight)


def test_convert_strict_and_policy(tmp_path):
    source = tmp_path / "train.pt"
    weights = training_file(source)
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.convert(source, tmp_path / "refused.npz")
    assert error.value.code == 704
    allowed = ["argparse.Namespace"]
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.convert(source, tmp_path / "strict.npz", allow_global=allowed, strict=True)
    assert error.value.code == 150 and "epoch" in str(error.value)
    assert not (tmp_path / "strict.npz").exists()
    with pytest.warns(UserWarning, match="epoch"):
        done = ckptio.convert(source, tmp_path / "flat.npz", allow_global=allowed)
    assert sorted(done["dropped"]) == ["args", "epoch"]
    with np.load(tmp_path / "flat.npz") as flat:
        np.testing.assert_array_equal(flat["model.w"], weights)
    # stub_unknown converts too; a torch destination keeps the object, and torch reads it back.
    ckptio.convert(source, tmp_path / "copy.pt", stub_unknown=True, strict=True)
    copy = torch.load(tmp_path / "copy.pt")
    assert copy["epoch"] == 3 and copy["args"].lr == 0.1
    assert torch.equal(copy["model"]["w"], torch.from_numpy(weights))


def test_the_module_takes_the_policy_and_skip_flags(tmp_path):
    source = tmp_path / "mixed.npz"
    mixed_npz(source)
    from ckptio.__main__ import main

    assert main(["convert", str(source), str(tmp_path / "a.npz")]) == 2
    with pytest.warns(UserWarning):
        assert main(["convert", "--skip-unsupported", str(source), str(tmp_path / "b.npz")]) == 0
    pt = tmp_path / "train.pt"
    training_file(pt)
    assert main(["inspect", str(pt)]) == 2
    assert main(["inspect", "--allow-global", "argparse.Namespace", str(pt)]) == 0
    assert os.path.exists(tmp_path / "b.npz")


def test_validate_and_diff_take_the_policy(tmp_path):
    path = tmp_path / "train.pt"
    training_file(path)
    refused = ckptio.validate(path)
    assert refused["format"] == "torch" and refused["valid"] is False
    assert [(issue["code"], issue["severity"]) for issue in refused["issues"]] == [("E704", "error")]
    assert "argparse.Namespace" in refused["issues"][0]["message"]
    for policy in ({"allow_global": ["argparse.Namespace"]}, {"stub_unknown": True}):
        report = ckptio.validate(path, **policy)
        assert report["valid"] is True and report["issues"] == []
        assert [(t["name"], t["dtype"], t["shape"]) for t in report["tensors"]] == [("model.w", "kFloat", [6])]
    assert ckptio.validate(path, "torch", stub_unknown=True)["valid"] is True
    with pytest.raises(TypeError, match="allow_global"):
        ckptio.validate(path, allow_global="argparse.Namespace")
    with pytest.raises(TypeError, match="allow_globals"):
        ckptio.validate(path, allow_globals=["argparse.Namespace"])

    copy = tmp_path / "copy.pt"
    training_file(copy)
    with pytest.raises(ckptio.CkptError) as error:
        ckptio.diff(path, copy)
    assert error.value.code == 704
    assert ckptio.diff(path, copy, allow_global=["argparse.Namespace"])["equal"] is True
    from ckptio.__main__ import main

    assert main(["validate", str(path)]) == 1
    assert main(["validate", "--allow-global", "argparse.Namespace", str(path)]) == 0
    assert main(["diff", "--stub-unknown", str(path), str(copy)]) == 0


def test_arrays_of_a_oneflow_pickle_directory_are_tensors_under_the_policy(tmp_path):
    source = tmp_path / "rng.pt"
    np.random.seed(5)
    state = np.random.get_state()
    torch.save({"numpy": state, "w": torch.arange(3.0)}, source)
    numpy_globals = ["numpy.core.multiarray._reconstruct"]
    p1 = tmp_path / "rng_p1"
    ckptio.convert(source, p1, to="oneflow-pickle", allow_global=numpy_globals)
    with ckptio.open(p1) as plain:
        assert (plain.format, plain.layout, list(plain)) == ("oneflow-pickle", "P1", ["w"])
        np.testing.assert_array_equal(plain.object["numpy"][1], state[1])  # a value of the object
    with ckptio.open(p1, allow_global=numpy_globals) as ckpt:
        assert list(ckpt) == ["numpy.1", "w"]
        assert ckpt["numpy.1"].dtype == np.uint32
        np.testing.assert_array_equal(ckpt["numpy.1"], state[1])
        np.testing.assert_array_equal(ckpt.object["numpy"][1], state[1])
        assert ckpt.object["numpy"][0] == "MT19937"
    report = ckptio.validate(p1, allow_global=numpy_globals)
    assert report["valid"] and [t["name"] for t in report["tensors"]] == ["numpy.1", "w"]
