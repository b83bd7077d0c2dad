// Bit-level conversions between the binary floating formats ckpt stores
// (f16, bf16, f32, f64 and the OCP 8-bit floats) and double. Every value of
// the narrower formats is exactly a double, so decoding is exact and
// encoding rounds once: casting between any two of f16, bf16, f32 and f64
// through double is correctly rounded. The 8-bit floats follow torch and
// ml_dtypes instead, which convert through f32 (see double_to_float_bits).
// The rules (rounding, NaN, Inf, overflow) are spec/casting.md.
#pragma once

#include <cstdint>
#include <optional>

#include "ckpt/format/dtype.hpp"

namespace ckpt::detail {

// How a format spends its all-ones exponent and its sign.
enum class FloatSpecials {
  kIeee,           // IEEE 754: Inf and NaNs with payloads (f16, bf16, f32, f64)
  kIeeeBareNan,    // IEEE-like, but NaNs carry no payload (FP8 E5M2, as ml_dtypes)
  kNanOnlyAllOnes, // no Inf; only S.1111.111 is NaN, overflow becomes NaN (FP8 E4M3FN)
  kExponentOnly,   // no sign, no mantissa, no zero: 2^(e-bias), all ones is NaN (FP8 E8M0FNU)
};

// A binary floating format: sign bit (unless kExponentOnly), then exponent,
// then mantissa.
struct FloatLayout {
  int exponent_bits;
  int mantissa_bits;
  FloatSpecials specials = FloatSpecials::kIeee;
};

inline constexpr FloatLayout kHalfLayout{5, 10};
inline constexpr FloatLayout kBFloat16Layout{8, 7};
inline constexpr FloatLayout kFloatLayout{8, 23};
inline constexpr FloatLayout kDoubleLayout{11, 52};
inline constexpr FloatLayout kFloat8E4M3Layout{4, 3, FloatSpecials::kNanOnlyAllOnes};
inline constexpr FloatLayout kFloat8E5M2Layout{5, 2, FloatSpecials::kIeeeBareNan};
inline constexpr FloatLayout kFloat8E8M0Layout{8, 0, FloatSpecials::kExponentOnly};

// The layout of a floating dtype; nullopt for the others.
std::optional<FloatLayout> float_layout(DType dtype);

// The exact value of `bits`; a NaN keeps its sign and payload, made quiet
// (an 8-bit NaN has no payload: it becomes the default quiet NaN of its sign).
double float_bits_to_double(std::uint64_t bits, FloatLayout layout);

// `value` rounded to nearest, ties to even. Finite values beyond the
// largest finite value become Inf of their sign; NaN stays NaN with its
// sign and the leading payload bits that fit, quiet bit set.
// For layouts narrower than double only. The 8-bit layouts first round
// `value` to f32 (as torch and ml_dtypes do) and then: E5M2 as above but
// NaN without payload; E4M3FN makes Inf, NaN and overflow NaN of their sign;
// E8M0 makes NaN of zero, negatives, Inf and overflow, rounds ties up and
// clamps values at or below 2^-127 to 2^-127 (ml_dtypes' rules).
std::uint64_t double_to_float_bits(double value, FloatLayout layout);

}  // namespace ckpt::detail
