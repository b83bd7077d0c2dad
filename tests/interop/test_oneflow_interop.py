"""The real OneFlow 0.9.0 proves the OneFlow interop, both ways, values compared exactly.

OneFlow writes (P1 state dicts of every dtype, the tutorial's {model, optimizer, epoch}, a whole
nn.Module, global tensors from 2 ranks, a bfloat16 tensor, numpy arrays beside a tensor) -> ckpt-convert reads them and writes
npz, safetensors and torch files, which numpy, a safetensors parser and torch compare with the
values OneFlow itself exported. We write (E1 from ckpt-train, E1 and P1 of every dtype, the tutorial
carried P1 -> torch -> P1, the whole module as P1, OneFlow 1.0's emulated single file as P1) -> flow.load
reads them and compares. (OneFlow 0.9 cannot read single files; test_oneflow_single_file checks them.)

Usage: test_oneflow_interop.py CKPT_CONVERT CKPT_TRAIN CKPT_VALIDATE CKPT_INSPECT; CKPT_SOURCE_ROOT set.
OneFlow comes from scripts/oneflow-venv.sh; without it the test is skipped (exit 77), unless
CKPT_REQUIRE_ONEFLOW=1 (CI), which makes that a failure.
"""
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

from dotted_names import assert_arrays_equal, flatten

CONVERT, TRAIN, VALIDATE, INSPECT = sys.argv[1:5]
SOURCE_ROOT = os.environ["CKPT_SOURCE_ROOT"]
SIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oneflow_side.py")
SKIP = 77


def oneflow_python():
    found = subprocess.run([os.path.join(SOURCE_ROOT, "scripts", "oneflow-venv.sh"), "--installed-only"],
                           capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip()
    print(found.stderr.strip(), file=sys.stderr)
    if os.environ.get("CKPT_REQUIRE_ONEFLOW") == "1":
        print("CKPT_REQUIRE_ONEFLOW=1: the OneFlow interop suite may not be skipped", file=sys.stderr)
        sys.exit(1)
    sys.exit(SKIP)


def run(*argv, cwd=None):
    done = subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


SAFETENSORS_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I32": np.int32, "I64": np.int64,
                      "F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": np.uint16}


def read_safetensors(path):
    """The safetensors layout parsed here: 8-byte header length, JSON header, data."""
    with open(path, "rb") as f:
        blob = f.read()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    header.pop("__metadata__", None)
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(blob[8 + length + begin:8 + length + end], dtype=SAFETENSORS_DTYPES[entry["dtype"]])
        array = array.reshape(entry["shape"])
        out[name] = bf16_to_f32(array) if entry["dtype"] == "BF16" else array
    return out


def read_npz(path):
    out = {}
    for name, array in np.load(path).items():
        out[name] = bf16_to_f32(array.view(np.uint16)) if array.dtype.kind == "V" else array
    return out


def torch_load(path):
    """weights_only where torch 1.13 can: its weights_only unpickler has no BINFLOAT, so objects with floats
    (the optimizer's lr) are loaded with the full unpickler; the file is our own output."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported operand 71" not in str(error):  # 71: BINFLOAT
            raise
        return torch.load(path, weights_only=False)


def read_torch(path):
    tensors = flatten(torch_load(path), lambda value: isinstance(value, torch.Tensor))
    return {name: (t.float() if t.dtype == torch.bfloat16 else t).numpy() for name, t in tensors.items()}


def check_oneflow_writes(work, case):
    """OneFlow's save of `case` -> npz, safetensors and torch, each equal to OneFlow's own values."""
    source = os.path.join(work, case)
    expected = dict(np.load(source + ".npz"))
    for suffix, reader in ((".npz", read_npz), (".safetensors", read_safetensors), (".pt", read_torch)):
        target = os.path.join(work, "converted", case + suffix)
        run(CONVERT, source, target)
        assert_arrays_equal(reader(target), expected, f"{case} -> {suffix}")
    print(f"OneFlow {case}: npz, safetensors and torch equal OneFlow's values", flush=True)


NUMPY_POLICY = ("--allow-global", "numpy.core.multiarray._reconstruct")


def check_arrays_as_tensors(source):
    """OneFlow's P1 with numpy arrays: values by default (OneFlow's allow-list reads them), tensors
    named by object path under the policy, converted with OneFlow's values."""
    plain = json.loads(run(INSPECT, "--json", source).stdout)
    assert [t["name"] for t in plain["tensors"]] == ["w"], plain["tensors"]
    assert [o["path"] for o in plain["objects"]] == ["rng", "state", "epoch"], plain["objects"]
    for tool in (INSPECT, VALIDATE):
        doc = json.loads(run(tool, "--json", source, *NUMPY_POLICY).stdout)
        found = [(t["name"], t["dtype"], t["format_dtype"], t["shape"]) for t in doc["tensors"]]
        assert found == [("rng", "kInt64", "<i8", [4]), ("state.1", "kUInt32", "<u4", [624]),
                         ("w", "kFloat", None, [2])], found
    target = os.path.join(os.path.dirname(source), "converted", "arrays.npz")
    run(CONVERT, "-q", source, target, *NUMPY_POLICY)
    assert_arrays_equal(read_npz(target), dict(np.load(source + ".npz")), "arrays -> .npz")
    print("OneFlow arrays: numpy arrays of P1 are tensors under the policy, npz equal OneFlow's values", flush=True)


