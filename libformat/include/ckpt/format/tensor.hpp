// A tensor's description, the same for every format: name, data type,
// shape and byte size. A VariableMeta object is always valid: known
// fixed-size dtype, non-negative dims, element and byte counts that fit in
// 64 bits. How a format stores it (OneFlow's `meta` text, an .npy header, a
// safetensors entry) is that format's business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

using Shape = std::vector<std::int64_t>;

// "[128, 784]", "[]" for a scalar.
std::string shape_to_string(const Shape& shape);

// Product of dims, or an error when a dim is negative or the product overflows.
Result<std::uint64_t> element_count(const Shape& shape);

// kMetaUnsupportedDataType when `dtype` has no fixed element size (a
// OneFlow record or tensor-buffer type): its elements cannot be stored as bytes.
Status check_fixed_size(DType dtype);

class VariableMeta {
 public:
  // Checks the dtype is fixed-size, dims are non-negative, and that
  // element count x element size fits in 64 bits.
  static Result<VariableMeta> make(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::uint64_t element_count() const { return element_count_; }
  std::uint64_t byte_size() const { return byte_size_; }

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

// A readable tensor of a checkpoint.
struct TensorInfo {
  std::string name;
  VariableMeta meta;
  // A numpy array inside a pickle (spec/pickle.md, "numpy arrays"): its
  // dtype is spelled as numpy's, not as the pickle format's own tensors'.
  bool numpy_array = false;
};

// A tensor as a validator found it: its dtype and shape may be unknown (a
// OneFlow L0 variable has none, a broken header gives none), its byte size
// is what the file holds.
struct VariableInfo {
  std::string name;
  std::optional<VariableMeta> meta;
  std::uint64_t byte_size = 0;
  // kBFloat16 whose `out` holds float32 values, as OneFlow 0.9 saves bf16
  // (E480): read as bfloat16, each value rounded to nearest even.
  bool bf16_stored_as_float32 = false;
  // As TensorInfo::numpy_array.
  bool numpy_array = false;
};

}  // namespace ckpt
