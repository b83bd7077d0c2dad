// A directory of "<variable>.npy" files as a CheckpointReader/CheckpointWriter
// (format "npy"), and its validator.
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "ckpt/format/npy.hpp"
#include "ckpt/format/writer.hpp"
#include "registry/formats.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

bool is_npy_file(const fs::directory_entry& entry) {
  std::error_code ec;
  const std::string file_name = entry.path().filename().string();
  return file_name.size() > kNpyExtension.size() && file_name.ends_with(kNpyExtension) && !entry.is_symlink(ec) &&
         entry.is_regular_file(ec);
}

std::string variable_of(const fs::path& file) {
  const std::string file_name = file.filename().string();
  return file_name.substr(0, file_name.size() - kNpyExtension.size());
}

// The entries of `directory`, sorted: the .npy files and everything else.
struct Listing {
  std::vector<fs::path> arrays;
  std::vector<fs::path> others;
};

Result<Listing> list_directory(const fs::path& directory) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec)) return Error(ErrorCode::kNotADirectory, "not a directory").in_file(directory.string());
  Listing listing;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    (is_npy_file(entry) ? listing.arrays : listing.others).push_back(entry.path());
  }
  if (ec) return Error(ErrorCode::kIo, ec.message()).in_file(directory.string());
  std::sort(listing.arrays.begin(), listing.arrays.end());
  std::sort(listing.others.begin(), listing.others.end());
  return listing;
}

// The file opened and its header read; errors name the file and variable.
struct OpenedArray {
  std::shared_ptr<const FileSource> file;
  NpyHeader header;
};

// Opens `file` by path, or by its name under `directory` when a reader holds one.
Result<OpenedArray> open_array(const fs::path& file, std::string_view name, const NpyReadOptions& options,
                               std::vector<Error>* warnings = nullptr, const ReadDirectory* directory = nullptr) {
  auto opened = [&]() -> Result<OpenedArray> {
    CKPT_TRY(check_variable_name(name));
    CKPT_ASSIGN_OR_RETURN(FileSource source, directory != nullptr
                                                 ? FileSource::open_at(directory->fd(), file.filename(), file)
                                                 : FileSource::open(file));
    auto shared = std::make_shared<const FileSource>(std::move(source));
    CKPT_ASSIGN_OR_RETURN(NpyHeader header, read_npy_header(*shared, options, warnings));
    return OpenedArray{std::move(shared), std::move(header)};
  }();
  if (!opened.ok()) return std::move(std::move(opened).error().in_file(file.string()).in_variable(name));
  return opened;
}

// Reads every file through the directory it opened (ReadDirectory), so a
// directory replaced at its path meanwhile is read to the end, never mixed.
class NpyDirectoryReader final : public CheckpointReader {
 public:
  NpyDirectoryReader(fs::path directory, std::shared_ptr<const ReadDirectory> opened, std::vector<TensorInfo> tensors,
                     NpyReadOptions options)
      : directory_(std::move(directory)), opened_(std::move(opened)), tensors_(std::move(tensors)), options_(options) {}

  std::string_view format_name() const override { return "npy"; }
  const fs::path& path() const override { return directory_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    const TensorInfo* tensor = find(name);
    const fs::path file = directory_ / (std::string(name) + std::string(kNpyExtension));
    if (tensor == nullptr) {
      return std::move(Error(ErrorCode::kUnknownVariable, "no such array").in_file(file.string()).in_variable(name));
    }
    CKPT_ASSIGN_OR_RETURN(OpenedArray array, open_array(file, name, options_, nullptr, opened_.get()));
    if (!(array.header.meta == tensor->meta)) {
      return std::move(Error(ErrorCode::kNpyHeader,
                             fmt::format("was {} {} when the directory was opened, now {} {}",
                                         dtype_name(tensor->meta.dtype()), shape_to_string(tensor->meta.shape()),
                                         dtype_name(array.header.meta.dtype()),
                                         shape_to_string(array.header.meta.shape())))
                           .in_file(file.string())
                           .in_variable(name));
    }
    auto data = open_npy_data(std::move(array.file), array.header, options_);
    if (!data.ok()) return std::move(std::move(data).error().in_file(file.string()).in_variable(name));
    return data;
  }

 private:
  fs::path directory_;
  std::shared_ptr<const ReadDirectory> opened_;
  std::vector<TensorInfo> tensors_;
  NpyReadOptions options_;
};

