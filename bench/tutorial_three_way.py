"""The tutorial three ways: ckpt-train, OneFlow 0.9.0 (bench/oneflow_mlp.py, in its venv) and PyTorch
(bench/torch_mlp.py, Debian's torch), each from its own initialisation and shuffling for the seed:
784-128-64-10 MLP, SGD lr 0.003, batch 128, Fashion-MNIST. Prints per seed the final test accuracy of
each, the median seconds per epoch of each, and the cross-evaluation: our saved model loaded by
flow.load and evaluated inside OneFlow against our own `ckpt-train --eval-only`.
Run with /usr/bin/python3:

  tutorial_three_way.py CKPT_TRAIN [--seeds 0 1 2] [--epochs 10] [--threads 1] [--work DIR]

--threads sets OPENBLAS_NUM_THREADS / BLIS_NUM_THREADS, torch.set_num_threads and OMP_NUM_THREADS
(OneFlow's CPU kernels) alike.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

from step_compare import oneflow_python, run


def last_accuracy(text):
    return float(re.findall(r"test acc (\d\.\d+)", text)[-1])


def median_epoch_seconds(text):
    return statistics.median(float(t) for t in re.findall(r"epoch \d+ took (\d+\.\d+) s", text))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt_train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work")
    args = parser.parse_args()
    args.ckpt_train = os.path.abspath(args.ckpt_train)  # the trainers run in bench/
    flow_python = oneflow_python()
    work = args.work or tempfile.mkdtemp(prefix="ckpt-three-way-")
    os.makedirs(work, exist_ok=True)
    threads = str(args.threads)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, BLIS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
    rows = []
    for seed in args.seeds:
        ours = os.path.join(work, f"ours-{seed}")
        # ckpt-train prints its epoch times on stderr.
        done = subprocess.run([args.ckpt_train, "--device", "cpu", "--seed", str(seed), "--epochs",
                               str(args.epochs), "--force", "--out", ours], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"ckpt-train exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        ours_log = done.stdout + done.stderr
        flow_log = run(flow_python, "oneflow_mlp.py", "train", "--seed", str(seed), "--epochs", str(args.epochs),
                       env=env)
        torch_log = run(sys.executable, "torch_mlp.py", "train", "--seed", str(seed), "--epochs", str(args.epochs),
                        "--threads", threads, env=env)
        ours_eval = last_accuracy(run(args.ckpt_train, "--device", "cpu", "--eval-only", ours, env=env))
        ours_in_flow = last_accuracy(run(flow_python, "oneflow_mlp.py", "eval", ours, env=env))
        rows.append((seed, ours_eval, last_accuracy(flow_log), last_accuracy(torch_log), ours_in_flow,
                     median_epoch_seconds(ours_log), median_epoch_seconds(flow_log), median_epoch_seconds(torch_log)))
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    print(f"{args.epochs} epochs, {threads} thread(s) each")
    print("| seed | ours (`--eval-only`) | OneFlow 0.9.0 | PyTorch 1.13 | ours evaluated in OneFlow "
          "| ours s/epoch | OneFlow s/epoch | PyTorch s/epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| %d | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f | %.3f |" % row)
    means = [statistics.mean(row[i] for row in rows) for i in range(1, 8)]
    print("| mean | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f | %.3f |" % tuple(means))
    print(f"\nours - OneFlow: {100 * (means[0] - means[1]):+.2f} points; ours - PyTorch: "
          f"{100 * (means[0] - means[2]):+.2f} points; largest |ours in OneFlow - ours|: "
          f"{100 * max(abs(r[1] - r[4]) for r in rows):.2f} points")


if __name__ == "__main__":
    main()
