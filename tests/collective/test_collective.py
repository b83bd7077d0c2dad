"""Multi-rank save and load on MPI (spec/collective.md), run under mpirun.

usage: test_collective.py CASE COLLECTIVE_RANKS CKPT_CONVERT CKPT_VALIDATE EXAMPLE CAPI_TEST
CASE: split | whole | fail | kill | example | capi. Skipped (exit 77) when the build has no MPI
(COLLECTIVE_RANKS is "none") or mpirun is missing; "whole" also without the
venv of scripts/make-hf-venv.sh (safetensors from pip).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE, RANKS_EXE, CONVERT, VALIDATE, EXAMPLE, CAPI_TEST = sys.argv[1:7]
MPIRUN = shutil.which("mpirun")
if RANKS_EXE == "none" or MPIRUN is None:
    print("skipped: this build has no MPI (meson -Dmpi) or mpirun is missing")
    sys.exit(77)
# Open MPI's plugins leak at MPI_Finalize from modules already unloaded,
# which LeakSanitizer can neither attribute nor suppress: under the
# sanitizers the runs under mpirun check memory errors, not leaks (the
# library's leaks are checked by the tests without MPI: tensor_chunks,
# safetensors_sharded).
MPI_ENV = dict(os.environ)
if "ASAN_OPTIONS" in MPI_ENV:
    MPI_ENV["ASAN_OPTIONS"] += ":detect_leaks=0"  # the last setting wins
VENV_PYTHON = Path(os.environ.get("CKPT_HF_VENV", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                  / "ckpt" / "hf-venv")) / "bin" / "python"


def mpirun(ranks, *args, expect=0):
    command = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), RANKS_EXE, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=MPI_ENV)
    if result.returncode != expect:
        sys.exit(f"{' '.join(map(str, command))}: exit {result.returncode}, expected {expect}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def run(*args, expect=0):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=240, env=MPI_ENV)
    if result.returncode != expect:
        sys.exit(f"{' '.join(map(str, args))}: exit {result.returncode}, expected {expect}\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def case_split(work):
    saved = work / "saved"
    mpirun(4, "save", saved, "split")
    index = json.loads((saved / "model.safetensors.index.json").read_text())
    chunked = index["chunked_tensors"]
    assert sorted(chunked) == ["blocks", "cols", "cube", "rows"], sorted(chunked)
    assert [c["offset"] for c in chunked["cols"]["chunks"]] == [[0, 0], [0, 3], [0, 6], [0, 9]], chunked["cols"]
    assert len(list(saved.glob("model-0000?-of-00004.safetensors"))) == 4
    for ranks in (1, 2, 3):
        print(mpirun(ranks, "load", saved, "split", 4), end="")
    print(run(RANKS_EXE, "check", saved, "split", 4), end="")
    run(VALIDATE, saved)
    for single in ("whole.safetensors", "whole.npz", "whole.pt"):
        run(CONVERT, saved, work / single)
        print(run(RANKS_EXE, "check", work / single, "split", 4), end="")
    # Saved on 2 ranks, loaded on 3.
    mpirun(2, "save", work / "two", "split")
    print(mpirun(3, "load", work / "two", "split", 2), end="")

    # A broken chunk list is E892 in the single-process reader.
    def broken(edit):
        copy = work / f"broken{random.random()}"
        shutil.copytree(saved, copy)
        index = json.loads((copy / "model.safetensors.index.json").read_text())
        edit(index["chunked_tensors"])
        (copy / "model.safetensors.index.json").write_text(json.dumps(index))
        out = run(VALIDATE, copy, expect=1)
        assert "E892" in out, out
    broken(lambda c: c["rows"]["chunks"][1]["data_offsets"].__setitem__(0, 8))
    broken(lambda c: c["cols"]["chunks"].pop())
    broken(lambda c: c["blocks"]["chunks"][0]["offset"].__setitem__(0, 1))
    broken(lambda c: c["cube"].__setitem__("shape", [4, 3, 6]))


def case_whole(work):
    if not VENV_PYTHON.exists():
        print(f"skipped: no venv at {VENV_PYTHON}; run scripts/make-hf-venv.sh")
        sys.exit(77)
    saved = work / "saved"
    mpirun(3, "save", saved, "whole")
    index = json.loads((saved / "model.safetensors.index.json").read_text())
    assert "chunked_tensors" not in index, index
    print(mpirun(2, "load", saved, "whole", 3), end="")
    # safetensors itself loads every shard; the union is the state dict.
    peer = """
