"""Read a tensor of a checkpoint through the ckpt C API with ctypes and see
it as a numpy array without copying: the array's memory is the C API's
read-only mapping of the file.

    python3 numpy_view.py /path/to/libckpt.so CHECKPOINT TENSOR
"""
import ctypes
import sys

import numpy as np

# OneFlow dtype numbers (ckpt.h CKPT_DTYPE_*) -> numpy; bfloat16 has no numpy type.
NUMPY_DTYPES = {2: np.float32, 3: np.float64, 4: np.int8, 5: np.int32, 6: np.int64, 7: np.uint8,
                9: np.float16, 12: np.bool_, 13: np.uint16, 14: np.uint32, 15: np.uint64, 17: np.int16,
                20: np.complex64, 21: np.complex128}


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_size_t),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("nbytes", ctypes.c_uint64)]


def load_library(path):
    lib = ctypes.CDLL(path)
    lib.ckpt_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.ckpt_close.argtypes = [ctypes.c_void_p]
    lib.ckpt_tensor_find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(TensorInfo)]
    lib.ckpt_map.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.ckpt_view_data.argtypes = [ctypes.c_void_p]
    lib.ckpt_view_data.restype = ctypes.c_void_p
    lib.ckpt_view_size.argtypes = [ctypes.c_void_p]
    lib.ckpt_view_size.restype = ctypes.c_uint64
    lib.ckpt_view_is_mapped.argtypes = [ctypes.c_void_p]
    lib.ckpt_view_free.argtypes = [ctypes.c_void_p]
    lib.ckpt_last_error.restype = ctypes.c_char_p
    return lib


class MappedTensor:
    """A read-only numpy array over a ckpt view; the view is freed when
    neither this object nor the array is referenced any more."""

    def __init__(self, lib, checkpoint, name):
        self._lib = lib
        self._view = ctypes.c_void_p()
        reader = ctypes.c_void_p()
        if lib.ckpt_open(checkpoint.encode(), None, ctypes.byref(reader)) != 0:
            raise OSError(lib.ckpt_last_error().decode())
        try:
            info = TensorInfo()
            if lib.ckpt_tensor_find(reader, name.encode(), ctypes.byref(info)) != 0 or \
                    lib.ckpt_map(reader, name.encode(), ctypes.byref(self._view)) != 0:
                raise OSError(lib.ckpt_last_error().decode())
            shape = tuple(info.shape[i] for i in range(info.ndim))
            dtype = NUMPY_DTYPES[info.dtype]
        finally:
            lib.ckpt_close(reader)  # the view outlives the reader
        self.address = lib.ckpt_view_data(self._view)
        self.mapped = bool(lib.ckpt_view_is_mapped(self._view))
        size = lib.ckpt_view_size(self._view)
        raw = (ctypes.c_char * size).from_address(self.address) if size else bytearray()
        if size:
            raw.owner = self  # the array's base keeps the view mapped
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        self.array.flags.writeable = False

    def __del__(self):
        if self._view:
            self._lib.ckpt_view_free(self._view)


if __name__ == "__main__":
    library, checkpoint, tensor_name = sys.argv[1:4]
    tensor = MappedTensor(load_library(library), checkpoint, tensor_name)
    array = tensor.array
    print(f"{tensor_name}: {array.dtype} {list(array.shape)}, mapped={tensor.mapped}, "
          f"zero-copy={array.ctypes.data == tensor.address}")
    print(f"first values: {array.reshape(-1)[:4].tolist()}")
