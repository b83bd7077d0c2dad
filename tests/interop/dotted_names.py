"""Helpers the interop scripts share, whatever interpreter runs them (the system's, OneFlow's venv)."""


def flatten(obj, is_tensor, prefix=""):
    """Tensors by the dotted names our readers give: keys and indices joined with '.', a bare tensor 'data'."""
    if is_tensor(obj):
        return {prefix or "data": obj}
    out = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    for key, value in items:
        out.update(flatten(value, is_tensor, f"{prefix}.{key}" if prefix else str(key)))
    return out


def assert_arrays_equal(got, expected, what):
    """Same names, and per name the same dtype, shape and bytes (numpy arrays)."""
    assert sorted(got) == sorted(expected), f"{what}: names {sorted(got)} vs {sorted(expected)}"
    for name, array in expected.items():
        value = got[name]
        assert value.dtype == array.dtype and value.shape == array.shape, \
            f"{what} {name}: {value.dtype}{value.shape} vs {array.dtype}{array.shape}"
        assert value.tobytes() == array.tobytes(), f"{what} {name}: values differ"
