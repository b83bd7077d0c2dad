"""The tutorial's MLP in PyTorch (CPU) on an MNIST-format directory, the
reference for ckpt-train's accuracy and speed. Run with /usr/bin/python3.

  torch_mlp.py train --seed S [--epochs N] [--threads T] [--export DIR]
      trains as the tutorial (SGD lr 0.003, batch 128, shuffled each epoch),
      prints the tutorial's epoch lines plus "epoch N took X s", and with
      --export writes the weights as a OneFlow E1 snapshot (out + meta +
      snapshot_done) for `ckpt-train --eval-only`
  torch_mlp.py eval SNAPSHOT
      loads a snapshot's float32 `out` files into torch.nn, prints "test acc Z"
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch

NAMES = ["l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias"]


def read_idx(path, offset):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load(data, split):
    prefix = "train" if split == "train" else "t10k"
    find = lambda stem: next(p for p in (os.path.join(data, stem + ".gz"), os.path.join(data, stem)) if os.path.exists(p))
    images = read_idx(find(f"{prefix}-images-idx3-ubyte"), 16).reshape(-1, 784).astype(np.float32) / 255
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"), 8).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = torch.nn.Linear(784, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


def accuracy(net, images, labels):
    with torch.no_grad():
        return (net(images).argmax(dim=1) == labels).double().mean().item()


def export_snapshot(net, directory):
    os.makedirs(directory)
    state = net.state_dict()
    for name in NAMES:
        tensor = state[name].numpy().astype("<f4")
        os.makedirs(os.path.join(directory, name))
        tensor.tofile(os.path.join(directory, name, "out"))
        dims = "".join(f"  dim: {d}\n" for d in tensor.shape)
        with open(os.path.join(directory, name, "meta"), "w") as f:
            f.write(f"shape {{\n{dims}}}\ndata_type: kFloat\n")
    open(os.path.join(directory, "snapshot_done"), "w").close()


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_images, train_labels = load(args.data, "train")
    test_images, test_labels = load(args.data, "test")
    net = Net()
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.003)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        train_loss, n_correct, n_samples = 0.0, 0, 0
        for batch in torch.randperm(len(train_labels)).split(128):
            images, labels = train_images[batch], train_labels[batch]
            features = net(images)
            loss = loss_fn(features, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            n_correct += (features.argmax(dim=1) == labels).sum().item()
            n_samples += len(labels)
        test_acc = accuracy(net, test_images, test_labels)
        took = time.perf_counter() - start
        print("epoch %d, train loss %.4f, train acc %.3f, test acc %.3f" %
              (epoch + 1, train_loss / n_samples, n_correct / n_samples, test_acc))
        print("epoch %d took %.3f s" % (epoch + 1, took), flush=True)
    print("test acc %.4f" % accuracy(net, test_images, test_labels))
    if args.export:
        export_snapshot(net, args.export)


def evaluate(args):
    net = Net()
    state = {}
    for name, tensor in net.state_dict().items():
        values = np.fromfile(os.path.join(args.snapshot, name, "out"), dtype="<f4")
        state[name] = torch.from_numpy(values.reshape(tuple(tensor.shape)))
    net.load_state_dict(state)
    test_images, test_labels = load(args.data, "test")
    print("test acc %.4f" % accuracy(net, test_images, test_labels))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--epochs", type=int, default=10)
    train_parser.add_argument("--threads", type=int, default=2)
    train_parser.add_argument("--export")
    eval_parser = commands.add_parser("eval")
    eval_parser.add_argument("snapshot")
    args = parser.parse_args()
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
