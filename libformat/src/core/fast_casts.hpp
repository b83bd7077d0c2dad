// Fast paths for the common floating casts (f32 <-> bf16, f32 <-> f16,
// f64 -> f32), with integer bit operations instead of the round trip through
// double in float_codec. Bit-identical to float_codec on every input: the
// same round to nearest even, Inf and overflow, and NaN keeping its sign and
// leading payload bits, made quiet (tests/format/test_fast_casts.cpp checks
// every 16-bit pattern and dense f32/f64 sets against the exact codec).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ckpt/format/dtype.hpp"

namespace ckpt::detail {

// Converts `count` little-endian elements at `in` to `count` at `out`.
using BulkCast = void (*)(const std::byte* in, std::byte* out, std::size_t count);

// The fast path from `from` to `to`, or nullptr when there is none (other
// pairs, or a big-endian host) and float_codec does the work.
BulkCast fast_cast(DType from, DType to);

// One element each, for the tests.
std::uint16_t fast_f32_to_bf16(std::uint32_t bits);
std::uint16_t fast_f32_to_f16(std::uint32_t bits);
std::uint32_t fast_bf16_to_f32(std::uint16_t bits);
std::uint32_t fast_f16_to_f32(std::uint16_t bits);
std::uint32_t fast_f64_to_f32(std::uint64_t bits);

}  // namespace ckpt::detail
