#include "ckpt/format/tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ckpt {

std::string shape_to_string(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Result<std::uint64_t> element_count(const Shape& shape) {
  std::uint64_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return Error(ErrorCode::kMetaNegativeDim,
                   fmt::format("dim {} of shape {} is {}, expected >= 0", i, shape_to_string(shape), shape[i]));
    }
  }
  for (std::int64_t dim : shape) {
    if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(dim), &count)) {
      return Error(ErrorCode::kMetaCountOverflow,
                   fmt::format("element count of shape {} does not fit in 64 bits", shape_to_string(shape)));
    }
  }
  return count;
}

Status check_fixed_size(DType dtype) {
  if (dtype_size(dtype) != 0) return {};
  return Error(ErrorCode::kMetaUnsupportedDataType,
               fmt::format("data_type {} ({}) has no fixed element size and cannot be stored as bytes",
                           dtype_name(dtype), static_cast<int>(dtype)));
}

Result<VariableMeta> VariableMeta::make(DType dtype, Shape shape) {
  if (!dtype_from_number(static_cast<std::int64_t>(dtype))) {
    return Error(ErrorCode::kMetaUnknownDataType,
                 fmt::format("data_type {} is not a OneFlow DataType", static_cast<int>(dtype)));
  }
  CKPT_TRY(check_fixed_size(dtype));
  CKPT_ASSIGN_OR_RETURN(std::uint64_t count, ckpt::element_count(shape));
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, dtype_size(dtype), &bytes)) {
    return Error(ErrorCode::kMetaCountOverflow,
                 fmt::format("byte size of shape {} x {} bytes ({}) does not fit in 64 bits", shape_to_string(shape),
                             dtype_size(dtype), dtype_name(dtype)));
  }
  return VariableMeta(dtype, std::move(shape), count, bytes);
}

}  // namespace ckpt
