// Tensor elements as doubles, read in bounded chunks: what statistics and
// comparisons need, whatever the element type.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

// Whether each element is one real number: bool, integers up to 64 bits,
// f16, bf16, f32, f64. Complex and 128-bit types are not.
bool has_real_values(DType dtype);

double half_to_double(std::uint16_t bits);
double bfloat16_to_double(std::uint16_t bits);

// Pulls the elements of `source` (of `dtype`, little-endian) as doubles, at
// most `chunk_elements` at a time, so memory stays bounded for any tensor.
// 64-bit integers beyond 2^53 are rounded to the nearest double.
class ValueReader {
 public:
  static constexpr std::size_t kDefaultChunkElements = 1 << 16;
  // Fails with kInvalidArgument when !has_real_values(dtype) or the source
  // is not a whole number of elements.
  static Result<ValueReader> open(const ByteSource& source, DType dtype,
                                  std::size_t chunk_elements = kDefaultChunkElements);

  // The next chunk; empty once every element was returned. Valid until the next call.
  Result<std::span<const double>> next();

 private:
  ValueReader(const ByteSource& source, DType dtype, std::size_t chunk_elements);
  const ByteSource* source_;
  DType dtype_;
  std::size_t element_size_;
  std::uint64_t offset_ = 0;
  std::vector<std::byte> bytes_;
  std::vector<double> values_;
};

}  // namespace ckpt
