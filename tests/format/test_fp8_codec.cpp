// The FP8 rules of core/float_codec (spec/casting.md, "FP8") on values worked
// out by hand from the OCP 8-bit float formats; tests/interop/test_fp8_casts.py
// compares every pattern with ml_dtypes.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <doctest/doctest.h>

#include "core/float_codec.hpp"

namespace {

using ckpt::detail::double_to_float_bits;
using ckpt::detail::float_bits_to_double;
using ckpt::detail::kFloat8E4M3Layout;
using ckpt::detail::kFloat8E5M2Layout;
using ckpt::detail::kFloat8E8M0Layout;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// sign * 2^(exponent - bias) * (1 + mantissa / 2^m), subnormal at exponent 0.
double from_fields(std::uint64_t bits, int e, int m) {
  const int bias = (1 << (e - 1)) - 1;
  const auto exponent = static_cast<int>((bits >> m) & ((1u << e) - 1));
  const auto mantissa = static_cast<double>(bits & ((1u << m) - 1));
  const double magnitude = exponent == 0 ? std::ldexp(mantissa / (1 << m), 1 - bias)
                                         : std::ldexp(1 + mantissa / (1 << m), exponent - bias);
  return (bits >> (e + m)) & 1 ? -magnitude : magnitude;
}

TEST_CASE("every E4M3 pattern decodes to its value; only S.1111.111 is NaN") {
  for (std::uint64_t bits = 0; bits < 256; ++bits) {
    const double value = float_bits_to_double(bits, kFloat8E4M3Layout);
    if ((bits & 0x7F) == 0x7F) {
      CHECK(std::isnan(value));
      CHECK(std::signbit(value) == (bits == 0xFF));
      CHECK((std::bit_cast<std::uint64_t>(value) & 0x000FFFFFFFFFFFFFull) == 0x0008000000000000ull);  // no payload
    } else {
      CHECK(value == from_fields(bits, 4, 3));
      CHECK(double_to_float_bits(value, kFloat8E4M3Layout) == bits);  // and back
    }
  }
  CHECK(float_bits_to_double(0x7E, kFloat8E4M3Layout) == 448);
  CHECK(float_bits_to_double(0x01, kFloat8E4M3Layout) == std::ldexp(1.0, -9));
}

TEST_CASE("E4M3 has no infinity: overflow, Inf and NaN become NaN of their sign") {
  CHECK(double_to_float_bits(464, kFloat8E4M3Layout) == 0x7E);  // max + half ulp ties to 448 (even)
  CHECK(double_to_float_bits(464.0001, kFloat8E4M3Layout) == 0x7F);
  CHECK(double_to_float_bits(-1e6, kFloat8E4M3Layout) == 0xFF);
  CHECK(double_to_float_bits(kInf, kFloat8E4M3Layout) == 0x7F);
  CHECK(double_to_float_bits(-kInf, kFloat8E4M3Layout) == 0xFF);
  CHECK(double_to_float_bits(-kNan, kFloat8E4M3Layout) == 0xFF);
  CHECK(double_to_float_bits(std::ldexp(1.0, -10), kFloat8E4M3Layout) == 0x00);  // half the smallest: to even
  CHECK(double_to_float_bits(std::ldexp(3.0, -11), kFloat8E4M3Layout) == 0x01);
  CHECK(double_to_float_bits(-0.0, kFloat8E4M3Layout) == 0x80);
}

TEST_CASE("f64 goes through f32 first, as torch and ml_dtypes convert") {
  // 1 + 2^-4 is halfway between 1 and 1.125 (ties to 1.0); 2^-40 above it is
  // lost in f32, so the result is 1.0 where rounding once would give 1.125.
  CHECK(double_to_float_bits(1 + std::ldexp(1.0, -4) + std::ldexp(1.0, -40), kFloat8E4M3Layout) == 0x38);
  CHECK(double_to_float_bits(1 + std::ldexp(1.0, -4) + std::ldexp(1.0, -20), kFloat8E4M3Layout) == 0x39);
}

TEST_CASE("E5M2: IEEE infinities, overflow to Inf, NaN without payload") {
  for (std::uint64_t bits = 0; bits < 256; ++bits) {
    const double value = float_bits_to_double(bits, kFloat8E5M2Layout);
    if ((bits & 0x7C) == 0x7C && (bits & 0x03) != 0) {
      CHECK(std::isnan(value));
      CHECK(double_to_float_bits(value, kFloat8E5M2Layout) == ((bits & 0x80) | 0x7E));
    } else if ((bits & 0x7F) == 0x7C) {
      CHECK(value == ((bits & 0x80) ? -kInf : kInf));
    } else {
      CHECK(value == from_fields(bits, 5, 2));
      CHECK(double_to_float_bits(value, kFloat8E5M2Layout) == bits);
    }
  }
  CHECK(double_to_float_bits(61439, kFloat8E5M2Layout) == 0x7B);  // below max + half ulp: 57344
  CHECK(double_to_float_bits(61440, kFloat8E5M2Layout) == 0x7C);  // the tie goes to the even Inf pattern
  CHECK(double_to_float_bits(-kInf, kFloat8E5M2Layout) == 0xFC);
}

TEST_CASE("E8M0: unsigned powers of two, ties up, NaN for what it cannot hold") {
  for (std::uint64_t bits = 0; bits < 255; ++bits) {
    CHECK(float_bits_to_double(bits, kFloat8E8M0Layout) == std::ldexp(1.0, static_cast<int>(bits) - 127));
    CHECK(double_to_float_bits(std::ldexp(1.0, static_cast<int>(bits) - 127), kFloat8E8M0Layout) == bits);
  }
  CHECK(std::isnan(float_bits_to_double(0xFF, kFloat8E8M0Layout)));
  CHECK(double_to_float_bits(0.75, kFloat8E8M0Layout) == 0x7F);  // 0.75 is halfway 0.5..1: up
  CHECK(double_to_float_bits(1.5, kFloat8E8M0Layout) == 0x80);   // and 1.5 halfway 1..2: up too
  CHECK(double_to_float_bits(1.4999, kFloat8E8M0Layout) == 0x7F);
  CHECK(double_to_float_bits(std::ldexp(1.0, -140), kFloat8E8M0Layout) == 0x00);  // clamped to 2^-127
  CHECK(double_to_float_bits(std::ldexp(1.5, -127), kFloat8E8M0Layout) == 0x01);
  for (double nan_input : {0.0, -0.0, -1.0, kInf, -kInf, kNan, std::ldexp(1.5, 127)}) {
    CHECK(double_to_float_bits(nan_input, kFloat8E8M0Layout) == 0xFF);
  }
}

}  // namespace
