"""ckpt's data type names (spec/dtypes.md) and numpy dtypes, both ways.
bfloat16 is ml_dtypes.bfloat16, imported only when such a tensor appears."""
import numpy as np

_NUMPY = {
    "kFloat": "<f4", "kDouble": "<f8", "kFloat16": "<f2",
    "kInt8": "i1", "kInt16": "<i2", "kInt32": "<i4", "kInt64": "<i8",
    "kUInt8": "u1", "kUInt16": "<u2", "kUInt32": "<u4", "kUInt64": "<u8",
    "kBool": "?", "kComplex64": "<c8", "kComplex128": "<c16",
}
_CKPT = {np.dtype(numpy_name): ckpt_name for ckpt_name, numpy_name in _NUMPY.items()}


def _bfloat16() -> np.dtype:
    import ml_dtypes  # a dependency of ckptio; loaded only for bfloat16

    return np.dtype(ml_dtypes.bfloat16)


def to_numpy(ckpt_name: str) -> np.dtype:
    """The numpy dtype of a ckpt type name ("kFloat" -> float32)."""
    if ckpt_name == "kBFloat16":
        return _bfloat16()
    try:
        return np.dtype(_NUMPY[ckpt_name])
    except KeyError:
        from ._core import CkptError

        raise CkptError(f"data type {ckpt_name} has no numpy equivalent") from None


def to_ckpt(dtype: np.dtype) -> str:
    """The ckpt type name of a numpy dtype (either byte order)."""
    dtype = np.dtype(dtype)
    if dtype.name == "bfloat16":
        return "kBFloat16"
    try:
        return _CKPT[dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype]
    except KeyError:
        from ._core import CkptError

        raise CkptError(f"numpy dtype {dtype} cannot be stored in a checkpoint") from None
