"""FP8 casts judged by ml_dtypes (from pip): every one of the 256 patterns of
F8_E4M3, F8_E5M2 and F8_E8M0 cast by `ckpt-convert --dtype` to f64, f32,
f16, bf16 and the other FP8 types, and a sweep of f32, f16, bf16 and f64
inputs (every f16 and bf16 pattern; f32 and f64 edges, subnormals, halfway
cases, NaN, +-Inf, overflow, random values) cast to each FP8 type, equal bit
for bit to numpy's astype with ml_dtypes' types (E8M0 <-> E4M3/E5M2, which
ml_dtypes does not cast directly, through f32, where every FP8 value is exact). NaNs included: ml_dtypes
gives FP8 NaNs no payload, and so does ckpt.

The files are safetensors written byte by byte here (header + data, as the
format's spec says), so that the judge is ml_dtypes alone. The peer lives in
the venv scripts/make-hf-venv.sh creates; without it the test is skipped (77).

usage: test_fp8_casts.py CKPT_CONVERT   (run by meson test)
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from hf_venv import run_in_hf_venv  # noqa: E402

run_in_hf_venv("import ml_dtypes, numpy")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

CONVERT = sys.argv[1]

# safetensors dtype -> (numpy type, unsigned integer view of the same width)
TYPES = {
    "F8_E4M3": (ml_dtypes.float8_e4m3fn, np.uint8),
    "F8_E5M2": (ml_dtypes.float8_e5m2, np.uint8),
    "F8_E8M0": (ml_dtypes.float8_e8m0fnu, np.uint8),
    "BF16": (ml_dtypes.bfloat16, np.uint16),
    "F16": (np.float16, np.uint16),
    "F32": (np.float32, np.uint32),
    "F64": (np.float64, np.uint64),
}
FP8 = ["F8_E4M3", "F8_E5M2", "F8_E8M0"]
WIDE = ["F64", "F32", "F16", "BF16"]


def write_safetensors(path, dtype, bits):
    """One tensor "x" of `dtype` holding the little-endian integers `bits`."""
    data = np.ascontiguousarray(bits, dtype=np.dtype(TYPES[dtype][1]).newbyteorder("<")).tobytes()
    header = json.dumps({"x": {"dtype": dtype, "shape": [len(bits)], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def read_safetensors(path):
    """(dtype, bits) of the one tensor "x" of `path`."""
    raw = path.read_bytes()
    (size,) = struct.unpack_from("<Q", raw)
    entry = json.loads(raw[8:8 + size])["x"]
    begin, end = entry["data_offsets"]
    bits = np.frombuffer(raw[8 + size + begin:8 + size + end], dtype=np.dtype(TYPES[entry["dtype"]][1]).newbyteorder("<"))
    return entry["dtype"], bits


def bits_of(values, view):
    return np.asarray(values).view(view).astype(np.uint64)


def f32_sweep():
    """Every sign and exponent with mantissas that hit FP8's rounding edges, plus random patterns."""
    mantissas = [0, 1, 0x7FFFFF, 0x400000, 0x3FFFFF, 0x400001, 0x200000, 0x1FFFFF, 0x200001, 0x100000, 0x0FFFFF,
                 0x100001, 0x080000, 0x07FFFF, 0x080001, 0x600000, 0x500000, 0x300000, 0x700000, 0x680000, 0x580000]
    mantissas += list(range(0, 1 << 23, 1 << 16))  # every pattern of the top 7 mantissa bits
    exponents = np.arange(256, dtype=np.uint32)
    grid = ((exponents[:, None] << 23) | np.array(mantissas, dtype=np.uint32)[None, :]).ravel()
    rng = np.random.default_rng(8)
    randoms = rng.integers(0, 1 << 31, size=200_000, dtype=np.uint32)
    magnitudes = np.concatenate([grid, randoms, np.array([0x7FC00000, 0x7FA00000, 0x7F800001], dtype=np.uint32)])
    return np.concatenate([magnitudes, magnitudes | np.uint32(0x80000000)])


def f64_sweep():
    """f64 values around every FP8 value and halfway point, with offsets below f32's precision (where rounding
    through f32 first, as torch and ml_dtypes do, differs from rounding once), specials and random values."""
    grids = [np.arange(256, dtype=np.uint8).view(TYPES[t][0]).astype(np.float64) for t in FP8]
    points = np.unique(np.concatenate([g[np.isfinite(g)] for g in grids]))
    points = np.concatenate([points, (points[1:] + points[:-1]) / 2])
    offsets = np.array([0, 2.0**-30, -2.0**-30, 2.0**-40, -2.0**-40, 2.0**-20, -2.0**-20])
    values = (points[:, None] * (1 + offsets[None, :])).ravel()
    rng = np.random.default_rng(9)
    values = np.concatenate([values, rng.standard_normal(50_000) * 100, 2.0 ** rng.uniform(-140, 130, 50_000),
                             [0.0, np.inf, np.nan, 1e300, 1e-300, 2.0**-149, 2.0**-150, 3.5e38, 3.4e38]])
    return np.concatenate([values, -values]).view(np.uint64)