def numpy_every_dtype(path):
    values = np.arange(-3, 9).reshape(3, 4)
    np.savez(path, f16=(values / 8).astype(np.float16), f32=np.array([1.5, -0.1, 3e38, 1e-40], np.float32),
             f64=np.array([0.1, -2.5e300, 1e-310]), i8=np.array([-128, 0, 127], np.int8),
             i32=(values * 1000003).astype(np.int32), i64=np.array([-(2**62), 2**40 + 3], np.int64),
             u8=np.array([0, 200, 255], np.uint8), bool=np.array([True, False, True]),
             scalar=np.array(42, np.int64), empty=np.zeros((0, 3), np.float32),
             transposed=np.asfortranarray(values.astype(np.float32).T))


def main():
    python = oneflow_python()
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # ckpt-train on shared cores
    work = tempfile.mkdtemp(prefix="ckpt-oneflow-interop-")
    try:
        os.mkdir(os.path.join(work, "converted"))
        run(python, SIDE, "write", work)
        # Two CPU ranks; the launcher runs them from the working directory.
        run(python, "-m", "oneflow.distributed.launch", "--nproc_per_node", "2", SIDE, "global", work, cwd=work)

        # OneFlow writes -> we read.
        for case in ("every_dtype", "tutorial", "module", "global", "bf16"):
            check_oneflow_writes(work, case)
        back = read_torch(os.path.join(work, "converted", "tutorial.pt"))
        assert "model.l1.weight" in back and "optimizer.state.0.momentum_buf" in back, sorted(back)
        with open(os.path.join(work, "tutorial.json")) as f:
            tutorial = json.load(f)
        loaded = torch_load(os.path.join(work, "converted", "tutorial.pt"))
        assert loaded["epoch"] == tutorial["epoch"], loaded["epoch"]
        assert json.loads(json.dumps(loaded["optimizer"]["param_groups"])) == tutorial["param_groups"]
        modules = json.loads(run(INSPECT, "--json", os.path.join(work, "module")).stdout)["modules"]
        assert modules == [{"name": "", "class": "__main__.Net"},
                           {"name": "flatten", "class": "oneflow.nn.modules.flatten.Flatten"},
                           {"name": "l1", "class": "oneflow.nn.modules.linear.Linear"},
                           {"name": "l2", "class": "oneflow.nn.modules.linear.Linear"},
                           {"name": "l3", "class": "oneflow.nn.modules.linear.Linear"}], modules
        check_arrays_as_tensors(os.path.join(work, "arrays"))
        report = run(VALIDATE, os.path.join(work, "bf16")).stdout
        assert "E480" in report and "E401" not in report, report
        # The warning names the tensor as the pickle does ("w"), not its directory.
        issues = json.loads(run(VALIDATE, "--json", os.path.join(work, "bf16")).stdout)["issues"]
        assert [(i["code"], i["variable"]) for i in issues] == [("E480", "w")], issues

        # We write -> flow.load reads.
        plan = []
        trained = os.path.join(work, "trained")
        run(TRAIN, "--device", "cpu", "--train-samples", "600", "--epochs", "1", "--out", trained)
        run(CONVERT, trained, trained + ".npz")
        plan.append([trained, trained + ".npz"])
        numpy_every_dtype(os.path.join(work, "dtypes.npz"))
        for fmt in ("oneflow", "oneflow-pickle"):
            target = os.path.join(work, "dtypes_" + fmt)
            run(CONVERT, os.path.join(work, "dtypes.npz"), target, "--to", fmt)
            plan.append([target, os.path.join(work, "dtypes.npz")])
        # A whole module converts as its state_dict; OneFlow 1.0's single file (emulated) as its tensors.
        module_back = os.path.join(work, "module_back")
        run(CONVERT, os.path.join(work, "module"), module_back, "--to", "oneflow-pickle")
        plan.append([module_back, os.path.join(work, "module.npz")])
        single_file = os.path.join(SOURCE_ROOT, "tests", "data", "oneflow-emulated", "C_single_file_v1.0_proto4")
        np.savez(os.path.join(work, "linear.npz"), weight=np.array([[0.0, 0.1], [0.2, 0.3], [0.4, 0.5]], np.float32),
                 bias=np.array([0.5, -1.0, 2.0], np.float32))
        run(CONVERT, single_file, os.path.join(work, "single_file_back"), "--to", "oneflow-pickle")
        plan.append([os.path.join(work, "single_file_back"), os.path.join(work, "linear.npz")])
        # P1 arrays as tensors -> P1: flow.load gives the same object, each array a numpy array again.
        arrays_back = os.path.join(work, "arrays_back")
        run(CONVERT, os.path.join(work, "arrays"), arrays_back, "--to", "oneflow-pickle", *NUMPY_POLICY)
        plan.append([arrays_back, os.path.join(work, "arrays")])
        back = os.path.join(work, "tutorial_back")
        run(CONVERT, os.path.join(work, "converted", "tutorial.pt"), back, "--to", "oneflow-pickle")
        plan.append([back, os.path.join(work, "tutorial")])
        with open(os.path.join(work, "plan.json"), "w") as f:
            json.dump(plan, f)
        print(run(python, SIDE, "read", os.path.join(work, "plan.json")).stdout, end="")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
