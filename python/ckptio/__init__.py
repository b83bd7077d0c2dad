"""ckptio: read, write, validate and convert deep-learning checkpoints
(OneFlow snapshots, safetensors, npy/npz, PyTorch files) from Python, with
numpy arrays that are memory maps of the file wherever the bytes allow.

    import ckptio
    with ckptio.open("model.safetensors") as ckpt:
        weight = ckpt["linear.weight"]          # numpy, zero-copy
        rows = ckpt.get_slice("embed")[0:10]    # reads 10 rows only
    ckptio.save({"w": weight}, "out.npz")
    ckptio.convert("snapshot/", "model.safetensors", dtype="kBFloat16")
"""
import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._checkpoint import Checkpoint, TensorSlice
from ._core import CkptError
from ._dtypes import to_ckpt, to_numpy

__all__ = ["CkptError", "Checkpoint", "TensorSlice", "open", "save", "convert", "validate", "diff", "formats"]
__version__ = "0.1.0"

PathLike = Union[str, "os.PathLike[str]"]


def open(path: PathLike, format: Optional[str] = None, *, dtype: Optional[str] = None, include: Iterable[str] = (),
         exclude: Iterable[str] = (), rename: Iterable[str] = ()) -> Checkpoint:
    """Opens a checkpoint of any supported format (detected from the content
    unless `format` names it). Views: `include`/`exclude` are glob patterns
    on names, `rename` "OLD=NEW" prefix rules, `dtype` casts floating tensors
    ("kBFloat16", "kFloat16", "kFloat", "kDouble"). Raises CkptError."""
    return Checkpoint(_core.Reader(os.fspath(path), format, dtype, list(include), list(exclude), list(rename)))


def _as_numpy(value: Any) -> np.ndarray:
    # torch is looked at only when the value is a torch tensor: no import otherwise.
    if type(value).__module__.startswith("torch"):
        import torch

        tensor = value.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(to_numpy("kBFloat16"))
        return tensor.numpy()
    return np.asarray(value)


def save(tensors: Mapping[str, Any], path: PathLike, format: Optional[str] = None, *,
         metadata: Optional[Mapping[str, str]] = None, force: bool = False) -> None:
    """Writes `tensors` (numpy arrays, array-likes, torch tensors) to `path`
    crash-safely: nothing appears at `path` unless everything was written.
    `format` defaults by extension (.safetensors, .npz, .pt/.pth/.bin), else
    a OneFlow snapshot directory. An existing `path` is replaced only with
    force=True (atomically). `metadata` (str to str) is added to a safetensors
    file's ``__metadata__``, which is {"format": "pt"} without it; other
    formats have no place for it and raise CkptError."""
    path = os.fspath(path)
    writer = _core.Writer(path, _core.destination_format(path, format), force)
    if metadata is not None:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata maps str to str, got {key!r}: {value!r}")
        if metadata:
            writer.set_metadata(dict(metadata))
    for name, value in tensors.items():
        array = _as_numpy(value)
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else None)
        writer.add(name, to_ckpt(little.dtype), list(little.shape), little.reshape(-1).view(np.uint8))
    writer.commit()


def convert(source: PathLike, destination: PathLike, *, to: Optional[str] = None, dtype: Optional[str] = None,
            include: Iterable[str] = (), exclude: Iterable[str] = (), rename: Iterable[str] = (),
            force: bool = False) -> dict:
    """Converts `source` (any format) to `destination`, streaming, crash-safe;
    views as in :func:`open`. Returns {"variables": N, "bytes": N}."""
    variables, nbytes = _core.convert(os.fspath(source), os.fspath(destination), to, dtype, list(include),
                                      list(exclude), list(rename), force)
    return {"variables": variables, "bytes": nbytes}


def validate(path: PathLike) -> dict:
    """Checks `path` against every rule of its format. Returns a dict: path,
    format (None when nothing was recognised), layout (OneFlow's generation,
    "L1/E1", "P1", ...; None for other formats), valid, tensors (name, bytes,
    dtype, shape) and issues (code, name, severity, variable, message). A
    broken checkpoint gives valid=False and its issues; it does not raise."""
    return _core.validate(os.fspath(path))


def diff(a: PathLike, b: PathLike, *, rtol: float = 0.0, atol: float = 0.0) -> dict:
    """Compares two checkpoints of any formats tensor by tensor. Returns
    {"equal", "only_in_a", "only_in_b", "changed": {name: reason}}; values
    are equal within `atol` + `rtol` * |b| (exactly, by default)."""
    with open(a) as left, open(b) as right:
        changed = {}
        for name in sorted(left.keys() & right.keys()):
            x, y = left[name], right[name]
            if x.dtype != y.dtype:
                changed[name] = f"dtype {x.dtype} != {y.dtype}"
            elif x.shape != y.shape:
                changed[name] = f"shape {x.shape} != {y.shape}"
            elif not np.allclose(x.astype(np.float64) if x.dtype.name == "bfloat16" else x,
                                 y.astype(np.float64) if y.dtype.name == "bfloat16" else y,
                                 rtol=rtol, atol=atol, equal_nan=True):
                changed[name] = "values differ"
        only_a = sorted(left.keys() - right.keys())
        only_b = sorted(right.keys() - left.keys())
    return {"equal": not (changed or only_a or only_b), "only_in_a": only_a, "only_in_b": only_b, "changed": changed}


def formats() -> list:
    """The formats this build reads and writes."""
    return _core.formats()
