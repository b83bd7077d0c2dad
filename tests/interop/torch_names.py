"""The dotted tensor names ckpt's readers give a torch object, for the interop tests."""
import torch


def flat(obj, prefix=""):
    """Keys and indices joined by '.'; a bare tensor is 'data'."""
    if isinstance(obj, torch.Tensor):
        return {prefix or "data": obj}
    out = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    for key, value in items:
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
