// OneFlow directories as CheckpointReader/CheckpointWriter: "oneflow" for
// the snapshot layouts, "oneflow-pickle" for the P1 pickle directory.
#include <algorithm>
#include <span>

#include <sys/stat.h>

#include <fmt/format.h>

#include "ckpt/format/oneflow_pickle.hpp"
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"
#include "registry/formats.hpp"
#include "pickle/pickle_checkpoint.hpp"

namespace ckpt::detail {
namespace {

namespace fs = std::filesystem;

// The array tensors of a P1 object (none for other layouts), sorted by name.
std::span<const PickleArrayRef> array_tensors(const Snapshot& snapshot) {
  if (snapshot.pickle() == nullptr) return {};
  return snapshot.pickle()->arrays;
}

// Every layout Snapshot reads; a P1 directory also keeps its object, whose
// array tensors are read from the pickle, the others from their directories.
class OneFlowReader final : public CheckpointReader {
 public:
  OneFlowReader(std::string_view format, Snapshot snapshot, std::vector<TensorInfo> tensors)
      : format_(format), snapshot_(std::move(snapshot)), tensors_(std::move(tensors)) {}

  std::string_view format_name() const override { return format_; }
  std::string_view layout() const override { return layout_id(snapshot_.layout()); }
  const fs::path& path() const override { return snapshot_.root(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    auto arrays = array_tensors(snapshot_);
    auto array = std::lower_bound(arrays.begin(), arrays.end(), name,
                                  [](const PickleArrayRef& ref, std::string_view key) { return ref.name < key; });
    if (array != arrays.end() && array->name == name) {
      return pickle::open_numpy_array(*array->node, (snapshot_.root() / kPickleFile).string(), name);
    }
    return snapshot_.open_values(name);
  }

  const pickle::Value* object() const override { return snapshot_.pickle() ? snapshot_.pickle()->data : nullptr; }

 private:
  std::string_view format_;
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
                 "no meta (OneFlow lazy L0 layout): give its dtype and shape in a shape table")
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

bool is_pickle_dir(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path / kPickleFile, ec);
}

// A snapshot of any layout but P1, which oneflow-pickle claims.
bool looks_like_snapshot(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec) || is_pickle_dir(path)) return false;
  for (std::string_view marker : {kDoneFile, kGraphFile}) {
    if (fs::exists(path / marker, ec)) return true;
  }
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_directory(ec) && fs::is_regular_file(entry.path() / kDataFile, ec)) return true;
  }
  return false;
}

bool looks_like_pickle_dir(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && is_pickle_dir(path);
}

Result<std::unique_ptr<CheckpointReader>> open_as(std::string_view format, const fs::path& path,
                                                  const OpenOptions& options) {
  // P1's pickled_data is read by path while the directory is scanned: if a
  // writer replaced the directory meanwhile, it may be the next generation's,
  // so everything is opened again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    CKPT_ASSIGN_OR_RETURN(Snapshot snapshot, Snapshot::open(path, options.pickle_policy));
    if (snapshot.layout() == Layout::kPickleDir && snapshot.replaced()) {
      if (attempt < kAttempts) continue;
      return Error(ErrorCode::kBusy, "replaced repeatedly while being opened").in_file(path.string());
    }
    std::vector<TensorInfo> tensors;
    for (const auto& variable : snapshot.variables()) {
      CKPT_ASSIGN_OR_RETURN(VariableMeta meta, meta_of(variable, snapshot, options.shapes));
      tensors.push_back({variable.name, std::move(meta)});
    }
    for (const PickleArrayRef& array : array_tensors(snapshot)) tensors.push_back({array.name, array.meta, true});
    std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return std::unique_ptr<CheckpointReader>(
        std::make_unique<OneFlowReader>(format, std::move(snapshot), std::move(tensors)));
  }
}

Result<std::unique_ptr<CheckpointReader>> open_snapshot(const fs::path& path, const OpenOptions& options) {
  return open_as("oneflow", path, options);
}

Result<std::unique_ptr<CheckpointReader>> open_pickle_dir(const fs::path& path, const OpenOptions& options) {
  if (!is_pickle_dir(path)) {
    return Error(ErrorCode::kNotACheckpoint, fmt::format("no {}: not a OneFlow pickle directory", kPickleFile))
        .in_file(path.string());
  }
  return open_as("oneflow-pickle", path, options);
}

Result<std::unique_ptr<CheckpointWriter>> create_snapshot(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(SnapshotWriter writer, SnapshotWriter::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<OneFlowWriter>(std::move(writer)));
}

ValidationReport validate_oneflow(const fs::path& path, const OpenOptions& options) {
  return validate_snapshot(path, options.pickle_policy);
}

Result<std::unique_ptr<CheckpointWriter>> create_pickle_dir(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(OneflowPickleWriter writer, OneflowPickleWriter::create(path, {.write = std::move(options)}));
  return std::unique_ptr<CheckpointWriter>(
      std::make_unique<PickleCheckpointWriter<OneflowPickleWriter>>(std::move(writer), path.string()));
}

}  // namespace

const FormatHandler& oneflow_format() {
  static const FormatHandler handler{.name = "oneflow",
                                     .summary = "a OneFlow snapshot directory (<variable>/out, <variable>/meta, "
                                                "snapshot_done; layouts L0, L1/E1, G1)",
                                     .extensions = {},
                                     .kind = FormatKind::kDirectory,
                                     .detect = looks_like_snapshot,
                                     .open = open_snapshot,
                                     .create = create_snapshot,
                                     .validate = validate_oneflow};
  return handler;
}

const FormatHandler& oneflow_pickle_format() {
  static const FormatHandler handler{.name = "oneflow-pickle",
                                     .summary = "a OneFlow 0.6+ pickle directory (pickled_data + tensor_N/; layout P1)",
                                     .extensions = {},
                                     .kind = FormatKind::kDirectory,
                                     .detect = looks_like_pickle_dir,
                                     .open = open_pickle_dir,
                                     .create = create_pickle_dir,
                                     .validate = validate_oneflow};
  return handler;
}

}  // namespace ckpt::detail
