"""ckpt-train end to end: train a little, save, validate, evaluate the saved
snapshot, resume, and refuse bad input with the documented exit codes.
usage: test_ckpt_train.py CKPT_TRAIN CKPT_VALIDATE CKPT_CONVERT"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from schema_check import checked  # noqa: E402

CKPT_TRAIN, CKPT_VALIDATE, CKPT_CONVERT = sys.argv[1], sys.argv[2], sys.argv[3]
SMALL = ["--device", "cpu", "--train-samples", "3000", "--lr", "0.2"]


def run(*args, expect=0):
    result = subprocess.run([CKPT_TRAIN, *args], capture_output=True, text=True)
    assert result.returncode == expect, (args, result.returncode, result.stdout, result.stderr)
    return result


def epoch_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("epoch ")]


def main():
    work = tempfile.mkdtemp(prefix="ckpt-train-test-")
    try:
        out = os.path.join(work, "mnist_model")
        trained = run(*SMALL, "--epochs", "2", "--out", out)
        lines = epoch_lines(trained.stdout)
        assert len(lines) == 2, trained.stdout
        pattern = re.compile(r"^epoch (\d+), train loss (\d+\.\d{4}), train acc (\d\.\d{3}), test acc (\d\.\d{3})$")
        for number, line in enumerate(lines, start=1):
            match = pattern.match(line)
            assert match and int(match.group(1)) == number, line
        final_test_acc = float(pattern.match(lines[-1]).group(4))
        assert final_test_acc > 0.5, lines

        validated = subprocess.run([CKPT_VALIDATE, out], capture_output=True, text=True)
        assert validated.returncode == 0, validated.stdout + validated.stderr
        assert sorted(os.listdir(out)) == ["l1.bias", "l1.weight", "l2.bias", "l2.weight", "l3.bias", "l3.weight",
                                          "snapshot_done"]
        assert os.path.isdir(out + ".train-state")

        evaluated = run("--device", "cpu", "--eval-only", out)
        accuracy = float(re.fullmatch(r"test acc (\d\.\d{4})\n", evaluated.stdout).group(1))
        assert abs(accuracy - final_test_acc) <= 0.0005, (accuracy, final_test_acc)

        # Snapshot -> npy -> snapshot: the model that comes back evaluates the same.
        npy = os.path.join(work, "mnist_npy")
        back = os.path.join(work, "mnist_back")
        for source, target, fmt in ((out, npy, "npy"), (npy, back, "oneflow")):
            converted = subprocess.run([CKPT_CONVERT, source, target, "--to", fmt], capture_output=True, text=True)
            assert converted.returncode == 0, converted.stderr
        assert sorted(os.listdir(npy)) == [f"{n}.npy" for n in ["l1.bias", "l1.weight", "l2.bias", "l2.weight",
                                                               "l3.bias", "l3.weight"]]
        assert run("--device", "cpu", "--eval-only", back).stdout == evaluated.stdout

        # Resuming after epoch 1 ends where the 2-epoch run ended, byte for byte.
        first = os.path.join(work, "first")
        run(*SMALL, "--epochs", "1", "--out", first)
        resumed = os.path.join(work, "resumed")
        result = run("--device", "cpu", "--train-samples", "3000", "--epochs", "2", "--resume", first, "--out", resumed)
        assert "resumed after epoch 1" in result.stdout
        assert epoch_lines(result.stdout) == lines[1:], (result.stdout, lines)
        for name in ["l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias"]:
            with open(os.path.join(out, name, "out"), "rb") as a, open(os.path.join(resumed, name, "out"), "rb") as b:
                assert a.read() == b.read(), name

        # Errors: usage 2, I/O 2, invalid input 1, nothing written on failure.
        run("--epochs", "x", expect=2)
        run("--bogus", expect=2)
        conflict = run("--resume", first, "--lr", "0.1", "--out", os.path.join(work, "never"), expect=2)
        assert "--lr 0.1 conflicts with the training state's 0.2" in conflict.stderr, conflict.stderr
        # Values equal to the stored state are accepted.
        again = run("--device", "cpu", "--train-samples", "3000", "--epochs", "1", "--resume", first, "--seed", "0",
                    "--lr", "0.2", "--out", os.path.join(work, "same"), "--json")
        report = checked(again.stdout)
        assert (report["format"], report["layout"], report["valid"], report["epochs"]) == ("oneflow", "L1/E1", True, []), report
        assert len(report["tensors"]) == 6 and "epoch" not in again.stdout.split("{")[0]
        # An existing OUT is refused before any training, with the flag that replaces it.
        refused = run("--out", out, *SMALL, "--epochs", "1", expect=2)
        assert "E103" in refused.stderr and "pass --force" in refused.stderr, refused.stderr
        assert epoch_lines(refused.stdout) == [] and "device:" not in refused.stdout, refused.stdout
        replaced = run("--out", os.path.join(work, "same"), "--device", "cpu", "--train-samples", "300", "--epochs", "1",
                       "--overwrite")
        assert len(epoch_lines(replaced.stdout)) == 1
        run("--eval-only", os.path.join(work, "absent"), expect=2)
        bad_data = os.path.join(work, "bad-data")
        os.mkdir(bad_data)
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                     "t10k-labels-idx1-ubyte"]:
            with open(os.path.join(bad_data, name), "wb") as f:
                f.write(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # 5 promised, 3 present
        failed = run("--data", bad_data, "--out", os.path.join(work, "never"), expect=1)
        assert "E902" in failed.stderr and "train-images-idx3-ubyte" in failed.stderr, failed.stderr
        assert not os.path.exists(os.path.join(work, "never"))
        wrong = os.path.join(work, "wrong")
        shutil.copytree(out, wrong)
        shutil.rmtree(os.path.join(wrong, "l2.bias"))
        failed = run("--device", "cpu", "--eval-only", wrong, expect=1)
        assert "E905" in failed.stderr and "l2.bias" in failed.stderr, failed.stderr
        check_init_and_order(work, out)
    finally:
        shutil.rmtree(work)
    print("ok")


def read_out(directory, name):
    return np.fromfile(os.path.join(directory, name, "out"), dtype="<f4")


def check_init_and_order(work, trained):
    """--init from any format, --no-shuffle and --order FILE, and their refusals."""
    names = ["l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias"]
    shapes = {"l1.weight": (128, 784), "l1.bias": (128,), "l2.weight": (64, 128), "l2.bias": (64,),
              "l3.weight": (10, 64), "l3.bias": (10,)}
    rng = np.random.default_rng(7)
    init = {name: rng.uniform(-0.05, 0.05, shapes[name]).astype(np.float32) for name in names}
    init_npz = os.path.join(work, "init.npz")
    np.savez(init_npz, **init)
    # 0 epochs from --init saves the given weights exactly.
    kept = os.path.join(work, "kept")
    run("--device", "cpu", "--epochs", "0", "--init", init_npz, "--out", kept)
    for name in names:
        assert np.array_equal(read_out(kept, name), init[name].ravel()), name
    # Any readable format: ckpt-train's own E1 output too.
    run(*SMALL, "--epochs", "0", "--init", trained, "--out", os.path.join(work, "from-e1"))
    assert np.array_equal(read_out(os.path.join(work, "from-e1"), "l2.weight"), read_out(trained, "l2.weight"))
    wrong = dict(init, **{"l2.bias": np.zeros(63, np.float32)})
    np.savez(os.path.join(work, "wrong.npz"), **wrong)
    failed = run("--device", "cpu", "--init", os.path.join(work, "wrong.npz"), "--out", os.path.join(work, "never"),
                 expect=1)
    assert "E905" in failed.stderr and "l2.bias" in failed.stderr and "expected [64], found [63]" in failed.stderr, \
        failed.stderr
    np.savez(os.path.join(work, "extra.npz"), **init, extra=np.zeros(1, np.float32))
    failed = run("--device", "cpu", "--init", os.path.join(work, "extra.npz"), "--out", os.path.join(work, "never"),
                 expect=1)
    assert "E905" in failed.stderr and "extra" in failed.stderr and "l3.bias" in failed.stderr, failed.stderr
    run("--init", init_npz, "--resume", trained, "--out", os.path.join(work, "never"), expect=2)

    # --no-shuffle is the order file whose rows are 0..N-1, bit for bit; another order gives other weights.
    samples = 640
    small = ["--device", "cpu", "--train-samples", str(samples), "--epochs", "2", "--init", init_npz, "--lr", "0.2"]
    plain = os.path.join(work, "plain")
    run(*small, "--no-shuffle", "--out", plain)
    sequential = os.path.join(work, "sequential.npy")
    np.save(sequential, np.tile(np.arange(samples, dtype=np.int64), (2, 1)))
    ordered = os.path.join(work, "ordered")
    run(*small, "--order", sequential, "--out", ordered)
    reversed_order = os.path.join(work, "reversed.npy")
    np.save(reversed_order, np.tile(np.arange(samples, dtype=np.int32)[::-1], (2, 1)))
    backwards = os.path.join(work, "backwards")
    run(*small, "--order", reversed_order, "--out", backwards)
    for name in names:
        assert np.array_equal(read_out(plain, name), read_out(ordered, name)), name
    assert not np.array_equal(read_out(plain, "l1.weight"), read_out(backwards, "l1.weight"))
    run(*small, "--order", sequential, "--no-shuffle", "--out", os.path.join(work, "never"), expect=2)
    # An index outside the (--train-samples) training set, too few rows, a float tensor: E904, nothing saved.
    outside = os.path.join(work, "outside.npy")
    np.save(outside, np.array([[0, 1, samples]], dtype=np.int64))
    for order, expected in [(outside, f"sample index {samples}"), (reversed_order, "2 epochs"),
                            (init_npz, "one tensor")]:
        args = small[:small.index("--epochs")] + ["--epochs", "3" if order == reversed_order else "1"]
        failed = run(*args, "--order", order, "--out", os.path.join(work, "never"), expect=1)
        assert "E904" in failed.stderr and expected in failed.stderr, failed.stderr
    assert not os.path.exists(os.path.join(work, "never"))


if __name__ == "__main__":
    main()
