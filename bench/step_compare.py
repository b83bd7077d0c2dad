"""Step by step, not only on average: ckpt-train, OneFlow 0.9.0 and PyTorch trained from the same
initial weights (OneFlow's, saved by flow.save) in the same batch order, weights compared per tensor
after each epoch asked for. Run with /usr/bin/python3 (Debian's numpy and torch); OneFlow runs in its
venv (scripts/oneflow-venv.sh).

  step_compare.py CKPT_TRAIN [--epochs 1 10] [--samples N] [--seed S] [--work DIR] [--tolerance X]

--samples N trains on N samples per epoch (the first N of a fixed permutation of the 60,000;
default all). For each compared epoch and tensor it prints max|a - b| and max|a - b| / max|b| of
ours against OneFlow, ours against PyTorch and OneFlow against PyTorch. With --tolerance X it
exits 1 when ours differs from either peer by more than X relative (max|a - b| / max|b|) on any
tensor. Exit 77 when OneFlow is not set up (unless CKPT_REQUIRE_ONEFLOW=1: then 1).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from mlp_common import NAMES, read_snapshot  # noqa: E402

SKIP = 77


def oneflow_python():
    found = subprocess.run([os.path.join(BENCH, "..", "scripts", "oneflow-venv.sh"), "--installed-only"],
                           capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip()
    print(found.stderr.strip(), file=sys.stderr)
    sys.exit(1 if os.environ.get("CKPT_REQUIRE_ONEFLOW") == "1" else SKIP)


def run(*argv, env=None):
    done = subprocess.run(list(argv), capture_output=True, text=True, cwd=BENCH, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def differences(a, b):
    gap = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
    return gap, gap / max(np.abs(b.astype(np.float64)).max(), np.finfo(np.float32).tiny)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt_train")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work")
    parser.add_argument("--tolerance", type=float)
    args = parser.parse_args()
    args.ckpt_train = os.path.abspath(args.ckpt_train)  # the trainers run in bench/
    flow_python = oneflow_python()
    epochs = max(args.epochs)
    work = args.work or tempfile.mkdtemp(prefix="ckpt-steps-")
    os.makedirs(work, exist_ok=True)
    single = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        init = os.path.join(work, "init")
        shutil.rmtree(init, ignore_errors=True)
        run(flow_python, "oneflow_mlp.py", "init", "--seed", str(args.seed), "--out", init, "--npz", init + ".npz")
        # One fixed subset, reshuffled each epoch; the same file drives all three trainers.
        rng = np.random.default_rng(args.seed)
        subset = rng.permutation(60000)[:args.samples]
        order = os.path.join(work, "order.npy")
        np.save(order, np.stack([rng.permutation(subset) for _ in range(epochs)]).astype(np.int64))

        weights = {"oneflow": {}, "torch": {}, "ours": {}}
        run(flow_python, "oneflow_mlp.py", "train", "--epochs", str(epochs), "--init", init, "--order", order,
            "--export-every-epoch", os.path.join(work, "oneflow"), env=single)
        run(sys.executable, "torch_mlp.py", "train", "--threads", "1", "--epochs", str(epochs), "--init",
            init + ".npz", "--order", order, "--export-every-epoch", os.path.join(work, "torch"), env=single)
        ours = os.path.join(work, "ours")
        run(args.ckpt_train, "--device", "cpu", "--quiet", "--force", "--epochs", str(epochs), "--init", init,
            "--order", order, "--save-every-epoch", "--out", ours, env=single)
        for epoch in args.epochs:
            for peer in ("oneflow", "torch"):
                weights[peer][epoch] = dict(np.load(os.path.join(work, f"{peer}-{epoch}.npz")))
            weights["ours"][epoch] = read_snapshot(f"{ours}.epoch-{epoch}")

        worst = 0.0
        print(f"seed {args.seed}, {args.samples} samples per epoch, batch 128, SGD lr 0.003, 1 thread each")
        print("| epoch | tensor | ours vs OneFlow abs | rel | ours vs PyTorch abs | rel | OneFlow vs PyTorch abs | rel |")
        print("|---|---|---|---|---|---|---|---|")
        for epoch in args.epochs:
            for name in NAMES:
                ours_w, flow_w, torch_w = (weights[p][epoch][name] for p in ("ours", "oneflow", "torch"))
                pairs = [differences(ours_w, flow_w), differences(ours_w, torch_w), differences(flow_w, torch_w)]
                worst = max(worst, pairs[0][1], pairs[1][1])
                print(f"| {epoch} | {name} | " + " | ".join(f"{gap:.2e} | {rel:.2e}" for gap, rel in pairs) + " |")
        print(f"largest relative difference of ours against a peer: {worst:.2e}")
        if args.tolerance is not None and not worst <= args.tolerance:
            print(f"above the tolerance {args.tolerance:.1e}", file=sys.stderr)
            return 1
        return 0
    finally:
        if not args.work:
            shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
