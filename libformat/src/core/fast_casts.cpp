#include "core/fast_casts.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

namespace ckpt::detail {

std::uint16_t fast_f32_to_bf16(std::uint32_t bits) {
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  // Round to nearest even on the 16 dropped bits; a carry walks into the
  // exponent, up to Inf, as it should. bf16 has f32's exponent range, so
  // subnormals round the same way.
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

std::uint16_t fast_f32_to_f16(std::uint32_t bits) {
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) {  // NaN: the leading 10 payload bits, quiet bit set
    return static_cast<std::uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
  }
  // 65520 (halfway between the largest half, 65504, and 65536) rounds to even: Inf.
  if (magnitude >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (magnitude >= 0x38800000u) {  // a normal half: rebias the exponent (127 -> 15), round 13 bits
    const std::uint32_t rounded = magnitude - (112u << 23) + 0x0FFFu + ((magnitude >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (rounded >> 13));
  }
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent < 102) return sign;  // below half the smallest subnormal (2^-25): zero
  // A subnormal half counts units of 2^-24: the significand shifted right
  // by 126 - exponent (14..24 bits), rounded to nearest even.
  const std::uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126 - exponent;
  std::uint32_t kept = significand >> shift;
  const std::uint32_t remainder = significand & ((1u << shift) - 1);
  const std::uint32_t half = 1u << (shift - 1);
  if (remainder > half || (remainder == half && (kept & 1u) != 0)) ++kept;
  return static_cast<std::uint16_t>(sign | kept);
}

std::uint32_t fast_bf16_to_f32(std::uint16_t bits) {
  const std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
  return (wide & 0x7FFFFFFFu) > 0x7F800000u ? wide | 0x00400000u : wide;  // NaN made quiet
}

std::uint32_t fast_f16_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) return sign | 0x7F800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0);
  if (exponent != 0) return sign | ((exponent + 112) << 23) | (mantissa << 13);
  if (mantissa == 0) return sign;
  // A subnormal half (mantissa x 2^-24) is a normal float: its leading 1, at
  // bit p, becomes the implicit bit.
  const int p = 31 - std::countl_zero(mantissa);
  return sign | (static_cast<std::uint32_t>(p + 103) << 23) | ((mantissa << (23 - p)) & 0x7FFFFFu);
}

std::uint32_t fast_f64_to_f32(std::uint64_t bits) {
  if ((bits & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull) {  // NaN: leading 23 payload bits, quiet
    return static_cast<std::uint32_t>((bits >> 32) & 0x80000000u) | 0x7FC00000u |
           static_cast<std::uint32_t>((bits >> 29) & 0x7FFFFFu);
  }
  // The hardware conversion rounds to nearest even (the default mode, which
  // the library never changes) with Inf on overflow and exact subnormals.
  return std::bit_cast<std::uint32_t>(static_cast<float>(std::bit_cast<double>(bits)));
}

namespace {

template <class From, class To, To (*convert)(From)>
void convert_all(const std::byte* in, std::byte* out, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    From value;
    std::memcpy(&value, in + i * sizeof(From), sizeof(From));
    const To result = convert(value);
    std::memcpy(out + i * sizeof(To), &result, sizeof(To));
  }
}

}  // namespace

BulkCast fast_cast(DType from, DType to) {
  if constexpr (std::endian::native != std::endian::little) return nullptr;
  if (from == DType::kFloat && to == DType::kBFloat16) return convert_all<std::uint32_t, std::uint16_t, fast_f32_to_bf16>;
  if (from == DType::kFloat && to == DType::kFloat16) return convert_all<std::uint32_t, std::uint16_t, fast_f32_to_f16>;
  if (from == DType::kBFloat16 && to == DType::kFloat) return convert_all<std::uint16_t, std::uint32_t, fast_bf16_to_f32>;
  if (from == DType::kFloat16 && to == DType::kFloat) return convert_all<std::uint16_t, std::uint32_t, fast_f16_to_f32>;
  if (from == DType::kDouble && to == DType::kFloat) return convert_all<std::uint64_t, std::uint32_t, fast_f64_to_f32>;
  return nullptr;
}

}  // namespace ckpt::detail
