#include "ckpt/train/order.hpp"

#include <numeric>
#include <span>

#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"

namespace ckpt::train {

namespace {

template <class Index>
Result<EpochOrder> rows_of(const ByteSource& source, std::size_t epochs, std::size_t samples, std::size_t train_size,
                           const auto& refuse) {
  std::vector<Index> values(epochs * samples);
  CKPT_TRY(source.read_at(0, std::as_writable_bytes(std::span<Index>(values))));
  EpochOrder order(epochs);
  for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
    order[epoch].reserve(samples);
    for (std::size_t i = 0; i < samples; ++i) {
      const Index index = values[epoch * samples + i];
      if (index < 0 || static_cast<std::uint64_t>(index) >= train_size) {
        return refuse(fmt::format("epoch {} position {}: sample index {} is outside the training set [0, {})",
                                  epoch + 1, i, static_cast<std::int64_t>(index), train_size));
      }
      order[epoch].push_back(static_cast<std::uint32_t>(index));
    }
  }
  return order;
}

}  // namespace

Result<EpochOrder> load_epoch_order(const std::filesystem::path& path, std::size_t train_size) {
  CKPT_ASSIGN_OR_RETURN(const auto reader, open_checkpoint(path));
  const auto& tensors = reader->tensors();
  auto refuse = [&](std::string message, std::string_view tensor = {}) {
    Error error(ErrorCode::kDatasetMismatch, fmt::format("batch order: {}", message));
    error.in_file(path.string());
    if (!tensor.empty()) error.in_variable(tensor);
    return error;
  };
  if (tensors.size() != 1) {
    return refuse(fmt::format("expected one tensor of sample indices, found {}", tensors.size()));
  }
  const TensorInfo& tensor = tensors.front();
  const DType dtype = tensor.meta.dtype();
  const Shape& shape = tensor.meta.shape();
  if (dtype != DType::kInt32 && dtype != DType::kInt64) {
    return refuse(fmt::format("dtype: expected kInt32 or kInt64, found {}", dtype_name(dtype)), tensor.name);
  }
  if (shape.size() != 2 || shape[0] == 0 || shape[1] == 0) {
    return refuse(fmt::format("shape: expected [epochs, samples], both > 0, found {}", shape_to_string(shape)),
                  tensor.name);
  }
  const auto epochs = static_cast<std::size_t>(shape[0]);
  const auto samples = static_cast<std::size_t>(shape[1]);
  CKPT_ASSIGN_OR_RETURN(const auto source, reader->open(tensor.name));
  auto in_tensor = [&](std::string message) { return refuse(std::move(message), tensor.name); };
  if (dtype == DType::kInt32) return rows_of<std::int32_t>(*source, epochs, samples, train_size, in_tensor);
  return rows_of<std::int64_t>(*source, epochs, samples, train_size, in_tensor);
}

EpochOrder sequential_order(std::size_t epochs, std::size_t samples) {
  std::vector<std::uint32_t> row(samples);
  std::iota(row.begin(), row.end(), 0U);
  return EpochOrder(epochs, row);
}

}  // namespace ckpt::train
