#include "core/float_codec.hpp"

#include <bit>
#include <cmath>

namespace ckpt::detail {
namespace {

constexpr int kDoubleMantissaBits = 52;
constexpr int kDoubleBias = 1023;

constexpr std::uint64_t low_bits(int count) { return (std::uint64_t{1} << count) - 1; }

}  // namespace

double float_bits_to_double(std::uint64_t bits, FloatLayout layout) {
  const int m = layout.mantissa_bits;
  const int e = layout.exponent_bits;
  const bool negative = ((bits >> (e + m)) & 1) != 0;
  const std::uint64_t exponent = (bits >> m) & low_bits(e);
  const std::uint64_t mantissa = bits & low_bits(m);
  const std::uint64_t sign_bit = negative ? std::uint64_t{1} << 63 : 0;
  if (exponent == low_bits(e)) {
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
  const int m = layout.mantissa_bits;
  const int e = layout.exponent_bits;
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(value);
  const std::uint64_t sign = (bits >> 63) << (e + m);
  const std::uint64_t infinity = low_bits(e) << m;
  const int double_exponent = static_cast<int>((bits >> kDoubleMantissaBits) & low_bits(11));
  const std::uint64_t double_mantissa = bits & low_bits(kDoubleMantissaBits);

  if (double_exponent == static_cast<int>(low_bits(11))) {
    if (double_mantissa == 0) return sign | infinity;
    const std::uint64_t payload = double_mantissa >> (kDoubleMantissaBits - m);
    return sign | infinity | payload | (std::uint64_t{1} << (m - 1));
  }
  // Doubles below 2^-1022 (zero, subnormals) are far below half the smallest
  // subnormal of every narrower layout: they round to a signed zero.
  if (double_exponent == 0) return sign;

  const int bias = static_cast<int>(low_bits(e - 1));
  const int unbiased = double_exponent - kDoubleBias;
  if (unbiased > bias) return sign | infinity;
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
  if (magnitude >= infinity) magnitude = infinity;
  return sign | magnitude;
}

}  // namespace ckpt::detail
