#include "ckpt/format/values.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/float_codec.hpp"

namespace ckpt {
namespace {

template <class T>
double load(const std::byte* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof value);
  return static_cast<double>(value);
}

std::uint16_t load_u16(const std::byte* bytes) {
  std::uint16_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

}  // namespace

bool has_real_values(DType dtype) {
  switch (dtype) {
    case DType::kBool: case DType::kChar: case DType::kInt8: case DType::kUInt8: case DType::kInt16:
    case DType::kUInt16: case DType::kInt32: case DType::kUInt32: case DType::kInt64: case DType::kUInt64:
    case DType::kFloat16: case DType::kBFloat16: case DType::kFloat: case DType::kDouble:
    case DType::kFloat8E4M3: case DType::kFloat8E5M2: case DType::kFloat8E8M0:
      return true;
    default:
      return false;
  }
}

double half_to_double(std::uint16_t bits) { return detail::float_bits_to_double(bits, detail::kHalfLayout); }

double bfloat16_to_double(std::uint16_t bits) {
  return detail::float_bits_to_double(bits, detail::kBFloat16Layout);
}

ValueReader::ValueReader(const ByteSource& source, DType dtype, std::size_t chunk_elements)
    : source_(&source), dtype_(dtype), element_size_(dtype_size(dtype)), bytes_(chunk_elements * element_size_),
      values_(chunk_elements) {}

Result<ValueReader> ValueReader::open(const ByteSource& source, DType dtype, std::size_t chunk_elements) {
  if (!has_real_values(dtype)) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{} elements are not real numbers", dtype_name(dtype)))
        .in_file(source.name());
  }
  if (source.size() % dtype_size(dtype) != 0) {
    return Error(ErrorCode::kDataSizeMismatch,
                 fmt::format("{} bytes are not a whole number of {}-byte {} elements", source.size(),
                             dtype_size(dtype), dtype_name(dtype)))
        .in_file(source.name());
  }
  return ValueReader(source, dtype, chunk_elements == 0 ? 1 : chunk_elements);
}

Result<std::span<const double>> ValueReader::next() {
  std::uint64_t left = source_->size() - offset_;
  std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(left / element_size_, values_.size()));
  std::span<std::byte> bytes(bytes_.data(), count * element_size_);
  CKPT_TRY(source_->read_at(offset_, bytes));
  offset_ += bytes.size();
  for (std::size_t i = 0; i < count; ++i) {
    const std::byte* element = bytes.data() + i * element_size_;
    switch (dtype_) {
      case DType::kBool: values_[i] = std::to_integer<int>(*element) != 0 ? 1.0 : 0.0; break;
      case DType::kChar: case DType::kInt8: values_[i] = load<std::int8_t>(element); break;
      case DType::kUInt8: values_[i] = load<std::uint8_t>(element); break;
      case DType::kInt16: values_[i] = load<std::int16_t>(element); break;
      case DType::kUInt16: values_[i] = load<std::uint16_t>(element); break;
      case DType::kInt32: values_[i] = load<std::int32_t>(element); break;
      case DType::kUInt32: values_[i] = load<std::uint32_t>(element); break;
      case DType::kInt64: values_[i] = load<std::int64_t>(element); break;
      case DType::kUInt64: values_[i] = load<std::uint64_t>(element); break;
      case DType::kFloat16: values_[i] = half_to_double(load_u16(element)); break;
      case DType::kBFloat16: values_[i] = bfloat16_to_double(load_u16(element)); break;
      case DType::kFloat: values_[i] = load<float>(element); break;
      case DType::kDouble: values_[i] = load<double>(element); break;
      case DType::kFloat8E4M3: case DType::kFloat8E5M2: case DType::kFloat8E8M0:
        values_[i] = detail::float_bits_to_double(std::to_integer<std::uint8_t>(*element), *detail::float_layout(dtype_));
        break;
      default: break;  // open() admits real types only
    }
  }
  return std::span<const double>(values_.data(), count);
}

}  // namespace ckpt
