// Reading a OneFlow per-variable checkpoint directory.
//
//   <root>/<variable>/out     raw element bytes, C order, little-endian
//   <root>/<variable>/meta    text protobuf: shape and data type (absent in L0)
//   <root>/snapshot_done      empty marker written last (L0, L1, E1)
//
// Layouts (spec/layouts.md): L0 lazy without meta, L1/E1 with meta, G1 graph
// export (model.mlir, no marker), P1 pickle directory (pickled_data +
// tensor_N/). Opening fails fast on the first problem; validate() collects
// all of them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/read_options.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/validation.hpp"

namespace ckpt {

struct OneflowPickle;

enum class Layout {
  kSnapshot,   // L1/E1: meta + out per variable, snapshot_done
  kLazy,       // L0: out only, snapshot_done
  kGraph,      // G1: model.mlir + variable directories
  kPickleDir,  // P1: pickled_data + tensor_N/
};

// The generation's short name, as reports print it beside the format:
// "L0", "L1/E1", "G1", "P1".
std::string_view layout_id(Layout layout);

inline constexpr std::string_view kDataFile = "out";
inline constexpr std::string_view kMetaFile = "meta";
inline constexpr std::string_view kDoneFile = "snapshot_done";
inline constexpr std::string_view kPickleFile = "pickled_data";
inline constexpr std::string_view kGraphFile = "model.mlir";

// A read-only mapping of one variable's bytes; unmapped on destruction.
class MappedBytes {
 public:
  MappedBytes() = default;
  MappedBytes(MappedBytes&& other) noexcept;
  MappedBytes& operator=(MappedBytes&& other) noexcept;
  MappedBytes(const MappedBytes&) = delete;
  MappedBytes& operator=(const MappedBytes&) = delete;
  ~MappedBytes();

  static Result<MappedBytes> map(const FileSource& file);
  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(address_), size_}; }

 private:
  void* address_ = nullptr;
  std::size_t size_ = 0;
};

class Snapshot {
 public:
  // Opens the directory (ReadDirectory: every later read goes through it,
  // and a writer replacing it keeps this generation until the Snapshot and
  // its sources are gone), detects the layout, lists the variables (sorted by name) and checks each
  // meta against its `out`. P1 variables are the tensors of pickled_data,
  // named by their dotted keys (oneflow_pickle.hpp).
  // `policy`: what P1's pickled_data may hold beyond the allow-list.
  static Result<Snapshot> open(const std::filesystem::path& root, const pickle::PicklePolicy& policy = {});

  const std::filesystem::path& root() const { return root_; }
  Layout layout() const { return layout_; }
  // meta is absent in L0; byte_size is the size of `out`.
  const std::vector<VariableInfo>& variables() const { return variables_; }
  const VariableInfo* find(std::string_view name) const;

  // Fails with kUnknownVariable for a name the snapshot does not have.
  Result<const VariableInfo*> get(std::string_view name) const;
  // Whether root() now names another directory than the one opened (a
  // writer replaced it): what is read by path since then is not this one.
  bool replaced() const { return !directory_->still_at(root_); }
  std::filesystem::path data_path(std::string_view name) const;
  // P1: pickled_data as read while opening; nullptr for the other layouts.
  const OneflowPickle* pickle() const { return pickle_.get(); }

  // The whole variable (open_values) into `out`, which must be exactly its size.
  Status read(std::string_view name, std::span<std::byte> out) const;
  // The `out` file, opened; its bytes as they are on disk.
  Result<FileSource> open_data(std::string_view name) const;
  // The variable's values as its meta describes them: `out`, or for E480
  // its float32 values rounded to bfloat16. read() gives the same bytes.
  Result<std::unique_ptr<ByteSource>> open_values(std::string_view name) const;
  // map and read_chunks give the bytes of `out` as they are on disk.
  Result<MappedBytes> map(std::string_view name) const;
  // Calls `consume` with consecutive pieces of at most `chunk_bytes`.
  Status read_chunks(std::string_view name, std::size_t chunk_bytes,
                     const std::function<Status(std::span<const std::byte>)>& consume) const;

 private:
  Snapshot(std::filesystem::path root, std::shared_ptr<const ReadDirectory> directory, Layout layout,
           std::vector<VariableInfo> variables, std::map<std::string, std::string, std::less<>> pickle_directories,
           std::shared_ptr<const OneflowPickle> pickle)
      : root_(std::move(root)), directory_(std::move(directory)), layout_(layout), variables_(std::move(variables)),
        directories_(std::move(pickle_directories)), pickle_(std::move(pickle)) {}

  std::filesystem::path root_;
  std::shared_ptr<const ReadDirectory> directory_;
  Layout layout_;
  std::vector<VariableInfo> variables_;
  std::map<std::string, std::string, std::less<>> directories_;  // P1: variable -> tensor_N
  std::shared_ptr<const OneflowPickle> pickle_;

  // The directory holding a variable's files: its name, or its P1 tensor_N.
  std::string_view directory_of(std::string_view name) const;
};

// Every rule of spec/validation.md checked, every problem collected; the
// report's layout is layout_id() of what was recognised.
ValidationReport validate_snapshot(const std::filesystem::path& root, const pickle::PicklePolicy& policy = {});

}  // namespace ckpt
