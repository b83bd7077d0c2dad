"""The real OneFlow's half of test_oneflow_interop.py, run by OneFlow's own Python.

  oneflow_side.py write OUT     OneFlow saves every case under OUT, with its values in OUT/<case>.npz
  oneflow_side.py global OUT    (under oneflow.distributed.launch, 2 ranks) global tensors, dst rank 0
  oneflow_side.py read PLAN     flow.load each checkpoint the plan names and compares it with its reference

Each OneFlow start costs seconds, so one process does every case of a direction.
"""
import json
import os
import sys

import numpy as np
import oneflow as flow

from dotted_names import assert_arrays_equal, flatten


def flat(obj):
    return flatten(obj, lambda value: isinstance(value, flow.Tensor))


def save_reference(path, tensors):
    np.savez(path, **{name: tensor.numpy() for name, tensor in tensors.items()})


def every_dtype():
    values = np.arange(-3, 9).reshape(3, 4)
    return {
        "f16": flow.tensor(values / 8, dtype=flow.float16),
        "f32": flow.tensor([[1.5, -0.1, 3e38], [1e-40, -0.0, 7.25]], dtype=flow.float32),
        "f64": flow.tensor([0.1, -2.5e300, 1e-310], dtype=flow.float64),
        "i8": flow.tensor([-128, 0, 127], dtype=flow.int8),
        "i32": flow.tensor(values * 1000003, dtype=flow.int32),
        "i64": flow.tensor([-(2**62), 2**40 + 3, 0], dtype=flow.int64),
        "u8": flow.tensor([0, 200, 255], dtype=flow.uint8),
        "bool": flow.tensor([True, False, True]),
        "scalar": flow.tensor(42, dtype=flow.int64),
        "empty": flow.zeros(0, 3, dtype=flow.float32),
        "transposed": flow.tensor(values.astype(np.float32)).t(),
    }


class Net(flow.nn.Module):
    """The tutorial's model."""

    def __init__(self):
        super().__init__()
        self.flatten = flow.nn.Flatten()
        self.l1 = flow.nn.Linear(28 * 28, 512)
        self.l2 = flow.nn.Linear(512, 512)
        self.l3 = flow.nn.Linear(512, 10)

    def forward(self, x):
        x = self.flatten(x)
        return self.l3(flow.relu(self.l2(flow.relu(self.l1(x)))))


def write(out):
    flow.manual_seed(1)
    cases = {"every_dtype": every_dtype()}
    flow.save(cases["every_dtype"], os.path.join(out, "every_dtype"))

    model = Net()
    optimizer = flow.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    loss = flow.nn.CrossEntropyLoss()(model(flow.randn(4, 1, 28, 28)), flow.tensor([1, 2, 3, 4]))
    loss.backward()
    optimizer.step()
    tutorial = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}
    flow.save(tutorial, os.path.join(out, "tutorial"))
    cases["tutorial"] = flat(tutorial)
    with open(os.path.join(out, "tutorial.json"), "w") as f:
        json.dump({"epoch": 3, "param_groups": tutorial["optimizer"]["param_groups"]}, f)

    flow.save(model, os.path.join(out, "module"))
    cases["module"] = dict(model.state_dict())

    # OneFlow 0.9 writes a bfloat16 tensor's float32 values under kBFloat16.
    bf16 = flow.tensor([1.0, -2.5, 3.140625, 0.0, 65280.0, -1e-3], dtype=flow.float32).to(flow.bfloat16)
    flow.save({"w": bf16}, os.path.join(out, "bf16"))
    cases["bf16"] = {"w": bf16.to(flow.float32)}

    for name, tensors in cases.items():
        save_reference(os.path.join(out, name + ".npz"), tensors)

    # numpy arrays beside a tensor (an RNG state): tensors of the checkpoint under the pickle policy.
    state = np.random.RandomState(3).get_state()
    flow.save({"w": flow.ones(2), "rng": np.arange(4), "state": state, "epoch": 2}, os.path.join(out, "arrays"))
    np.savez(os.path.join(out, "arrays.npz"), w=np.ones(2, np.float32), rng=np.arange(4), **{"state.1": state[1]})


def write_global(out):
    placement = flow.placement("cpu", ranks=[0, 1])
    values = np.arange(24, dtype=np.float32).reshape(6, 4) / 4
    split = flow.tensor(values).to_global(placement, flow.sbp.broadcast).to_global(placement, flow.sbp.split(0))
    broadcast = flow.tensor(values[:2].astype(np.int64)).to_global(placement, flow.sbp.broadcast)
    state = {"split": split, "broadcast": broadcast}
    flow.save(state, os.path.join(out, "global"), global_dst_rank=0)
    if flow.env.get_rank() == 0:
        np.savez(os.path.join(out, "global.npz"), split=values, broadcast=values[:2].astype(np.int64))


def same(ours, theirs, where):
    """Equal values and types, tensors exactly (dtype, shape, bytes)."""
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), f"{where}: {type(ours)}, expected a numpy array"
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, f"{where}: {ours.dtype} vs {theirs.dtype}"
        assert ours.tobytes() == theirs.tobytes(), f"{where}: values differ"
    elif isinstance(theirs, flow.Tensor):
        assert isinstance(ours, flow.Tensor), f"{where}: {type(ours)}, expected a tensor"
        a, b = ours.numpy(), theirs.numpy()
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{where}: keys {list(ours)} vs {list(theirs)}"
        for key in theirs:
            same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            same(a, b, f"{where}.{index}")
    else:
        assert type(ours) is type(theirs) and ours == theirs, f"{where}: {ours!r} vs {theirs!r}"


def read(plan_path):
    """Plan: [[checkpoint, reference]]; a reference .npz holds the flat tensors, else it is a OneFlow save."""
    with open(plan_path) as f:
        plan = json.load(f)
    for path, reference in plan:
        loaded = flow.load(path)
        if reference.endswith(".npz"):
            tensors = {name: t.numpy() for name, t in flat(loaded).items()}
            assert_arrays_equal(tensors, dict(np.load(reference)), path)
        else:
            same(loaded, flow.load(reference), path)
        print(f"flow.load {os.path.basename(path)}: equal to {os.path.basename(reference)}", flush=True)


if __name__ == "__main__":
    command, target = sys.argv[1], sys.argv[2]
    {"write": write, "global": write_global, "read": read}[command](target)
