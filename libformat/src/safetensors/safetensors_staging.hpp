// What the safetensors writers and readers share. A safetensors file starts
// with a header that needs every tensor's size. When the writer is told every
// tensor up front (CheckpointWriter::plan), PlannedTensors lays out the files
// at once and each tensor's bytes go straight to their place, once, from any
// thread. Otherwise SafetensorsStaging copies each tensor added to an
// unlinked scratch file and write_file() lays out a whole file from it at
// commit. Shared by the single-file writer and the sharded one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/meta.hpp"
#include "ckpt/format/tensor_chunks.hpp"

namespace ckpt::detail {

class ScratchFile;

// Refuses what safetensors cannot hold: a dtype without a safetensors name,
// a name that is not UTF-8 or is the metadata key; `output` names the
// destination in errors.
Status check_safetensors_tensor(std::string_view name, const VariableMeta& meta, const std::string& output);

// One safetensors file laid out as the reference does: __metadata__ first
// when not empty, then widest elements first, then by name.
struct SafetensorsLayout {
  std::string header;                // the length field and the padded JSON
  std::vector<std::uint64_t> start;  // of each tensor's bytes in the file, in the order given
};
Result<SafetensorsLayout> layout_safetensors_file(std::span<const TensorInfo> tensors,
                                                  const std::map<std::string, std::string>& metadata,
                                                  const std::string& output);

// Every tensor a writer will be given, each placed in one of its files.
class PlannedTensors {
 public:
  // Checks each tensor and that no name comes twice; `tensors` in the order
  // the writer will be given them.
  static Result<PlannedTensors> create(std::span<const TensorInfo> tensors, const std::string& output);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Lays out `file` with the tensors of indexes `members` (into tensors()),
  // writes its header and keeps their places; `file` must outlive this.
  Status place_in(const FileSink& file, std::span<const std::size_t> members,
                  const std::map<std::string, std::string>& metadata);
  // Writes a planned tensor's bytes at its place; threads may add different
  // tensors at once.
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data);
  // Fails unless every planned tensor was added.
  Status check_complete() const;

 private:
  struct Place {
    const FileSink* file = nullptr;
    std::uint64_t start = 0;
  };
  PlannedTensors(std::vector<TensorInfo> tensors, std::string output);
  std::vector<TensorInfo> tensors_;  // in the order planned
  std::unordered_map<std::string, std::size_t> index_;     // name -> index into tensors_
  std::vector<Place> places_;                                // by index into tensors_
  std::unique_ptr<std::mutex> mutex_;    // guards added_ (movable owner)
  std::vector<bool> added_;
  std::string output_;
};

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

  // Refuses what safetensors cannot hold (check_safetensors_tensor), a size
  // other than the meta's or a second add of a name, then copies `data`.
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data, const std::string& output);
  // In the order added.
  const std::vector<StagedTensor>& tensors() const { return tensors_; }

  // Adds `entries` to the __metadata__ written (CheckpointWriter::set_metadata);
  // refuses text that is not UTF-8, as the reader would.
  Status set_metadata(const TextMetadata& entries, const std::string& output);

  // Writes one safetensors file of `tensors` (taken from tensors()) to
  // `out`, laid out by layout_safetensors_file with the metadata set.
  Status write_file(ByteSink& out, std::vector<StagedTensor> tensors) const;
  // The __metadata__ written: {"format": "pt"} and what set_metadata added.
  const TextMetadata& metadata() const { return metadata_; }

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
