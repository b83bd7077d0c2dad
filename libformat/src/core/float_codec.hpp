// Bit-level conversions between the binary floating formats OneFlow stores
// (f16, bf16, f32, f64) and double. Every value of the narrower formats is
// exactly a double, so decoding is exact and encoding rounds once: casting
// between any two formats through double is correctly rounded.
// The rules (rounding, NaN, Inf, overflow) are spec/casting.md.
#pragma once

#include <cstdint>

namespace ckpt::detail {

// An IEEE 754 binary format: 1 sign bit, then exponent, then mantissa.
struct FloatLayout {
  int exponent_bits;
  int mantissa_bits;
};

inline constexpr FloatLayout kHalfLayout{5, 10};
inline constexpr FloatLayout kBFloat16Layout{8, 7};
inline constexpr FloatLayout kFloatLayout{8, 23};
inline constexpr FloatLayout kDoubleLayout{11, 52};

// The exact value of `bits`; a NaN keeps its sign and payload, made quiet.
double float_bits_to_double(std::uint64_t bits, FloatLayout layout);

// `value` rounded to nearest, ties to even. Finite values beyond the
// largest finite value become Inf of their sign; NaN stays NaN with its
// sign and the leading payload bits that fit, quiet bit set.
// For layouts narrower than double only.
std::uint64_t double_to_float_bits(double value, FloatLayout layout);

}  // namespace ckpt::detail
