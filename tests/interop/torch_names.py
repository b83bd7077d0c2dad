"""The dotted tensor names ckpt's readers give a torch object, for the interop tests."""
import torch

from dotted_names import flatten


def flat(obj):
    """Keys and indices joined by '.'; a bare tensor is 'data'."""
    return flatten(obj, lambda value: isinstance(value, torch.Tensor))
