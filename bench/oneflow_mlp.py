"""The tutorial's training loop run by OneFlow 0.9.0 itself (CPU), on the same Fashion-MNIST files and
the same model as ckpt-train and torch_mlp.py (784-128-64-10, CrossEntropyLoss, SGD lr 0.003, batch
128); only the data loading differs from the tutorial (numpy arrays instead of a DataLoader). Run with
the OneFlow venv's Python (`$(scripts/oneflow-venv.sh)`).

  oneflow_mlp.py init --seed S --out DIR --npz FILE
      OneFlow's initial weights for seed S: flow.save(model.state_dict(), DIR) and the same as npz
  oneflow_mlp.py train --seed S [--epochs N] [--init DIR] [--order NPY] [--export-every-epoch PREFIX]
      trains; prints the tutorial's epoch lines, "epoch N took X s" and "test acc Z"; writes
      PREFIX-N.npz after epoch N
  oneflow_mlp.py eval SNAPSHOT
      flow.load(SNAPSHOT) (ckpt-train's E1 output) into the model, prints "test acc Z"
"""
import argparse

import numpy as np
import oneflow as flow

from mlp_common import DATA, accuracy, add_train_options, load, train_epochs, weights


class Net(flow.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = flow.nn.Linear(784, 128), flow.nn.Linear(128, 64), flow.nn.Linear(64, 10)

    def forward(self, x):
        return self.l3(flow.relu(self.l2(flow.relu(self.l1(x)))))


def initial(args):
    flow.manual_seed(args.seed)
    net = Net()
    flow.save(net.state_dict(), args.out)
    np.savez(args.npz, **weights(net))


def train(args):
    flow.manual_seed(args.seed)
    net = Net()
    if args.init:
        net.load_state_dict(flow.load(args.init))
    train_epochs(flow, net, args)


def evaluate(args):
    net = Net()
    net.load_state_dict(flow.load(args.snapshot))
    test_images, test_labels = (flow.tensor(a) for a in load(args.data, "test"))
    print("test acc %.4f" % accuracy(flow, net, test_images, test_labels))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=DATA)
    commands = parser.add_subparsers(dest="command", required=True)
    init_parser = commands.add_parser("init")
    init_parser.add_argument("--seed", type=int, default=0)
    init_parser.add_argument("--out", required=True)
    init_parser.add_argument("--npz", required=True)
    train_parser = commands.add_parser("train")
    add_train_options(train_parser)
    train_parser.add_argument("--init", help="flow.load this directory into the model first")
    eval_parser = commands.add_parser("eval")
    eval_parser.add_argument("snapshot")
    args = parser.parse_args()
    {"init": initial, "train": train, "eval": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
