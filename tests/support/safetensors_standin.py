"""A minimal safetensors writer written from the format description,
independent of ckpt's: the tests' stand-in peer."""
import json
import struct

import numpy as np

DTYPE_NAMES = {np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
               np.dtype(np.int16): "I16", np.dtype(np.uint16): "U16", np.dtype(np.int32): "I32",
               np.dtype(np.uint32): "U32", np.dtype(np.int64): "I64", np.dtype(np.uint64): "U64",
               np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
               np.dtype(np.complex64): "C64"}


def save(tensors, path):
    """tensors: name -> numpy array, or name -> (safetensors dtype, array of matching bytes)."""
    header, offset, blobs = {}, 0, []
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, array = value
        else:
            array = np.asarray(value)
            dtype = DTYPE_NAMES[array.dtype.newbyteorder("=")]
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
