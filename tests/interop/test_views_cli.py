"""ckpt-convert --dtype/--include/--exclude/--rename against numpy, bit for bit.

numpy writes .npy files, ckpt-convert converts them to .npy with the views
applied, numpy reads them back. Casts are compared with numpy's astype (f16,
f32) and a bit-level bf16 reference on every f16 and bf16 bit pattern and
dense f32/f64 edge sets. NaNs follow spec/casting.md: sign and leading
payload kept, always quiet.

usage: test_views_cli.py CKPT_CONVERT   (run by meson test)
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CONVERT = sys.argv[1]
rng = np.random.default_rng(20240607)

# (exponent bits, mantissa bits, unsigned container) of each floating layout.
LAYOUTS = {
    "f16": (5, 10, np.uint16),
    "bf16": (8, 7, np.uint16),
    "f32": (8, 23, np.uint32),
    "f64": (11, 52, np.uint64),
}
NUMPY_FLOAT = {"f16": np.float16, "f32": np.float32, "f64": np.float64}


def convert(*args, expect=0):
    done = subprocess.run([CONVERT, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == expect, f"ckpt-convert {args}: rc {done.returncode}, stderr:\n{done.stderr}"
    return done.stderr


def save(directory, name, layout, bits):
    """Bit patterns of `layout` as an .npy numpy reads as that float type (bf16 as '<V2')."""
    directory.mkdir(exist_ok=True)
    bits = np.asarray(bits, dtype=LAYOUTS[layout][2])
    np.save(directory / f"{name}.npy", bits.view("V2" if layout == "bf16" else NUMPY_FLOAT[layout]))


def load_bits(path, layout):
    array = np.load(path)
    expected_dtype = np.dtype("V2") if layout == "bf16" else np.dtype(NUMPY_FLOAT[layout])
    assert array.dtype == expected_dtype, (path, array.dtype, expected_dtype)
    return array.view(LAYOUTS[layout][2])


def fields(bits, layout):
    exponent_bits, mantissa_bits, _ = LAYOUTS[layout]
    bits = bits.astype(np.uint64)
    sign = bits >> np.uint64(exponent_bits + mantissa_bits)
    exponent = (bits >> np.uint64(mantissa_bits)) & np.uint64((1 << exponent_bits) - 1)
    mantissa = bits & np.uint64((1 << mantissa_bits) - 1)
    return sign, exponent, mantissa


def is_nan(bits, layout):
    exponent_bits = LAYOUTS[layout][0]
    _, exponent, mantissa = fields(bits, layout)
    return (exponent == (1 << exponent_bits) - 1) & (mantissa != 0)


def expected_nan(bits, source, target):
    """spec/casting.md: same sign, quiet, leading payload bits kept."""
    sign, _, mantissa = fields(bits, source)
    target_exponent_bits, target_mantissa_bits, container = LAYOUTS[target]
    shift = LAYOUTS[source][1] - target_mantissa_bits
    payload = mantissa >> np.uint64(shift) if shift >= 0 else mantissa << np.uint64(-shift)
    quiet = np.uint64(1 << (target_mantissa_bits - 1))
    infinity = np.uint64(((1 << target_exponent_bits) - 1) << target_mantissa_bits)
    result = (sign << np.uint64(target_exponent_bits + target_mantissa_bits)) | infinity | quiet | payload
    return result.astype(container)


def bf16_from_f32_bits(bits):
    """Round to nearest even on the upper 16 bits of float32; NaN stays NaN, made quiet."""
    wide = bits.astype(np.uint64)
    rounded = ((wide + np.uint64(0x7FFF) + ((wide >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)) & np.uint64(0xFFFF)
    quiet_nan = (wide >> np.uint64(16)) | np.uint64(0x0040)
    return np.where(is_nan(bits, "f32"), quiet_nan, rounded).astype(np.uint16)


def f32_round_to_odd(doubles):
    """f64 -> f32 truncated, with the last bit set when inexact: rounding that
    to bf16 (>= 2 bits narrower) equals rounding the f64 to bf16 once."""
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = doubles.astype(np.float32)
    overshot = np.abs(nearest.astype(np.float64)) > np.abs(doubles)
    truncated = np.where(overshot, np.nextafter(nearest, np.float32(0)), nearest)
    inexact = truncated.astype(np.float64) != doubles
    return truncated.view(np.uint32) | inexact.astype(np.uint32)


def reference(bits, source, target):
    """The expected target bits for finite and infinite inputs (NaNs are checked by rule)."""
    if target == "bf16":
        if source == "f64":
            return bf16_from_f32_bits(f32_round_to_odd(bits.view(np.float64)))
        as_f32 = bits.view(np.float32) if source == "f32" else widen_to_f32(bits, source)
        return bf16_from_f32_bits(as_f32.view(np.uint32))
    values = bits.view(NUMPY_FLOAT[source]) if source != "bf16" else widen_to_f32(bits, source)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(NUMPY_FLOAT[target]).view(LAYOUTS[target][2])


def widen_to_f32(bits, source):
    if source == "bf16":
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return bits.view(np.float16).astype(np.float32)


def check_cast(name, source_bits, source, target, actual):
    nan = is_nan(source_bits, source)
    expected = reference(source_bits, source, target)
    mismatch = np.flatnonzero((actual != expected) & ~nan)
    assert mismatch.size == 0, (
        f"{name} {source}->{target}: {mismatch.size} values differ; first: input {source_bits[mismatch[0]]:#x}, "
        f"expected {expected[mismatch[0]]:#x}, got {actual[mismatch[0]]:#x}")
    if nan.any():
        assert np.array_equal(actual[nan], expected_nan(source_bits[nan], source, target)), f"{name}: NaN rule"
        if target != "bf16":
            numpy_nan = expected[nan]
            assert is_nan(numpy_nan, target).all(), f"{name}: numpy's cast of a NaN is NaN too"
            assert np.array_equal(fields(numpy_nan, target)[0], fields(actual[nan], target)[0]), f"{name}: NaN sign"


def every_pattern_16():
    return np.arange(1 << 16, dtype=np.uint16)


def f32_edges():
    """Signed zeros, subnormals, min normal, max, Inf, NaNs, f16 and bf16
    halfway cases and their neighbours, the f16 overflow boundary, and
    random patterns over the whole range."""
    special = [0x00000000, 0x00000001, 0x00000002, 0x007FFFFF, 0x00800000, 0x00800001, 0x7F7FFFFF,
               0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x7F800000, 0x7F800001, 0x7FA00000, 0x7FC00000,
               0x7FFFFFFF, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x477FE000, 0x477FEFFF,
               0x477FF000, 0x33000000, 0x33000001, 0x387FC000, 0x387FE000]
    halfway = []
    for exponent in range(-25, 16):  # every f16 binade and the subnormal range below it
        ulp = 2.0 ** max(exponent - 10, -24)
        for k in (0, 1, 2, 3, 1022, 1023):
            tie = (2.0 ** exponent if exponent >= -14 else 0.0) + (k + 0.5) * ulp
            halfway.append(np.float32(tie).view(np.uint32))
    halfway = np.array(halfway, dtype=np.uint32)
    neighbours = np.concatenate([halfway - np.uint32(1), halfway, halfway + np.uint32(1)])
    positive = np.concatenate([np.array(special, dtype=np.uint32), neighbours,
                               rng.integers(0, 1 << 31, size=200_000, dtype=np.uint32)])
    return np.concatenate([positive, positive | np.uint32(0x80000000)])


def f64_edges():
    special = np.array([0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, np.inf, 65504.0, 65519.99,
                        65520.0, 2.0 ** -24, 2.0 ** -25, 1.0 + 2.0 ** -11, 1.0 + 2.0 ** -8 + 2.0 ** -30,
                        3.4028234663852886e38, 3.4028235677973366e38, 1.1754943508222875e-38, 1.401298464324817e-45,
                        7.006492321624085e-46, 0.1], dtype=np.float64).view(np.uint64)
    nans = np.array([0x7FF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000, 0x7FFFFFFFFFFFFFFF],
                    dtype=np.uint64)
    f32_finite = f32_edges()[:2000]
    f32_finite = f32_finite[~is_nan(f32_finite, "f32")].view(np.float32).astype(np.float64).view(np.uint64)
    scaled = rng.standard_normal(100_000) * 10.0 ** rng.integers(-50, 50, size=100_000)
    positive = np.concatenate([special, nans, f32_finite, scaled.view(np.uint64)])
    return np.concatenate([positive, positive | np.uint64(1 << 63)])


def test_casts(work):
    inputs = {
        "f16": every_pattern_16(),
        "bf16": every_pattern_16(),
        "f32": f32_edges(),
        "f64": f64_edges(),
    }
    source = work / "floats"
    for layout, bits in inputs.items():
        save(source, f"from_{layout}", layout, bits)
    save(source, "counts", "f32", np.array([], dtype=np.uint32))  # empty: size 0 either way
    np.save(source / "steps.npy", np.array([[-3, 7], [2**40, 0]], dtype=np.int64))
    np.save(source / "mask.npy", np.array([True, False]))
    for target in LAYOUTS:
        destination = work / f"as_{target}"
        convert(source, destination, "--to", "npy", "--v2-as-bfloat16", "--dtype", target)
        for layout, bits in inputs.items():
            actual = load_bits(destination / f"from_{layout}.npy", target)
            if layout == target:
                assert np.array_equal(actual, bits), f"{layout}: same type passes through untouched"
            else:
                check_cast(f"from_{layout}", bits, layout, target, actual)
        assert load_bits(destination / "counts.npy", target).size == 0
        assert np.array_equal(np.load(destination / "steps.npy"), np.array([[-3, 7], [2**40, 0]], dtype=np.int64))
        assert np.load(destination / "mask.npy").tolist() == [True, False]
    print(f"--dtype: {sum(b.size for b in inputs.values())} values per target, bit-exact against numpy")


def test_filter_and_rename(work):
    source = work / "model"
    names = ["decoder.bias", "decoder.weight", "encoder.layer1.bias", "encoder.layer1.weight",
             "encoder.layer2.weight", "step"]
    arrays = {name: np.arange(index + 1, dtype=np.float32) * (index + 0.5) for index, name in enumerate(names)}
    source.mkdir()
    for name, array in arrays.items():
        np.save(source / f"{name}.npy", array)

    out = work / "filtered"
    convert(source, out, "--to", "npy", "--include", "encoder.*", "--include", "step", "--exclude", "*.bias",
            "--rename", "encoder.layer1.=first.", "--rename", "encoder.=enc.", "--dtype", "f16")
    written = sorted(p.stem for p in out.glob("*.npy"))
    assert written == ["enc.layer2.weight", "first.weight", "step"], written
    for new, old in [("enc.layer2.weight", "encoder.layer2.weight"), ("first.weight", "encoder.layer1.weight"),
                     ("step", "step")]:
        loaded = np.load(out / f"{new}.npy")
        assert loaded.dtype == np.float16 and np.array_equal(loaded, arrays[old].astype(np.float16)), new

    out = work / "prefixed"
    convert(source, out, "--to", "npy", "--exclude", "decoder.*", "--exclude", "step", "--rename", "=model.")
    assert sorted(p.stem for p in out.glob("*.npy")) == ["model.encoder.layer1.bias", "model.encoder.layer1.weight",
                                                          "model.encoder.layer2.weight"]
    assert np.array_equal(np.load(out / "model.encoder.layer1.bias.npy"), arrays["encoder.layer1.bias"])

    stderr = convert(source, work / "clash", "--rename", "decoder.=x.", "--rename", "encoder.layer1.=x.", expect=1)
    assert "E213" in stderr and "'decoder.bias'" in stderr and "'encoder.layer1.bias'" in stderr, stderr
    assert not (work / "clash").exists()
    stderr = convert(source, work / "typo", "--include", "encodr.*", expect=2)
    assert "include pattern 'encodr.*' matches none of the 6 tensors" in stderr, stderr
    assert "--dtype" in convert(source, work / "bad", "--dtype", "int8", expect=2)
    assert "OLD=NEW" in convert(source, work / "bad", "--rename", "noequals", expect=2)
    help_text = subprocess.run([CONVERT, "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--dtype", "--include", "--exclude", "--rename"):
        assert option in help_text, option
    print("--include/--exclude/--rename: kept, renamed and cast tensors read back by numpy; clashes and typos refused")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="ckpt-views-") as tmp:
        work = Path(tmp)
        test_casts(work)
        test_filter_and_rename(work)
    print("all view checks passed")