class Fp8Casts(unittest.TestCase):
    def setUp(self):
        self.temp = tempfile.TemporaryDirectory()
        self.dir = Path(self.temp.name)

    def tearDown(self):
        self.temp.cleanup()

    def cast(self, source_dtype, bits, target_dtype):
        """ckpt-convert --dtype's bits for `bits` of `source_dtype`."""
        source = self.dir / f"{source_dtype}.safetensors"
        target = self.dir / f"{source_dtype}-{target_dtype}.safetensors"
        write_safetensors(source, source_dtype, bits)
        done = subprocess.run([CONVERT, "--quiet", "--dtype", target_dtype, source, target], capture_output=True,
                              text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        stored, out = read_safetensors(target)
        self.assertEqual(stored, target_dtype)
        return out.astype(np.uint64)

    def expect_equal(self, source_dtype, bits, target_dtype):
        source_type, source_view = TYPES[source_dtype]
        target_type, target_view = TYPES[target_dtype]
        values = np.asarray(bits, dtype=source_view).view(source_type)
        with np.errstate(all="ignore"):
            if np.can_cast(values.dtype, target_type, casting="unsafe"):
                expected = bits_of(values.astype(target_type), target_view)
            else:  # E8M0 <-> E4M3/E5M2: ml_dtypes has no direct cast; its values through f32 (exact from FP8)
                expected = bits_of(values.astype(np.float32).astype(target_type), target_view)
        got = self.cast(source_dtype, bits, target_dtype)
        wrong = np.nonzero(got != expected)[0]
        self.assertEqual(len(wrong), 0, f"{source_dtype} -> {target_dtype}: {len(wrong)} of {len(bits)} differ, "
                         + ", ".join(f"{int(bits[i]):#x} -> {int(got[i]):#x} (ml_dtypes {int(expected[i]):#x})"
                                     for i in wrong[:8]))
        return len(bits)

    def test_every_fp8_pattern_to_every_floating_type(self):
        patterns = np.arange(256, dtype=np.uint8)
        for source in FP8:
            for target in WIDE + [t for t in FP8 if t != source]:
                with self.subTest(source=source, target=target):
                    self.expect_equal(source, patterns, target)

    def test_every_f16_and_bf16_pattern_to_fp8(self):
        patterns = np.arange(1 << 16, dtype=np.uint16)
        for source in ["F16", "BF16"]:
            for target in FP8:
                with self.subTest(source=source, target=target):
                    self.expect_equal(source, patterns, target)

    def test_f32_sweep_to_fp8(self):
        bits = f32_sweep()
        for target in FP8:
            with self.subTest(target=target):
                self.assertGreater(self.expect_equal("F32", bits, target), 470_000)

    def test_f64_sweep_to_fp8(self):
        bits = f64_sweep()
        for target in FP8:
            with self.subTest(target=target):
                self.expect_equal("F64", bits, target)

    def test_known_values(self):
        # Spot checks that do not lean on ml_dtypes: the rules of spec/casting.md.
        f32 = np.array([448, 464, 465, 480, np.inf, -np.inf, 2.0**-9, 2.0**-10, 57344, 61440], dtype=np.float32)
        self.assertEqual(list(self.cast("F32", f32.view(np.uint32), "F8_E4M3")[:8]),
                         [0x7E, 0x7E, 0x7F, 0x7F, 0x7F, 0xFF, 0x01, 0x00])
        self.assertEqual(list(self.cast("F32", f32.view(np.uint32), "F8_E5M2")[8:]), [0x7B, 0x7C])
        e8m0 = np.array([1, 0.75, 1.5, 0, -1, 2.0**-127, 2.0**127], dtype=np.float32)
        self.assertEqual(list(self.cast("F32", e8m0.view(np.uint32), "F8_E8M0")), [0x7F, 0x7F, 0x80, 0xFF, 0xFF, 0, 0xFE])

    def test_integer_tensors_are_not_cast_to_fp8(self):
        source = self.dir / "ints.safetensors"
        data = np.arange(5, dtype="<i4").tobytes()
        header = json.dumps({"x": {"dtype": "I32", "shape": [5], "data_offsets": [0, len(data)]}}).encode()
        header += b" " * (-len(header) % 8)
        source.write_bytes(struct.pack("<Q", len(header)) + header + data)
        target = self.dir / "ints-fp8.safetensors"
        subprocess.run([CONVERT, "--quiet", "--dtype", "float8_e4m3fn", source, target], check=True)
        raw = target.read_bytes()
        (size,) = struct.unpack_from("<Q", raw)
        self.assertEqual(json.loads(raw[8:8 + size])["x"]["dtype"], "I32")
        self.assertEqual(raw[8 + size:], data)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
