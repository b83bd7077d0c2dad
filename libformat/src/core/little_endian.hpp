// Little-endian integers in byte buffers: the one place the byte order of
// every format's length fields and numbers is spelled out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ckpt::detail {

// `bytes` (at most 8) as an unsigned little-endian number.
inline std::uint64_t load_le(std::span<const std::byte> bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) value |= std::to_integer<std::uint64_t>(bytes[i]) << (8 * i);
  return value;
}

// The low `out.size()` (at most 8) bytes of `value`, little-endian, into `out`.
inline void store_le(std::uint64_t value, std::span<std::byte> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((value >> (8 * i)) & 0xFF);
}

// The low `width` (at most 8) bytes of `value`, little-endian, appended to
// `out` (a std::string or a vector of bytes).
template <class Bytes>
void append_le(Bytes& out, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) out.push_back(static_cast<typename Bytes::value_type>((value >> (8 * i)) & 0xFF));
}

}  // namespace ckpt::detail
