// PyTorch files (torch.save zip and legacy, TorchScript archives) as a
// CheckpointReader, and torch.save zips as a CheckpointWriter.
#include <algorithm>

#include "ckpt/format/torch_file.hpp"
#include "registry/formats.hpp"
#include "pickle/pickle_allowlist.hpp"
#include "pickle/pickle_checkpoint.hpp"

namespace ckpt::detail {
namespace {

namespace fs = std::filesystem;

class TorchReader final : public CheckpointReader {
 public:
  explicit TorchReader(TorchFile file) : file_(std::move(file)) {
    for (const TorchTensorRef& tensor : file_.tensors()) {
      tensors_.push_back({tensor.name, tensor.meta, tensor.is_numpy_array()});
    }
  }

  std::string_view format_name() const override { return "torch"; }
  std::string_view layout() const override {
    if (file_.is_legacy()) return "legacy";
    return file_.is_torchscript() ? "torchscript" : "zip";
  }
  const fs::path& path() const override { return file_.path(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override { return file_.open_tensor(name); }
  // A TorchScript archive's modules are stubs: its tensors convert as a flat state_dict.
  const pickle::Value* object() const override { return file_.is_torchscript() ? nullptr : &file_.data(); }

 private:
  TorchFile file_;
  std::vector<TensorInfo> tensors_;  // in file_.tensors() order: by name
};

// A legacy file's magic number, or a zip (local header first) with a
// <root>/data.pkl record; .npz archives hold .npy members at the top instead.
bool looks_like_torch(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto file = FileSource::open(path);
  if (file.ok() && is_legacy_torch(*file)) return true;
  if (!file.ok() || sniff_zip(*file) != ZipStart::kMember) return false;
  auto zip = ZipReader::open(*file);
  return zip.ok() && std::any_of(zip->entries().begin(), zip->entries().end(), [](const ZipEntry& entry) {
           auto slash = entry.name.find('/');
           return slash != std::string::npos && std::string_view(entry.name).substr(slash + 1) == "data.pkl";
         });
}

Result<std::unique_ptr<CheckpointReader>> open_torch(const fs::path& path, const OpenOptions& options) {
  CKPT_ASSIGN_OR_RETURN(TorchFile file, TorchFile::open(path, options.pickle_policy));
  return std::unique_ptr<CheckpointReader>(std::make_unique<TorchReader>(std::move(file)));
}

Result<std::unique_ptr<CheckpointWriter>> create_torch(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(TorchWriter writer, TorchWriter::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(
      std::make_unique<PickleCheckpointWriter<TorchWriter>>(std::move(writer), path.string()));
}

// Every problem of the archive's layout and pickle (the first ends it) and of
// each tensor (all of them); the sound tensors are listed.
ValidationReport validate_torch(const fs::path& path, const OpenOptions& options) {
  CollectAll problems;
  auto file = TorchFile::open(path, problems, options.pickle_policy);
  ValidationReport report;
  report.path = path;
  if (file) {
    for (const TorchTensorRef& tensor : file->tensors()) {
      report.variables.push_back({.name = tensor.name,
                                  .meta = tensor.meta,
                                  .byte_size = tensor.meta.byte_size(),
                                  .numpy_array = tensor.is_numpy_array()});
    }
  }
  report.issues = std::move(problems.issues());
  return report;
}

}  // namespace

const FormatHandler& torch_format() {
  static constexpr std::string_view kExtensions[] = {".pt", ".pth", ".bin"};
  static const FormatHandler handler{.name = "torch",
                                     .summary = "a torch.save file: zip (torch >= 1.6), legacy (torch < 1.6) or TorchScript; written as zip",
                                     .extensions = kExtensions,
                                     .kind = FormatKind::kFile,
                                     .detect = looks_like_torch,
                                     .open = open_torch,
                                     .create = create_torch,
                                     .validate = validate_torch,
                                     .dtype_label = pickle::detail::torch_storage_class};
  return handler;
}

}  // namespace ckpt::detail
