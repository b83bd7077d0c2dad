// The OneFlow snapshot directory as a CheckpointReader/CheckpointWriter.
#include <sys/stat.h>

#include <fmt/format.h>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"
#include "formats.hpp"

namespace ckpt::detail {
namespace {

namespace fs = std::filesystem;

class OneFlowReader final : public CheckpointReader {
 public:
  OneFlowReader(Snapshot snapshot, std::vector<TensorInfo> tensors)
      : snapshot_(std::move(snapshot)), tensors_(std::move(tensors)) {}

  std::string_view format_name() const override { return "oneflow"; }
  const fs::path& path() const override { return snapshot_.root(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    CKPT_ASSIGN_OR_RETURN(FileSource source, snapshot_.open_data(name));
    return std::unique_ptr<ByteSource>(std::make_unique<FileSource>(std::move(source)));
  }

 private:
  Snapshot snapshot_;
  std::vector<TensorInfo> tensors_;
};

class OneFlowWriter final : public CheckpointWriter {
 public:
  explicit OneFlowWriter(SnapshotWriter writer) : writer_(std::move(writer)) {}
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    return writer_.add(name, meta, data);
  }
  Status commit() override { return writer_.commit(); }

 private:
  SnapshotWriter writer_;
};

// A variable's meta: its own, or from the shape table when the layout has
// none (L0). A table entry must agree with the bytes on disk.
Result<VariableMeta> meta_of(const VariableInfo& variable, const Snapshot& snapshot, const ShapeTable* shapes) {
  if (variable.meta) return *variable.meta;
  fs::path data = snapshot.data_path(variable.name);
  auto entry = shapes != nullptr ? shapes->find(variable.name) : ShapeTable::const_iterator{};
  if (shapes == nullptr || entry == shapes->end()) {
    return Error(ErrorCode::kMetaMissing,
                 "no meta (OneFlow lazy L0 layout): give its dtype and shape in a shape table (--shapes FILE.json)")
        .in_variable(variable.name)
        .in_file(data.string());
  }
  const VariableMeta& meta = entry->second;
  if (meta.byte_size() != variable.byte_size) {
    return Error(ErrorCode::kDataSizeMismatch,
                 fmt::format("the shape table says {} {} = {} bytes, out has {}", dtype_name(meta.dtype()),
                             shape_to_string(meta.shape()), meta.byte_size(), variable.byte_size))
        .in_variable(variable.name)
        .in_file(data.string());
  }
  return meta;
}

bool looks_like_snapshot(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  for (std::string_view marker : {kDoneFile, kPickleFile, kGraphFile}) {
    if (fs::exists(path / marker, ec)) return true;
  }
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_directory(ec) && fs::is_regular_file(entry.path() / kDataFile, ec)) return true;
  }
  return false;
}

Result<std::unique_ptr<CheckpointReader>> open_snapshot(const fs::path& path, const OpenOptions& options) {
  CKPT_ASSIGN_OR_RETURN(Snapshot snapshot, Snapshot::open(path));
  std::vector<TensorInfo> tensors;
  for (const auto& variable : snapshot.variables()) {
    CKPT_ASSIGN_OR_RETURN(VariableMeta meta, meta_of(variable, snapshot, options.shapes));
    tensors.push_back({variable.name, std::move(meta)});
  }
  return std::unique_ptr<CheckpointReader>(std::make_unique<OneFlowReader>(std::move(snapshot), std::move(tensors)));
}

Result<std::unique_ptr<CheckpointWriter>> create_snapshot(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(SnapshotWriter writer, SnapshotWriter::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<OneFlowWriter>(std::move(writer)));
}

ValidationReport validate_oneflow(const fs::path& path, const OpenOptions&) { return validate_snapshot(path); }

}  // namespace

const FormatHandler& oneflow_format() {
  static const FormatHandler handler{"oneflow", looks_like_snapshot, open_snapshot, create_snapshot,
                                     validate_oneflow};
  return handler;
}

}  // namespace ckpt::detail
