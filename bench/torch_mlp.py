"""The tutorial's MLP in PyTorch (CPU) on an MNIST-format directory, the
reference for ckpt-train's accuracy and speed. Run with /usr/bin/python3.

  torch_mlp.py train --seed S [--epochs N] [--threads T] [--export DIR]
                     [--init NPZ] [--order NPY] [--export-every-epoch PREFIX]
      trains as the tutorial (SGD lr 0.003, batch 128, shuffled each epoch,
      or from given weights in a given batch order),
      prints the tutorial's epoch lines plus "epoch N took X s", and with
      --export writes the weights as a OneFlow E1 snapshot (out + meta +
      snapshot_done) for `ckpt-train --eval-only`
  torch_mlp.py eval SNAPSHOT
      loads a snapshot's float32 `out` files into torch.nn, prints "test acc Z"
"""
import argparse

import numpy as np
import torch

from mlp_common import (DATA, NAMES, accuracy, add_train_options, load, read_snapshot, train_epochs, weights,
                        write_snapshot)


def load_tensors(data, split):
    images, labels = load(data, split)
    return torch.from_numpy(images), torch.from_numpy(labels)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = torch.nn.Linear(784, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = Net()
    if args.init:
        init = np.load(args.init)
        net.load_state_dict({name: torch.from_numpy(init[name]) for name in NAMES})
    train_epochs(torch, net, args)
    if args.export:
        write_snapshot(weights(net), args.export)


def evaluate(args):
    net = Net()
    net.load_state_dict({name: torch.from_numpy(values) for name, values in read_snapshot(args.snapshot).items()})
    test_images, test_labels = load_tensors(args.data, "test")
    print("test acc %.4f" % accuracy(torch, net, test_images, test_labels))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=DATA)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    add_train_options(train_parser)
    train_parser.add_argument("--threads", type=int, default=2)
    train_parser.add_argument("--export")
    train_parser.add_argument("--init", help="start from these weights (an npz of l1.weight ... l3.bias)")
    eval_parser = commands.add_parser("eval")
    eval_parser.add_argument("snapshot")
    args = parser.parse_args()
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