class NpyDirectoryWriter final : public CheckpointWriter {
 public:
  explicit NpyDirectoryWriter(AtomicDirectory directory) : directory_(std::move(directory)) {}

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    const fs::path file_name = std::string(name) + std::string(kNpyExtension);
    auto status = [&]() -> Status {
      CKPT_TRY(check_variable_name(name));
      CKPT_TRY(check_npy_data(meta, data));
      if (!names_.emplace(name).second) return Error(ErrorCode::kDuplicateName, "added twice to the same directory");
      CKPT_ASSIGN_OR_RETURN(FileSink file, directory_.create_file(file_name));
      CKPT_TRY(write_npy(file, meta, data));
      return file.finish();
    }();
    if (!status.ok()) {
      return std::move(std::move(status).error().in_file((directory_.destination() / file_name).string()).in_variable(name));
    }
    return {};
  }

  Status commit() override {
    if (names_.empty()) {
      // The reader (and numpy's loaders) would find no array in it.
      return Error(ErrorCode::kNotACheckpoint, "nothing was added: a directory without .npy files is no checkpoint")
          .in_file(directory_.destination().string());
    }
    return directory_.commit();
  }

 private:
  AtomicDirectory directory_;
  std::set<std::string, std::less<>> names_;
};

bool looks_like_npy_directory(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (is_npy_file(entry)) return true;
  }
  return false;
}

Result<std::vector<TensorInfo>> read_headers(const Listing& listing, const ReadDirectory& opened,
                                             const NpyReadOptions& options) {
  std::vector<TensorInfo> tensors;
  for (const fs::path& file : listing.arrays) {
    std::string name = variable_of(file);
    CKPT_ASSIGN_OR_RETURN(OpenedArray array, open_array(file, name, options, nullptr, &opened));
    tensors.push_back({std::move(name), std::move(array.header.meta)});
  }
  return tensors;
}

Result<std::unique_ptr<CheckpointReader>> open_npy_directory(const fs::path& path, const OpenOptions& options) {
  // The listing reads by path; the directory must still be the one opened
  // after it, else a writer swapped it meanwhile and we look again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto opened = ReadDirectory::open(path);
    CKPT_ASSIGN_OR_RETURN(Listing listing, list_directory(path));
    if (!opened.ok()) return std::move(opened).error();
    if (listing.arrays.empty()) return Error(ErrorCode::kNotACheckpoint, "no .npy file").in_file(path.string());
    auto tensors = read_headers(listing, **opened, options.npy);
    if (!(*opened)->still_at(path)) {
      if (attempt < kAttempts) continue;
      return Error(ErrorCode::kBusy, "replaced repeatedly while being opened").in_file(path.string());
    }
    if (!tensors.ok()) return std::move(tensors).error();
    return std::unique_ptr<CheckpointReader>(std::make_unique<NpyDirectoryReader>(
        path, std::move(opened).value(), std::move(tensors).value(), options.npy));
  }
}

Result<std::unique_ptr<CheckpointWriter>> create_npy_directory(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(AtomicDirectory directory, AtomicDirectory::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<NpyDirectoryWriter>(std::move(directory)));
}

ValidationReport validate_with_options(const fs::path& path, const OpenOptions& options) {
  return validate_npy_directory(path, options.npy);
}

}  // namespace

ValidationReport validate_npy_directory(const fs::path& directory, const NpyReadOptions& options) {
  auto listing = list_directory(directory);
  if (!listing.ok()) return detail::unreadable_report(directory, listing.error());
  ValidationReport report;
  report.path = directory;
  for (const fs::path& other : listing->others) {
    report.issues.push_back(make_issue(
        Error(ErrorCode::kUnexpectedEntry, "not a regular .npy file, ignored").in_file(other.string()),
        Severity::kWarning));
  }
  for (const fs::path& file : listing->arrays) {
    const std::string name = variable_of(file);
    std::vector<Error> warnings;
    auto array = open_array(file, name, options, &warnings);
    for (Error& warning : warnings) report.issues.push_back(make_issue(warning.in_variable(name), Severity::kWarning));
    if (!array.ok()) {
      report.issues.push_back(make_issue(array.error(), Severity::kError));
      continue;
    }
    report.variables.push_back(VariableInfo{name, array->header.meta, array->header.meta.byte_size()});
  }
  detail::require_some_variable(report, ".npy file");
  return report;
}

namespace detail {

const FormatHandler& npy_format() {
  static const FormatHandler handler{"npy", looks_like_npy_directory, open_npy_directory, create_npy_directory,
                                     validate_with_options};
  return handler;
}

}  // namespace detail
}  // namespace ckpt
