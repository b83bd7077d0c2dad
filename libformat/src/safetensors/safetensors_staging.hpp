// What the safetensors writers and readers share. Tensors staged for
// safetensors files. The header, written first, needs
// every tensor's size, so add() copies each tensor to an unlinked scratch
// file and write_file() lays out a whole file from it. Shared by the
// single-file writer and the sharded one (one scratch file, many shards).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/meta.hpp"
#include "ckpt/format/tensor_chunks.hpp"

namespace ckpt::detail {

class ScratchFile;

struct StagedTensor {
  std::string name;
  VariableMeta meta;
  std::uint64_t scratch_offset;
};

// The reference's order: widest elements first, then by name, so every
// tensor starts at a multiple of its element size. T has .name and .meta.
template <class T>
void sort_in_safetensors_order(std::vector<T>& tensors) {
  std::sort(tensors.begin(), tensors.end(), [](const T& a, const T& b) {
    auto a_size = dtype_size(a.meta.dtype());
    auto b_size = dtype_size(b.meta.dtype());
    return a_size != b_size ? a_size > b_size : a.name < b.name;
  });
}

// A tensor as a safetensors header lists it.
struct HeaderEntry {
  std::string_view name;
  const VariableMeta* meta;
};

// The start of a safetensors file holding `tensors` back to back in the
// order given: the length field, the JSON header (__metadata__ first when not
// empty) and its padding. `file` names the output in errors.
Result<std::string> safetensors_header_bytes(const std::vector<HeaderEntry>& tensors,
                                             const std::map<std::string, std::string>& metadata,
                                             const std::string& file);

class SafetensorsStaging {
 public:
  // The scratch file is created beside `destination` and unlinked at once.
  static Result<SafetensorsStaging> create(const std::filesystem::path& destination);
  SafetensorsStaging(SafetensorsStaging&& other) noexcept;
  SafetensorsStaging& operator=(SafetensorsStaging&&) = delete;
  ~SafetensorsStaging();

  // Refuses what safetensors cannot hold (dtype, name, size, a second add of
  // a name), then copies `data`; `output` names the destination in errors.
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data, const std::string& output);
  // In the order added.
  const std::vector<StagedTensor>& tensors() const { return tensors_; }

  // Adds `entries` to the __metadata__ written (CheckpointWriter::set_metadata);
  // refuses text that is not UTF-8, as the reader would.
  Status set_metadata(const TextMetadata& entries, const std::string& output);

  // Writes one safetensors file of `tensors` (taken from tensors()) to
  // `out`, laid out as the reference does: __metadata__ first, then widest
  // elements first, then by name.
  Status write_file(ByteSink& out, std::vector<StagedTensor> tensors) const;

 private:
  explicit SafetensorsStaging(std::unique_ptr<ScratchFile> scratch);
  std::unique_ptr<ScratchFile> scratch_;
  std::vector<StagedTensor> tensors_;
  std::unordered_set<std::string> names_;
  // As safetensors' save_torch_state_dict: the files say they hold torch-loadable tensors.
  TextMetadata metadata_ = {{"format", "pt"}};
};

// A tensor lying in one of several safetensors files, or split in chunks
// over them (spec/collective.md).
struct PlacedTensor {
  std::string name;
  VariableMeta meta;
  std::size_t file;     // index into the reader's files
  std::uint64_t start;  // of its bytes in that file
  std::vector<StoredChunk> chunks = {};  // when split: read from these, not from file and start
};

// A reader of `tensors` (sorted by name), each read as a window of its
// file, with the files' text metadata.
std::unique_ptr<CheckpointReader> placed_reader(std::string_view format, const std::filesystem::path& path,
                                                std::vector<std::shared_ptr<const FileSource>> files,
                                                std::vector<PlacedTensor> tensors, TextMetadata metadata);

}  // namespace ckpt::detail