import json, numpy as np, sys
from pathlib import Path
from safetensors.numpy import load_file
d = Path(sys.argv[1]); index = json.loads((d / "model.safetensors.index.json").read_text())
tensors = {}
for f in sorted(set(index["weight_map"].values())):
    tensors.update(load_file(str(d / f)))
assert sorted(tensors) == sorted(index["weight_map"]), sorted(tensors)
assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())
for r in range(3):
    want = (r * 1000 + np.arange(15)).astype(np.int16).reshape(3, 5)
    assert tensors[f"owned.{r}"].dtype == np.int16 and (tensors[f"owned.{r}"] == want).all(), r
assert tensors["scalar"].shape == () and tensors["scalar"].dtype == np.float32 and tensors["scalar"] == 3000
print("safetensors loads", len(tensors), "tensors from", len(set(index["weight_map"].values())), "shards, values equal")
"""
    print(run(VENV_PYTHON, "-c", peer, saved), end="")


def case_fail(work):
    print(mpirun(4, "fail", work / "never"), end="")


def is_complete(saved):
    """Loads and checks every value, or says why not."""
    result = subprocess.run([RANKS_EXE, "check", saved, "large"], capture_output=True, text=True)
    return result.returncode == 0, result.stdout + result.stderr


def start_save(saved, pids):
    """A 4-rank save of the "large" set, returned once every rank wrote its pid."""
    pids.mkdir()
    command = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", "4", RANKS_EXE, "pids", saved, pids]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                           env=MPI_ENV)
    while len(list(pids.glob("rank*"))) < 4 and job.poll() is None:
        time.sleep(0.002)
    return job


def case_kill(work):
    # How long an undisturbed save takes once the ranks run, to kill within it.
    timed = start_save(work / "timed", work / "timed-pids")
    start = time.monotonic()
    timed.communicate(timeout=120)
    window = time.monotonic() - start
    assert timed.returncode == 0 and is_complete(work / "timed")[0]
    outcomes = {"absent": 0, "complete": 0}
    rng = random.Random(15)
    for trial in range(10):
        saved = work / f"killed{trial}"
        job = start_save(saved, work / f"pids{trial}")
        victim = rng.randrange(4)
        time.sleep(rng.uniform(0, window))
        try:
            os.kill(int((work / f"pids{trial}" / f"rank{victim}").read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, FileNotFoundError):
            pass  # the save had ended: the check below still applies
        try:
            job.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
        if saved.exists():
            ok, why = is_complete(saved)
            assert ok, f"trial {trial}: rank {victim} killed, the destination is partial: {why}"
            outcomes["complete"] += 1
        else:
            outcomes["absent"] += 1
    print(f"10 saves on 4 ranks, one rank SIGKILLed at random within the {window:.2f} s the ranks run: {outcomes}; "
          "never partial")


def case_example(work):
    for ranks in (1, 2, 4):
        command = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), EXAMPLE, work / f"example{ranks}"]
        out = run(*command)
        assert out.count(": 0 wrong values") == ranks, out
    print(out, end="")
    print(run(VALIDATE, work / "example4"), end="")


def case_capi(work):
    for ranks in (1, 3):
        command = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(ranks), CAPI_TEST, work / f"capi{ranks}"]
        print(run(*command), end="")


with tempfile.TemporaryDirectory(prefix="collective-") as directory:
    {"split": case_split, "whole": case_whole, "fail": case_fail, "kill": case_kill, "example": case_example, "capi": case_capi}[CASE](Path(directory))
print("ok")
