// A variable's `meta`: shape and data type, as OneFlow's VariableMetaInfo
// text protobuf. A VariableMeta object is always valid: known fixed-size
// dtype, non-negative dims, element and byte counts that fit in 64 bits.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

using Shape = std::vector<std::int64_t>;

// "[128, 784]", "[]" for a scalar.
std::string shape_to_string(const Shape& shape);

// Product of dims, or an error when a dim is negative or the product overflows.
Result<std::uint64_t> element_count(const Shape& shape);

class VariableMeta {
 public:
  // Checks the dtype is fixed-size, dims are non-negative, and that
  // element count x element size fits in 64 bits.
  static Result<VariableMeta> make(DType dtype, Shape shape);

  // Parses `meta` text as OneFlow's Python reader does: fields in any order,
  // free whitespace and comments, the dtype by name or number, a missing
  // shape meaning a scalar. Unknown fields are skipped and reported in
  // `warnings` (when given). Fails on the first problem.
  static Result<VariableMeta> parse(std::string_view text, std::vector<Error>* warnings = nullptr);

  // Every problem of a meta text, none skipped: what the validator reports.
  // Empty when parse() would succeed without warnings.
  static std::vector<Error> check(std::string_view text);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::uint64_t element_count() const { return element_count_; }
  std::uint64_t byte_size() const { return byte_size_; }

  // OneFlow's exact bytes: "shape {\n  dim: 128\n  dim: 784\n}\ndata_type: kFloat\n".
  std::string to_text() const;

  bool operator==(const VariableMeta& other) const {
    return dtype_ == other.dtype_ && shape_ == other.shape_;
  }

 private:
  VariableMeta(DType dtype, Shape shape, std::uint64_t count, std::uint64_t bytes)
      : dtype_(dtype), shape_(std::move(shape)), element_count_(count), byte_size_(bytes) {}

  DType dtype_;
  Shape shape_;
  std::uint64_t element_count_;
  std::uint64_t byte_size_;
};

// A meta file larger than this is refused before it is read: a real one is
// under a kilobyte even for 64 dims.
inline constexpr std::uint64_t kMaxMetaBytes = 64 * 1024;

}  // namespace ckpt
