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
#include "ckpt/format/meta.hpp"

namespace ckpt {

enum class Layout {
  kSnapshot,   // L1/E1: meta + out per variable, snapshot_done
  kLazy,       // L0: out only, snapshot_done
  kGraph,      // G1: model.mlir + variable directories
  kPickleDir,  // P1: pickled_data + tensor_N/
};

// "oneflow-snapshot", "oneflow-lazy", "oneflow-graph", "oneflow-pickle".
std::string_view layout_format_name(Layout layout);

inline constexpr std::string_view kDataFile = "out";
inline constexpr std::string_view kMetaFile = "meta";
inline constexpr std::string_view kDoneFile = "snapshot_done";
inline constexpr std::string_view kPickleFile = "pickled_data";
inline constexpr std::string_view kGraphFile = "model.mlir";

struct VariableInfo {
  std::string name;
  std::optional<VariableMeta> meta;  // absent in L0
  std::uint64_t byte_size = 0;       // size of `out`
};

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
  static Result<Snapshot> open(const std::filesystem::path& root);

  const std::filesystem::path& root() const { return root_; }
  Layout layout() const { return layout_; }
  const std::vector<VariableInfo>& variables() const { return variables_; }
  const VariableInfo* find(std::string_view name) const;

  // Fails with kUnknownVariable for a name the snapshot does not have.
  Result<const VariableInfo*> get(std::string_view name) const;
  // Whether root() now names another directory than the one opened (a
  // writer replaced it): what is read by path since then is not this one.
  bool replaced() const { return !directory_->still_at(root_); }
  std::filesystem::path data_path(std::string_view name) const;

  // The whole variable into `out`, which must be exactly its size.
  Status read(std::string_view name, std::span<std::byte> out) const;
  // The variable as a byte source (the `out` file, opened).
  Result<FileSource> open_data(std::string_view name) const;
  Result<MappedBytes> map(std::string_view name) const;
  // Calls `consume` with consecutive pieces of at most `chunk_bytes`.
  Status read_chunks(std::string_view name, std::size_t chunk_bytes,
                     const std::function<Status(std::span<const std::byte>)>& consume) const;

 private:
  Snapshot(std::filesystem::path root, std::shared_ptr<const ReadDirectory> directory, Layout layout,
           std::vector<VariableInfo> variables, std::map<std::string, std::string, std::less<>> pickle_directories)
      : root_(std::move(root)), directory_(std::move(directory)), layout_(layout), variables_(std::move(variables)),
        directories_(std::move(pickle_directories)) {}

  std::filesystem::path root_;
  std::shared_ptr<const ReadDirectory> directory_;
  Layout layout_;
  std::vector<VariableInfo> variables_;
  std::map<std::string, std::string, std::less<>> directories_;  // P1: variable -> tensor_N

  // The directory holding a variable's files: its name, or its P1 tensor_N.
  std::string_view directory_of(std::string_view name) const;
};

}  // namespace ckpt
