#include "core/float_codec.hpp"

#include <bit>
#include <cmath>

namespace ckpt::detail {
namespace {

constexpr int kDoubleMantissaBits = 52;
constexpr int kDoubleBias = 1023;
constexpr std::uint64_t kDoubleQuietNan = 0x7FF8000000000000ull;
constexpr std::uint64_t kDoubleSignBit = std::uint64_t{1} << 63;

constexpr std::uint64_t low_bits(int count) { return (std::uint64_t{1} << count) - 1; }

double e8m0_to_double(std::uint64_t bits) {
  if (bits == low_bits(8)) return std::bit_cast<double>(kDoubleQuietNan);
  return std::ldexp(1.0, static_cast<int>(bits) - 127);
}

// ml_dtypes' float8_e8m0fnu from f32 bits: exponent plus one when the
// mantissa is at least half (ties up), everything up to 2^-127 clamped to the
// smallest value 2^-127, and NaN for what it cannot hold.
std::uint64_t float_to_e8m0(float value) {
  constexpr std::uint64_t kNan = 0xFF;
  if (!(value > 0.0f) || std::isinf(value)) return kNan;  // NaN, zeros, negatives, Inf
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if (bits <= 0x00400000u) return 0;  // at or below 2^-127
  const std::uint64_t exponent = (bits >> 23) + ((bits & 0x7FFFFFu) >= 0x400000u ? 1 : 0);
  return exponent > kNan ? kNan : exponent;
}

}  // namespace

std::optional<FloatLayout> float_layout(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return kHalfLayout;
    case DType::kBFloat16: return kBFloat16Layout;
    case DType::kFloat: return kFloatLayout;
    case DType::kDouble: return kDoubleLayout;
    case DType::kFloat8E4M3: return kFloat8E4M3Layout;
    case DType::kFloat8E5M2: return kFloat8E5M2Layout;
    case DType::kFloat8E8M0: return kFloat8E8M0Layout;
    default: return std::nullopt;
  }
}

double float_bits_to_double(std::uint64_t bits, FloatLayout layout) {
  if (layout.specials == FloatSpecials::kExponentOnly) return e8m0_to_double(bits);
  const int m = layout.mantissa_bits;
  const int e = layout.exponent_bits;
  const bool negative = ((bits >> (e + m)) & 1) != 0;
  const std::uint64_t exponent = (bits >> m) & low_bits(e);
  const std::uint64_t mantissa = bits & low_bits(m);
  const std::uint64_t sign_bit = negative ? kDoubleSignBit : 0;
  const bool all_ones = exponent == low_bits(e);
  if (layout.specials == FloatSpecials::kNanOnlyAllOnes) {
    // The all-ones exponent holds normal numbers, except the one NaN.
    if (all_ones && mantissa == low_bits(m)) return std::bit_cast<double>(sign_bit | kDoubleQuietNan);
  } else if (all_ones) {
    if (mantissa != 0 && layout.specials == FloatSpecials::kIeeeBareNan) {
      return std::bit_cast<double>(sign_bit | kDoubleQuietNan);
    }
    // Inf, or NaN with the payload moved to the top of double's mantissa.
    std::uint64_t payload = mantissa << (kDoubleMantissaBits - m);
    if (mantissa != 0) payload |= std::uint64_t{1} << (kDoubleMantissaBits - 1);
    return std::bit_cast<double>(sign_bit | (low_bits(11) << kDoubleMantissaBits) | payload);
  }
  const int bias = static_cast<int>(low_bits(e - 1));
  // Subnormals have exponent field 0 but scale like field 1, without the implicit bit.
  const std::uint64_t significand = exponent == 0 ? mantissa : mantissa | (std::uint64_t{1} << m);
  const int scale = (exponent == 0 ? 1 : static_cast<int>(exponent)) - bias - m;
  const double magnitude = std::ldexp(static_cast<double>(significand), scale);
  return negative ? -magnitude : magnitude;
}

std::uint64_t double_to_float_bits(double value, FloatLayout layout) {
  if (layout.specials != FloatSpecials::kIeee) {
    // torch and ml_dtypes convert to 8-bit floats from f32: a double is
    // rounded to f32 first (which can round twice; matching them wins).
    const float single = static_cast<float>(value);
    if (layout.specials == FloatSpecials::kExponentOnly) return float_to_e8m0(single);
    value = single;
  }
  const int m = layout.mantissa_bits;
  const int e = layout.exponent_bits;
  const bool nan_only_all_ones = layout.specials == FloatSpecials::kNanOnlyAllOnes;
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(value);
  const std::uint64_t sign = (bits >> 63) << (e + m);
  const std::uint64_t infinity = low_bits(e) << m;
  // What overflow gives: Inf, or the NaN of a format without Inf.
  const std::uint64_t overflow = nan_only_all_ones ? low_bits(e + m) : infinity;
  const int double_exponent = static_cast<int>((bits >> kDoubleMantissaBits) & low_bits(11));
  const std::uint64_t double_mantissa = bits & low_bits(kDoubleMantissaBits);

  if (double_exponent == static_cast<int>(low_bits(11))) {
    if (double_mantissa == 0 || nan_only_all_ones) return sign | overflow;
    const std::uint64_t quiet = std::uint64_t{1} << (m - 1);
    if (layout.specials == FloatSpecials::kIeeeBareNan) return sign | infinity | quiet;
    return sign | infinity | (double_mantissa >> (kDoubleMantissaBits - m)) | quiet;
  }
  // Doubles below 2^-1022 (zero, subnormals) are far below half the smallest
  // subnormal of every narrower layout: they round to a signed zero.
  if (double_exponent == 0) return sign;

  const int bias = static_cast<int>(low_bits(e - 1));
  const int unbiased = double_exponent - kDoubleBias;
  // A format without Inf has normal numbers in its all-ones exponent too.
  if (unbiased > (nan_only_all_ones ? bias + 1 : bias)) return sign | overflow;
  const int min_normal_exponent = 1 - bias;
  const std::uint64_t significand = double_mantissa | (std::uint64_t{1} << kDoubleMantissaBits);
  // Bits of the 53-bit significand that do not fit; more below the
  // subnormal range. Past 63 nothing survives and the tie test still works.
  int dropped = kDoubleMantissaBits - m;
  if (unbiased < min_normal_exponent) dropped += min_normal_exponent - unbiased;
  if (dropped > 63) dropped = 63;
  std::uint64_t kept = significand >> dropped;
  const std::uint64_t remainder = significand & low_bits(dropped);
  const std::uint64_t half = std::uint64_t{1} << (dropped - 1);
  if (remainder > half || (remainder == half && (kept & 1) != 0)) ++kept;

  // A normal's kept significand carries the implicit bit, which adds one to
  // the exponent field; a carry out of the mantissa lands there too.
  std::uint64_t magnitude = unbiased < min_normal_exponent
                                ? kept
                                : (static_cast<std::uint64_t>(unbiased + bias - 1) << m) + kept;
  if (magnitude >= overflow) magnitude = overflow;
  return sign | magnitude;
}

}  // namespace ckpt::detail
