#include "ckpt/convert/convert.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <span>

#include <fmt/format.h>


namespace ckpt::convert {
namespace {

namespace fs = std::filesystem;

// Shapes files are small: a few hundred bytes per variable.
constexpr std::uintmax_t kMaxShapesFileBytes = 64u << 20;

}  // namespace

Result<ShapeTable> load_shapes(const fs::path& json_file) {
  // FileSource refuses a FIFO or device at once instead of blocking on it.
  CKPT_ASSIGN_OR_RETURN(FileSource file, FileSource::open(json_file));
  if (file.size() > kMaxShapesFileBytes) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("{} bytes; the cap is {}", file.size(), kMaxShapesFileBytes))
        .in_file(json_file.string());
  }
  std::string text(static_cast<std::size_t>(file.size()), '\0');
  CKPT_TRY(file.read_at(0, std::as_writable_bytes(std::span(text))));
  return parse_shape_table(text, json_file.string());
}

std::uint64_t tensor_buffer_bytes(std::uint64_t bytes) { return std::min<std::uint64_t>(bytes, kCopyBufferBytes); }

Result<ConvertSummary> convert(const CheckpointReader& source, CheckpointWriter& destination,
                               const ConvertOptions& options) {
  const auto& tensors = source.tensors();
  Progress progress;
  progress.variables_total = tensors.size();
  for (const TensorInfo& tensor : tensors) progress.bytes_total += tensor.meta.byte_size();
  // Pickle sources carry an object around the tensors (epoch, param_groups);
  // pickle destinations keep it, flat ones keep the tensors only.
  if (const pickle::Value* object = source.object()) CKPT_TRY(destination.set_object(*object));
  CKPT_TRY(destination.plan(tensors));
  std::mutex progress_mutex;
  auto add = [&](std::size_t index) -> Status {
    const TensorInfo& tensor = tensors[index];
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> data, source.open(tensor.name));
    CKPT_TRY(destination.add(tensor.name, tensor.meta, *data));
    std::lock_guard lock(progress_mutex);
    ++progress.variables_done;
    progress.bytes_done += tensor.meta.byte_size();
    progress.variable = tensor.name;
    if (options.progress) options.progress(progress);
    return {};
  };
  ParallelOptions parallel = options.parallel;
  if (!destination.concurrent_adds()) parallel.jobs = 1;
  CKPT_TRY(run_tasks(
      tensors.size(), parallel, [&](std::size_t index) { return tensor_buffer_bytes(tensors[index].meta.byte_size()); },
      add));
  CKPT_TRY(destination.commit());
  return ConvertSummary{progress.variables_total, progress.bytes_total};
}

}  // namespace ckpt::convert
