"""Checkpoint: an open checkpoint as a read-only Mapping of numpy arrays."""
from collections.abc import Iterator, Mapping

import numpy as np

from . import _core
from ._dtypes import to_numpy
from ._object import Global, Stub

_NOT_BUILT = object()


def _array(data: _core.Bytes, dtype: str, shape: list) -> np.ndarray:
    return np.frombuffer(data, dtype=to_numpy(dtype)).reshape(tuple(shape))


class TensorSlice:
    """Rows of one tensor, read on indexing: ``ckpt.get_slice(name)[a:b]``
    reads only rows a..b-1 (the first axis) from the file."""

    def __init__(self, reader: _core.Reader, description: _core.TensorDescription):
        self._reader = reader
        self._description = description
        self.shape = tuple(description.shape)
        self.dtype = to_numpy(description.dtype)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if not self.shape:
            raise IndexError("a scalar tensor has no rows to slice")
        rows = self.shape[0]
        if isinstance(key, (int, np.integer)):
            index = int(key) + rows if key < 0 else int(key)
            if not 0 <= index < rows:
                raise IndexError(f"row {key} is out of range for {rows} rows")
            return self._rows(index, index + 1)[0][rest]
        if not isinstance(key, slice):
            raise TypeError("get_slice takes an integer or a slice on the first axis")
        indices = range(*key.indices(rows))
        if not indices:
            return self._rows(0, 0)[(slice(None),) + rest]
        low, high = min(indices), max(indices) + 1
        block = self._rows(low, high)
        if indices.step != 1:
            block = block[[index - low for index in indices]]
        return block[(slice(None),) + rest]

    def _rows(self, start: int, stop: int) -> np.ndarray:
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        data = self._reader.read_range(self._description.name, start * row_bytes, (stop - start) * row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start,) + self.shape[1:])


class Checkpoint(Mapping):
    """A checkpoint opened with :func:`ckptio.open`: ``ckpt[name]`` is a
    read-only numpy array, a memory map of the file where the file holds the
    bytes as they are (OneFlow ``out``, npy, stored npz members, safetensors,
    torch records) at an offset aligned for the dtype, a copy otherwise
    (deflated npz members, misaligned or strided tensors). Nothing is read before
    ``ckpt[name]``. Arrays keep the file's mapping alive: they stay valid after
    :meth:`close` and after the file is replaced by a crash-safe save."""

    def __init__(self, reader: _core.Reader):
        self._reader = reader
        self._tensors = {t.name: t for t in reader.tensors()}
        self._object = _NOT_BUILT

    @property
    def format(self) -> str:
        """The format read: "oneflow", "safetensors", "npz", "torch", ..."""
        return self._reader.format

    @property
    def layout(self) -> "str | None":
        """The generation within the format where it has several: OneFlow
        "L1/E1", "L0", "G1", "P1"; torch "zip", "legacy" or "torchscript";
        None for formats with one layout (safetensors, npy, npz)."""
        return self._reader.layout or None

    @property
    def path(self) -> str:
        return self._reader.path

    @property
    def metadata(self) -> dict:
        """The file's text metadata: safetensors' ``__metadata__`` (a sharded
        set's first shard's), e.g. {"format": "pt"}; {} for other formats."""
        return dict(self._reader.metadata)

    @property
    def object(self):
        """The whole pickled object of a pickle format (torch zip, legacy and
        TorchScript; OneFlow P1 and single files), None for the flat formats.
        Python's dict/OrderedDict/list/tuple/set/int/float/str/bytes/bool/None;
        tensors as the numpy arrays ``ckpt[name]`` gives (memory maps where the
        file allows, so nothing is read before an array is touched); objects of
        allowed or unknown classes (``allow_global``, ``stub_unknown``) as
        :class:`Stub`, classes used as values as :class:`Global`; numpy arrays,
        scalars and dtypes in the pickle as numpy's. Built on first use, then
        kept. It is the file's object: views of :func:`ckptio.open` (``dtype``,
        ``include``, ``rename``) do not change it."""
        if self._object is _NOT_BUILT:
            self._object = self._reader.object(_array, Stub, Global)
        return self._object

    @property
    def unsupported(self) -> list:
        """Members of types ckpt cannot represent (an npz's ``|S3`` or ``<f16``):
        (name, descr, reason) tuples; they are not in the mapping."""
        return self._reader.unsupported()

    def __getitem__(self, name: str) -> np.ndarray:
        description = self._tensors[name]
        return _array(self._reader.load(name), description.dtype, description.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def is_mapped(self, name: str) -> bool:
        """Whether ``self[name]`` is a memory map of the file (no copy)."""
        self._tensors[name]
        return self._reader.load(name).mapped

    def get_slice(self, name: str) -> TensorSlice:
        """A lazy handle on one tensor: index it to read some rows only."""
        return TensorSlice(self._reader, self._tensors[name])

    def close(self) -> None:
        """Closes the files; arrays already taken stay valid."""
        self._reader.close()

    @property
    def closed(self) -> bool:
        return self._reader.closed

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ckptio.Checkpoint {self.format} {self.path!r}, {len(self)} tensors>"
