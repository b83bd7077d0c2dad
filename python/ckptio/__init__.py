"""ckptio: read, write, validate and convert deep-learning checkpoints
(OneFlow snapshots, safetensors, npy/npz, PyTorch files) from Python, with
numpy arrays that are memory maps of the file wherever the bytes allow.

    import ckptio
    with ckptio.open("model.safetensors") as ckpt:
        weight = ckpt["linear.weight"]          # numpy, zero-copy
        rows = ckpt.get_slice("embed")[0:10]    # reads 10 rows only
    with ckptio.open("train.pt", allow_global=["argparse.Namespace"]) as ckpt:
        epoch = ckpt.object["epoch"]            # the pickled object, as data
    ckptio.save({"w": weight}, "out.npz")
    ckptio.convert("snapshot/", "model.safetensors", dtype="kBFloat16")
"""
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import numpy as np

from . import _core
from ._checkpoint import Checkpoint, TensorSlice
from ._core import CkptError
from ._dtypes import to_ckpt, to_numpy
from ._object import Global, Stub

__all__ = ["CkptError", "Checkpoint", "TensorSlice", "Stub", "Global", "open", "save", "convert", "validate", "diff",
           "formats"]
__version__ = "0.1.0"

PathLike = Union[str, "os.PathLike[str]"]


def _global_names(allow_global: Iterable[str]) -> list:
    # A bare str would be taken letter by letter.
    if isinstance(allow_global, str):
        raise TypeError("allow_global takes a list of 'module.name' strings, not one str")
    return list(allow_global)


def open(path: PathLike, format: Optional[str] = None, *, allow_global: Iterable[str] = (), stub_unknown: bool = False,
         dtype: Optional[str] = None, include: Iterable[str] = (), exclude: Iterable[str] = (),
         rename: Iterable[str] = ()) -> Checkpoint:
    """Opens a checkpoint of any supported format (detected from the content
    unless `format` names it). The pickle formats (torch, OneFlow P1 and
    single files) refuse globals off their allow-list (CkptError, code 704)
    unless `allow_global` names them ("argparse.Namespace"; numpy's
    "numpy.core.multiarray._reconstruct" and "...scalar" read numpy arrays
    and scalars) or `stub_unknown` is true: their objects become inert
    :class:`Stub` values of ``Checkpoint.object``; nothing is imported or
    called. Views: `include`/`exclude` are glob patterns on names, `rename`
    "OLD=NEW" prefix rules, `dtype` casts floating tensors ("kBFloat16",
    "kFloat16", "kFloat", "kDouble"). Raises CkptError."""
    return Checkpoint(_core.Reader(os.fspath(path), format, _global_names(allow_global), bool(stub_unknown), dtype,
                                   list(include), list(exclude), list(rename)))


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
            allow_global: Iterable[str] = (), stub_unknown: bool = False, skip_unsupported: bool = False,
            strict: bool = False, force: bool = False) -> dict:
    """Converts `source` (any format) to `destination`, streaming, crash-safe;
    views and the pickle policy (`allow_global`, `stub_unknown`) as in
    :func:`open`. A source with members of types ckpt cannot represent (an
    npz's ``|S3``) is refused (CkptError 540) unless `skip_unsupported`,
    which leaves them out with a warning. A pickle source's non-tensor data
    that a flat destination has no place for is dropped with a warning, or
    refused (CkptError 150) when `strict`. Returns {"variables": N,
    "bytes": N, "skipped": [unsupported names left out], "dropped": [paths
    of the non-tensor data dropped]}."""
    summary = _core.convert(os.fspath(source), os.fspath(destination), to, dtype, list(include), list(exclude),
                            list(rename), _global_names(allow_global), bool(stub_unknown), bool(skip_unsupported),
                            bool(strict), force)
    if summary["skipped"]:
        warnings.warn(f"left out {len(summary['skipped'])} member(s) of types ckpt cannot represent: "
                      f"{', '.join(summary['skipped'])}", stacklevel=2)
    if summary["dropped"]:
        warnings.warn(f"the destination has no place for {len(summary['dropped'])} non-tensor value(s) of the "
                      f"source's object, dropped: {', '.join(p or '<root>' for p in summary['dropped'])}", stacklevel=2)
    return summary


def validate(path: PathLike, format: Optional[str] = None, *, allow_global: Iterable[str] = (),
             stub_unknown: bool = False) -> dict:
    """Checks `path` against every rule of its format (detected from the
    content unless `format` names it); the pickle policy (`allow_global`,
    `stub_unknown`) as in :func:`open`, so a global off the allow-list is an
    issue (code 704) unless the policy allows it. Returns a dict: path,
    format (None when nothing was recognised), layout (OneFlow's generation,
    "L1/E1", "P1", ...; None for other formats), valid, tensors (name, bytes,
    dtype, shape) and issues (code, name, severity, variable, message). A
    broken checkpoint gives valid=False and its issues; it does not raise."""
    return _core.validate(os.fspath(path), format, _global_names(allow_global), bool(stub_unknown))


def diff(a: PathLike, b: PathLike, *, rtol: float = 0.0, atol: float = 0.0, allow_global: Iterable[str] = (),
         stub_unknown: bool = False) -> dict:
    """Compares two checkpoints of any formats tensor by tensor, both read
    with the pickle policy (`allow_global`, `stub_unknown`) of :func:`open`.
    Returns {"equal", "only_in_a", "only_in_b", "changed": {name: reason}};
    values are equal within `atol` + `rtol` * |b| (exactly, by default)."""
    allowed = _global_names(allow_global)
    with open(a, allow_global=allowed, stub_unknown=stub_unknown) as left, \
            open(b, allow_global=allowed, stub_unknown=stub_unknown) as right:
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
