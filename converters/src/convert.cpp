#include "ckpt/convert/convert.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ckpt/format/pickle.hpp"
#include "ckpt/format/views.hpp"


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
  std::vector<std::string> skipped;
  for (const UnsupportedTensor& tensor : source.unsupported()) skipped.push_back(tensor.name);
  if (!skipped.empty() && !options.skip_unsupported) {
    const UnsupportedTensor& first = source.unsupported().front();
    return std::move(Error(ErrorCode::kNpyUnsupportedMember,
                           fmt::format("{} tensor(s) of types ckpt cannot represent would be lost: {}; the first is "
                                       "'{}' ({}); filter them out or set skip_unsupported",
                                       skipped.size(), fmt::join(skipped, ", "), first.descr, first.reason))
                         .in_file(source.path().string())
                         .in_variable(first.name));
  }
  const auto& tensors = source.tensors();
  Progress progress;
  progress.variables_total = tensors.size();
  for (const TensorInfo& tensor : tensors) progress.bytes_total += tensor.meta.byte_size();
  // Pickle sources carry an object around the tensors (epoch, param_groups);
  // pickle destinations keep it, flat ones keep the tensors only. A filter
  // or rename view hides it from every destination.
  std::vector<std::string> dropped;
  const pickle::Value* hidden = hidden_object(source);
  const pickle::Value* object = hidden != nullptr ? hidden : source.object();
  if (object != nullptr) {
    if (hidden == nullptr && destination.keeps_object()) {
      CKPT_TRY(destination.set_object(*object));
    } else {
      for (const pickle::ObjectLeaf& leaf : pickle::object_leaves(*object)) dropped.push_back(leaf.path);
    }
  }
  if (options.strict && !dropped.empty()) {
    constexpr std::size_t kNamed = 10;
    std::vector<std::string> named(dropped.begin(), dropped.begin() + static_cast<std::ptrdiff_t>(std::min(dropped.size(), kNamed)));
    for (std::string& name : named) name = name.empty() ? "(the saved object)" : name;
    return Error(ErrorCode::kObjectDataDropped,
                 fmt::format("{} keeps tensors only; {} non-tensor values of the object would be dropped: {}{}",
                             hidden != nullptr ? "a filter or rename view" : "the destination", dropped.size(),
                             fmt::join(named, ", "), dropped.size() > kNamed ? ", ..." : ""))
        .in_file(source.path().string());
  }
  // Like the object: kept where the destination has a place for it, else dropped.
  if (destination.stores_metadata() && !source.metadata().empty()) CKPT_TRY(destination.set_metadata(source.metadata()));
  if (!options.metadata.empty()) CKPT_TRY(destination.set_metadata(options.metadata));
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
  return ConvertSummary{progress.variables_total, progress.bytes_total, std::move(skipped), std::move(dropped)};
}

}  // namespace ckpt::convert
