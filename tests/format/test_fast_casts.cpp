#include "core/fast_casts.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <ios>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "core/float_codec.hpp"

namespace {

using ckpt::detail::double_to_float_bits;
using ckpt::detail::float_bits_to_double;
using ckpt::detail::kBFloat16Layout;
using ckpt::detail::kDoubleLayout;
using ckpt::detail::kFloatLayout;
using ckpt::detail::kHalfLayout;

// The exact codec's answer: decode to double, round once.
std::uint64_t exact(std::uint64_t bits, ckpt::detail::FloatLayout from, ckpt::detail::FloatLayout to) {
  return double_to_float_bits(float_bits_to_double(bits, from), to);
}

// f32 patterns that reach every rounding case of both narrowings: each sign
// and exponent, with every low 16-bit pattern (the bits bf16 drops, a
// superset of f16's 13) under a few high mantissa bits of both parities.
std::vector<std::uint32_t> dense_f32_patterns() {
  std::vector<std::uint32_t> patterns;
  for (std::uint32_t sign_exponent = 0; sign_exponent < 512; ++sign_exponent) {
    for (std::uint32_t high : {0x00u, 0x01u, 0x02u, 0x3Fu, 0x40u, 0x55u, 0x7Eu, 0x7Fu}) {
      for (std::uint32_t low = 0; low < 0x10000; ++low) patterns.push_back((sign_exponent << 23) | (high << 16) | low);
    }
  }
  std::mt19937 random(15);
  for (int i = 0; i < 4'000'000; ++i) patterns.push_back(static_cast<std::uint32_t>(random()));
  return patterns;
}

}  // namespace

TEST_CASE("f32 -> bf16 and f32 -> f16 match the exact codec on every rounding case") {
  std::size_t bf16_mismatches = 0, f16_mismatches = 0;
  for (std::uint32_t bits : dense_f32_patterns()) {
    if (ckpt::detail::fast_f32_to_bf16(bits) != exact(bits, kFloatLayout, kBFloat16Layout) && bf16_mismatches++ < 5) {
      FAIL_CHECK("bf16 differs for 0x" << std::hex << bits);
    }
    if (ckpt::detail::fast_f32_to_f16(bits) != exact(bits, kFloatLayout, kHalfLayout) && f16_mismatches++ < 5) {
      FAIL_CHECK("f16 differs for 0x" << std::hex << bits);
    }
  }
  CHECK(bf16_mismatches == 0);
  CHECK(f16_mismatches == 0);
}

TEST_CASE("bf16 -> f32 and f16 -> f32 match the exact codec on all 65,536 patterns") {
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    CAPTURE(bits);
    const auto narrow = static_cast<std::uint16_t>(bits);
    REQUIRE(ckpt::detail::fast_bf16_to_f32(narrow) == exact(bits, kBFloat16Layout, kFloatLayout));
    REQUIRE(ckpt::detail::fast_f16_to_f32(narrow) == exact(bits, kHalfLayout, kFloatLayout));
  }
}

TEST_CASE("f64 -> f32 matches the exact codec around every f32 exponent, NaN payloads and random doubles") {
  std::vector<std::uint64_t> patterns;
  // Every double exponent from far below f32's subnormals to far above its
  // largest value, with the 29 dropped bits at and around the tie.
  const std::uint64_t tie = std::uint64_t{1} << 28;
  for (std::uint64_t exponent = 1023 - 160; exponent <= 1023 + 130; ++exponent) {
    for (std::uint64_t high : {0ull, 1ull, 2ull, 3ull, 0x2AAAAAull, 0x7FFFFEull, 0x7FFFFFull}) {
      for (std::uint64_t low : {std::uint64_t{0}, std::uint64_t{1}, tie - 1, tie, tie + 1, 2 * tie - 1, std::uint64_t{0x5555555}}) {
        for (std::uint64_t sign : {0ull, 1ull}) patterns.push_back((sign << 63) | (exponent << 52) | (high << 29) | low);
      }
    }
  }
  for (std::uint64_t special : {0x0ull, 0x1ull, 0x000FFFFFFFFFFFFFull, 0x7FF0000000000000ull, 0x7FF0000000000001ull,
                                0x7FF0000020000000ull, 0x7FF8000000000000ull, 0xFFF4000000000000ull,
                                0x7FFFFFFFFFFFFFFFull, 0x47EFFFFFE0000000ull, 0x47EFFFFFF0000000ull}) {
    patterns.push_back(special);
    patterns.push_back(special | (std::uint64_t{1} << 63));
  }
  std::mt19937_64 random(15);
  for (int i = 0; i < 2'000'000; ++i) patterns.push_back(random());
  std::size_t mismatches = 0;
  for (std::uint64_t bits : patterns) {
    if (ckpt::detail::fast_f64_to_f32(bits) != exact(bits, kDoubleLayout, kFloatLayout) && mismatches++ < 5) {
      FAIL_CHECK("f32 differs for 0x" << std::hex << bits);
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("the fast paths cover the common pairs only") {
  using ckpt::DType;
  CHECK((ckpt::detail::fast_cast(DType::kFloat, DType::kBFloat16) != nullptr));
  CHECK((ckpt::detail::fast_cast(DType::kDouble, DType::kFloat) != nullptr));
  CHECK((ckpt::detail::fast_cast(DType::kDouble, DType::kBFloat16) == nullptr));  // one rounding, not two
  CHECK((ckpt::detail::fast_cast(DType::kFloat16, DType::kBFloat16) == nullptr));
}
