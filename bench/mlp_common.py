"""What the tutorial trainers in bench/ share (torch_mlp.py with Debian's torch, oneflow_mlp.py with
OneFlow 0.9.0): Fashion-MNIST as numpy arrays, the batch order, and weights exchanged as E1 snapshots
(what ckpt-train writes and reads) or npz files. numpy only, so both interpreters import it."""
import gzip
import os
import time

import numpy as np

NAMES = ["l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias"]
SHAPES = {"l1.weight": (128, 784), "l1.bias": (128,), "l2.weight": (64, 128), "l2.bias": (64,),
          "l3.weight": (10, 64), "l3.bias": (10,)}
BATCH = 128
LR = 0.003
DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path, offset):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load(data, split):
    """(images float32 [N, 784] in [0, 1], labels int64 [N]), as ckpt-train reads the IDX files."""
    prefix = "train" if split == "train" else "t10k"
    find = lambda stem: next(p for p in (os.path.join(data, stem + ".gz"), os.path.join(data, stem)) if os.path.exists(p))
    images = read_idx(find(f"{prefix}-images-idx3-ubyte"), 16).reshape(-1, 784).astype(np.float32) / 255
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"), 8).astype(np.int64)
    return images, labels


def epoch_orders(order_file, epochs, samples, shuffle):
    """Per epoch, the sample indices in training order: the rows of an --order file (ckpt-train's
    format: an integer .npy [epochs, samples]), else `shuffle(samples)` or 0..samples-1."""
    if order_file:
        rows = np.load(order_file)
        assert rows.ndim == 2 and rows.shape[0] >= epochs, f"{order_file}: {rows.shape} rows for {epochs} epochs"
        return [rows[e].astype(np.int64) for e in range(epochs)]
    return [shuffle(samples) for _ in range(epochs)]


def batches(order):
    return [order[start:start + BATCH] for start in range(0, len(order), BATCH)]


def weights(net):
    return {name: tensor.detach().numpy() for name, tensor in net.state_dict().items()}


def accuracy(fw, net, images, labels):
    with fw.no_grad():
        return (net(images).argmax(dim=1) == labels).sum().item() / len(labels)


def train_epochs(fw, net, args):
    """The tutorial's loop, written once for torch and oneflow (`fw`), whose API agrees on all it uses:
    CrossEntropyLoss, SGD lr 0.003, batches of 128 in the order of args.order or fw.randperm each epoch.
    Prints the tutorial's epoch lines, "epoch N took X s (Y s CPU)" and the final "test acc Z"; with
    args.export_every_epoch writes PREFIX-N.npz after epoch N."""
    train_images, train_labels = (fw.tensor(a) for a in load(args.data, "train"))
    test_images, test_labels = (fw.tensor(a) for a in load(args.data, "test"))
    loss_fn = fw.nn.CrossEntropyLoss()
    optimizer = fw.optim.SGD(net.parameters(), lr=LR)
    orders = epoch_orders(args.order, args.epochs, len(train_labels), lambda n: fw.randperm(n).numpy())
    for epoch, order in enumerate(orders):
        start, cpu_start = time.perf_counter(), time.process_time()
        train_loss, n_correct, n_samples = 0.0, 0, 0
        for batch in batches(fw.tensor(order)):
            images, labels = train_images[batch], train_labels[batch]
            features = net(images)
            loss = loss_fn(features, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            n_correct += (features.argmax(dim=1) == labels).sum().item()
            n_samples += len(labels)
        test_acc = accuracy(fw, net, test_images, test_labels)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        print("epoch %d, train loss %.4f, train acc %.3f, test acc %.3f" %
              (epoch + 1, train_loss / n_samples, n_correct / n_samples, test_acc))
        print("epoch %d took %.3f s (%.3f s CPU)" % (epoch + 1, took, cpu), flush=True)
        if args.export_every_epoch:
            np.savez(f"{args.export_every_epoch}-{epoch + 1}.npz", **weights(net))
    print("test acc %.4f" % accuracy(fw, net, test_images, test_labels))


def add_train_options(parser):
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--order", help="batch order: ckpt-train's --order file (.npy [epochs, samples])")
    parser.add_argument("--export-every-epoch", metavar="PREFIX", help="write PREFIX-N.npz after epoch N")


def write_snapshot(state, directory):
    """An E1 snapshot (out + meta per variable + snapshot_done) of float32 arrays."""
    os.makedirs(directory)
    for name in NAMES:
        tensor = np.ascontiguousarray(state[name], dtype="<f4")
        os.makedirs(os.path.join(directory, name))
        tensor.tofile(os.path.join(directory, name, "out"))
        dims = "".join(f"  dim: {d}\n" for d in tensor.shape)
        with open(os.path.join(directory, name, "meta"), "w") as f:
            f.write(f"shape {{\n{dims}}}\ndata_type: kFloat\n")
    open(os.path.join(directory, "snapshot_done"), "w").close()


def read_snapshot(directory):
    """The float32 parameters of an E1 snapshot ckpt-train wrote."""
    return {name: np.fromfile(os.path.join(directory, name, "out"), dtype="<f4").reshape(SHAPES[name])
            for name in NAMES}
