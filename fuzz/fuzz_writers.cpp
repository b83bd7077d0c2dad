// Random tensors and names through every registered writer: whatever a
// writer commits, the project's reader reads back with the same names,
// dtypes, shapes and bytes; otherwise the writer must refuse (an error,
// nothing published). A mismatch aborts, so libFuzzer keeps the input.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "ckpt/format/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;

// Consumes the fuzzer's bytes front to back; zeros once they run out.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return position_ < size_ ? data_[position_++] : 0; }
  bool empty() const { return position_ >= size_; }
  std::string text(std::size_t length) {
    std::string out;
    for (std::size_t i = 0; i < length && !empty(); ++i) out.push_back(static_cast<char>(byte()));
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
};

struct Tensor {
  ckpt::VariableMeta meta;
  std::vector<std::byte> bytes;
};

[[noreturn]] void mismatch(std::string_view format, std::string_view what, std::string_view name) {
  std::fprintf(stderr, "writer '%.*s' committed what its reader %.*s: tensor '%.*s'\n", static_cast<int>(format.size()),
               format.data(), static_cast<int>(what.size()), what.data(), static_cast<int>(name.size()), name.data());
  std::abort();
}

// Only OneFlow's formats tell kChar from kInt8; the others store one int8.
bool same_meta(std::string_view format, const ckpt::VariableMeta& read, const ckpt::VariableMeta& written) {
  if (written.dtype() == ckpt::DType::kChar && !format.starts_with("oneflow")) {
    return read.dtype() == ckpt::DType::kInt8 && read.shape() == written.shape();
  }
  return read == written;
}

void round_trip(std::string_view format, const fs::path& destination, const std::map<std::string, Tensor>& tensors,
                const std::vector<std::string>& order) {
  std::error_code ec;
  fs::remove_all(destination, ec);
  auto writer = ckpt::create_checkpoint(destination, format);
  if (!writer.ok()) return;
  for (const std::string& name : order) {
    const Tensor& tensor = tensors.at(name);
    if (!(*writer)->add(name, tensor.meta, ckpt::MemorySource(tensor.bytes)).ok()) return;  // refused
  }
  if (!(*writer)->commit().ok()) return;
  ckpt::OpenOptions options;
  options.format = std::string(format);
  options.npy.void2_as_bfloat16 = true;  // how npy and npz hold bfloat16 (spec/npy-npz.md)
  auto reader = ckpt::open_checkpoint(destination, options);
  if (!reader.ok()) mismatch(format, "refuses: " + reader.error().describe(), "");
  if ((*reader)->tensors().size() != tensors.size()) mismatch(format, "lists a different number of", "");
  for (const ckpt::TensorInfo& info : (*reader)->tensors()) {
    auto written = tensors.find(info.name);
    if (written == tensors.end()) mismatch(format, "names differently", info.name);
    if (!same_meta(format, info.meta, written->second.meta)) mismatch(format, "gives another dtype or shape", info.name);
    auto source = (*reader)->open(info.name);
    if (!source.ok()) mismatch(format, "cannot open", info.name);
    std::vector<std::byte> bytes(static_cast<std::size_t>((*source)->size()));
    if (!(*source)->read_at(0, bytes).ok() || bytes != written->second.bytes) mismatch(format, "reads other bytes", info.name);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path directory = [] {
    fs::path path = fs::temp_directory_path() / ("ckpt-fuzz-writers-" + std::to_string(::getpid()));
    fs::create_directories(path);
    return path;
  }();
  Input input(data, size);
  const auto dtypes = ckpt::all_dtypes();
  std::map<std::string, Tensor> tensors;
  std::vector<std::string> order;
  for (std::size_t count = input.byte() % 5; count > 0 && !input.empty(); --count) {
    std::string name = input.text(input.byte() % 24);
    const auto& info = dtypes[input.byte() % dtypes.size()];
    ckpt::Shape shape(input.byte() % 4);
    for (auto& dim : shape) dim = input.byte() % 5;
    auto meta = ckpt::VariableMeta::make(info.dtype, shape);
    if (!meta.ok() || tensors.contains(name)) continue;
    std::vector<std::byte> bytes(static_cast<std::size_t>(meta->byte_size()));
    for (auto& b : bytes) b = static_cast<std::byte>(input.byte());
    order.push_back(name);
    tensors.emplace(std::move(name), Tensor{std::move(meta).value(), std::move(bytes)});
  }
  for (std::string_view format : ckpt::checkpoint_formats()) {
    std::string extension = format == "npz" ? ".npz" : format == "safetensors" ? ".safetensors" : format == "torch" ? ".pt" : "";
    round_trip(format, directory / (std::string(format) + extension), tensors, order);
  }
  return 0;
}
