// A directory of "<variable>.npy" files as a CheckpointReader/CheckpointWriter
// (format "npy"), and its validator. A single .npy file reads as a checkpoint
// of one tensor named by the file's stem (or OpenOptions::tensor_name).
#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <set>

#include <sys/resource.h>

#include <fmt/format.h>

#include "ckpt/format/npy.hpp"
#include "ckpt/format/names.hpp"
#include "ckpt/format/problems.hpp"
#include "registry/formats.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

bool has_npy_name(const fs::directory_entry& entry) {
  const std::string file_name = entry.path().filename().string();
  return file_name.size() > kNpyExtension.size() && file_name.ends_with(kNpyExtension);
}

bool is_npy_file(const fs::directory_entry& entry) {
  std::error_code ec;
  return has_npy_name(entry) && !entry.is_symlink(ec) && entry.is_regular_file(ec);
}

// What an entry named like an array is when it is not a regular file.
std::string_view irregular_kind(const fs::directory_entry& entry) {
  std::error_code ec;
  if (entry.is_symlink(ec)) return entry.exists(ec) ? "a symbolic link" : "a dangling symbolic link";
  if (entry.is_fifo(ec)) return "a FIFO";
  if (entry.is_directory(ec)) return "a directory";
  return "not a regular file";
}

std::string variable_of(const fs::path& file) {
  const std::string file_name = file.filename().string();
  return file_name.substr(0, file_name.size() - kNpyExtension.size());
}

// The entries of `directory`, sorted: the .npy files and everything else.
struct Listing {
  std::vector<fs::path> arrays;
  // Named like arrays but not regular files: refused, never skipped silently,
  // since a conversion would otherwise drop a variable.
  std::vector<Error> irregular_arrays;
  std::vector<fs::path> others;
};

Result<Listing> list_directory(const fs::path& directory) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec)) return Error(ErrorCode::kNotADirectory, "not a directory").in_file(directory.string());
  Listing listing;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (is_npy_file(entry)) {
      listing.arrays.push_back(entry.path());
    } else if (has_npy_name(entry)) {
      listing.irregular_arrays.push_back(
          Error(ErrorCode::kDataNotFile, fmt::format("{}, not a regular .npy file; not read", irregular_kind(entry)))
              .in_file(entry.path().string())
              .in_variable(variable_of(entry.path())));
    } else {
      listing.others.push_back(entry.path());
    }
  }
  if (ec) return Error(ErrorCode::kIo, ec.message()).in_file(directory.string());
  // One directory: comparing whole strings orders as the file names do, and
  // without path::compare splitting both paths into components each time.
  auto by_string = [](const fs::path& a, const fs::path& b) { return a.native() < b.native(); };
  std::sort(listing.arrays.begin(), listing.arrays.end(), by_string);
  std::sort(listing.others.begin(), listing.others.end());
  std::sort(listing.irregular_arrays.begin(), listing.irregular_arrays.end(),
            [](const Error& a, const Error& b) { return a.file() < b.file(); });
  return listing;
}

// The file opened and its header read; errors name the file and variable.
struct OpenedArray {
  std::shared_ptr<const FileSource> file;
  NpyHeader header;
};

// What opening the checkpoint learnt of one array, for its reads.
struct ArrayRecord {
  NpyHeader header;
  FileVersion version;
};

// Files kept open from reading their header to the first read of their
// array, which then costs no second open (a directory of thousands of small
// arrays reads at the speed of a plain open/read/close loop). All readers of
// the process together keep at most a quarter of its descriptor limit; the
// arrays beyond it are opened again when read.
class KeptFiles {
 public:
  explicit KeptFiles(std::size_t count) : files_(count) {}
  KeptFiles(const KeptFiles&) = delete;
  KeptFiles& operator=(const KeptFiles&) = delete;
  ~KeptFiles() {
    for (const auto& file : files_) {
      if (file != nullptr) held_.fetch_sub(1);
    }
  }

  // Keeps `file` for array `index` while the budget allows.
  void offer(std::size_t index, std::shared_ptr<const FileSource> file) {
    if (held_.fetch_add(1) < limit()) {
      files_[index] = std::move(file);
    } else {
      held_.fetch_sub(1);
    }
  }
  // The file kept for array `index`, handed over once; null otherwise.
  std::shared_ptr<const FileSource> take(std::size_t index) {
    std::shared_ptr<const FileSource> file;
    {
      std::lock_guard lock(mutex_);
      file = std::move(files_[index]);
    }
    if (file != nullptr) held_.fetch_sub(1);
    return file;
  }

 private:
  static long limit() {
    static const long quarter = [] {
      rlimit limit{};
      if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 256L;
      return static_cast<long>(limit.rlim_cur / 4);
    }();
    return quarter;
  }
  static inline std::atomic<long> held_{0};

  std::mutex mutex_;
  std::vector<std::shared_ptr<const FileSource>> files_;
};

// Opens `file` by path, or by its name under `directory` when a reader holds
// one; never through a symbolic link.
std::optional<OpenedArray> open_array(const fs::path& file, std::string_view name, const NpyReadOptions& options,
                                      ProblemSink& problems, const ReadDirectory* directory = nullptr) {
  InContext in_array(problems, file.string(), std::string(name));
  if (auto valid = check_entry_name(name); !valid.ok()) {
    in_array.error(std::move(valid).error());
    return std::nullopt;
  }
  auto source = directory != nullptr ? FileSource::open_at(directory->fd(), file.filename(), file, FollowSymlink::kNo)
                                     : FileSource::open(file, FollowSymlink::kNo);
  if (!source.ok()) {
    in_array.error(std::move(source).error());
    return std::nullopt;
  }
  auto shared = std::make_shared<const FileSource>(std::move(source).value());
  auto header = read_npy_header(*shared, options, in_array);
  if (!header) return std::nullopt;
  return OpenedArray{std::move(shared), std::move(*header)};
}

Result<OpenedArray> open_array(const fs::path& file, std::string_view name, const NpyReadOptions& options,
                               const ReadDirectory* directory = nullptr) {
  FailFast problems;
  auto array = open_array(file, name, options, problems, directory);
  CKPT_TRY(problems.status());
  return std::move(*array);
}

// One .npy file, or a directory of them read through the directory it opened
// (ReadDirectory), so a directory replaced at its path meanwhile is read to
// the end, never mixed.
class NpyReader final : public CheckpointReader {
 public:
  // `records` and `kept` in the order of `tensors`.
  NpyReader(fs::path path, std::shared_ptr<const ReadDirectory> opened, std::vector<TensorInfo> tensors,
            std::vector<ArrayRecord> records, std::unique_ptr<KeptFiles> kept, NpyReadOptions options)
      : path_(std::move(path)), opened_(std::move(opened)), tensors_(std::move(tensors)),
        records_(std::move(records)), kept_(std::move(kept)), options_(options) {}

  std::string_view format_name() const override { return "npy"; }
  const fs::path& path() const override { return path_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    const TensorInfo* tensor = find(name);
    const fs::path file = opened_ == nullptr ? path_ : path_ / (std::string(name) + std::string(kNpyExtension));
    if (tensor == nullptr) {
      return std::move(Error(ErrorCode::kUnknownVariable, "no such array").in_file(file.string()).in_variable(name));
    }
    const auto index = static_cast<std::size_t>(tensor - tensors_.data());
    CKPT_ASSIGN_OR_RETURN(OpenedArray array, reopen_array(file, name, index));
    if (!(array.header.meta == tensor->meta)) {
      return std::move(Error(ErrorCode::kNpyHeader,
                             fmt::format("was {} {} when the checkpoint was opened, now {} {}",
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
  // The array's file opened again; its header parsed again only if the file
  // changed since the checkpoint was opened (thousands of small arrays: one
  // read each instead of two).
  Result<OpenedArray> reopen_array(const fs::path& file, std::string_view name, std::size_t index) const {
    const ArrayRecord& record = records_[index];
    if (auto kept = kept_->take(index)) return OpenedArray{std::move(kept), record.header};
    auto source = opened_ != nullptr ? FileSource::open_at(opened_->fd(), file.filename(), file, FollowSymlink::kNo)
                                     : FileSource::open(file, FollowSymlink::kNo);
    if (!source.ok()) return std::move(std::move(source).error().in_variable(name));
    auto shared = std::make_shared<const FileSource>(std::move(source).value());
    if (shared->version() == record.version) return OpenedArray{std::move(shared), record.header};
    FailFast problems;
    InContext in_array(problems, file.string(), std::string(name));
    auto header = read_npy_header(*shared, options_, in_array);
    CKPT_TRY(problems.status());
    return OpenedArray{std::move(shared), std::move(*header)};
  }

  fs::path path_;
  std::shared_ptr<const ReadDirectory> opened_;  // null for a single file
  std::vector<TensorInfo> tensors_;
  std::vector<ArrayRecord> records_;
  std::unique_ptr<KeptFiles> kept_;  // handed out by const reads: thread-safe
  NpyReadOptions options_;
};

class NpyDirectoryWriter final : public CheckpointWriter {
 public:
  explicit NpyDirectoryWriter(AtomicDirectory directory) : directory_(std::move(directory)) {}

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    const fs::path file_name = std::string(name) + std::string(kNpyExtension);
    auto status = [&]() -> Status {
      CKPT_TRY(check_entry_name(name));
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

bool is_single_npy_file(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec) || !fs::is_regular_file(path, ec)) return false;
  auto file = FileSource::open(path);
  std::array<std::byte, kNpyMagicBytes.size()> magic{};
  return file.ok() && file->size() >= magic.size() && file->read_at(0, magic).ok() &&
         std::equal(magic.begin(), magic.end(), as_bytes(kNpyMagicBytes).begin());
}

// The tensor name of a single .npy file: the caller's choice, else the stem.
std::string single_file_tensor_name(const fs::path& file, const OpenOptions& options) {
  return options.tensor_name ? *options.tensor_name : file.stem().string();
}

bool looks_like_npy(const fs::path& path) {
  if (is_single_npy_file(path)) return true;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return false;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (is_npy_file(entry)) return true;
  }
  return false;
}

struct Headers {
  std::vector<TensorInfo> tensors;
  std::vector<ArrayRecord> records;                   // in the same order
  std::unique_ptr<KeptFiles> kept;
};

Result<Headers> read_headers(const Listing& listing, const ReadDirectory& opened, const NpyReadOptions& options) {
  Headers headers;
  headers.tensors.reserve(listing.arrays.size());
  headers.records.reserve(listing.arrays.size());
  headers.kept = std::make_unique<KeptFiles>(listing.arrays.size());
  for (const fs::path& file : listing.arrays) {
    std::string name = variable_of(file);
    CKPT_ASSIGN_OR_RETURN(OpenedArray array, open_array(file, name, options, &opened));
    headers.records.push_back({array.header, array.file->version()});
    headers.kept->offer(headers.tensors.size(), std::move(array.file));
    headers.tensors.push_back({std::move(name), std::move(array.header.meta)});
  }
  return headers;
}

Result<std::unique_ptr<CheckpointReader>> open_npy(const fs::path& path, const OpenOptions& options) {
  if (is_single_npy_file(path)) {
    std::string name = single_file_tensor_name(path, options);
    CKPT_ASSIGN_OR_RETURN(OpenedArray array, open_array(path, name, options.npy));
    std::vector<ArrayRecord> records = {{array.header, array.file->version()}};
    std::vector<TensorInfo> tensors = {{std::move(name), std::move(array.header.meta)}};
    return std::unique_ptr<CheckpointReader>(std::make_unique<NpyReader>(
        path, nullptr, std::move(tensors), std::move(records), std::make_unique<KeptFiles>(1), options.npy));
  }
  // The listing reads by path; the directory must still be the one opened
  // after it, else a writer swapped it meanwhile and we look again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto opened = ReadDirectory::open(path);
    CKPT_ASSIGN_OR_RETURN(Listing listing, list_directory(path));
    if (!opened.ok()) return std::move(opened).error();
    if (!listing.irregular_arrays.empty()) return std::move(listing.irregular_arrays.front());
    if (listing.arrays.empty()) return Error(ErrorCode::kNotACheckpoint, "no .npy file").in_file(path.string());
    auto headers = read_headers(listing, **opened, options.npy);
    if (!(*opened)->still_at(path)) {
      if (attempt < kAttempts) continue;
      return Error(ErrorCode::kBusy, "replaced repeatedly while being opened").in_file(path.string());
    }
    if (!headers.ok()) return std::move(headers).error();
    return std::unique_ptr<CheckpointReader>(std::make_unique<NpyReader>(
        path, std::move(opened).value(), std::move(headers->tensors), std::move(headers->records),
        std::move(headers->kept), options.npy));
  }
}

Result<std::unique_ptr<CheckpointWriter>> create_npy_directory(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(AtomicDirectory directory, AtomicDirectory::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<NpyDirectoryWriter>(std::move(directory)));
}

// One .npy file's name, header and size checked: its problems to
// `problems`, its variable to `report` when it could be described.
void check_array(const fs::path& file, const std::string& name, const NpyReadOptions& options,
                 ValidationReport& report, ProblemSink& problems) {
  auto array = open_array(file, name, options, problems);
  if (array) report.variables.push_back(VariableInfo{name, array->header.meta, array->header.meta.byte_size()});
}

ValidationReport validate_single_npy(const fs::path& file, const OpenOptions& options) {
  ValidationReport report;
  report.path = file;
  CollectAll problems;
  check_array(file, single_file_tensor_name(file, options), options.npy, report, problems);
  report.issues = std::move(problems.issues());
  return report;
}

ValidationReport validate_with_options(const fs::path& path, const OpenOptions& options) {
  return is_single_npy_file(path) ? validate_single_npy(path, options) : validate_npy_directory(path, options.npy);
}

}  // namespace

ValidationReport validate_npy_directory(const fs::path& directory, const NpyReadOptions& options) {
  auto listing = list_directory(directory);
  if (!listing.ok()) return detail::unreadable_report(directory, listing.error());
  ValidationReport report;
  report.path = directory;
  CollectAll problems;
  for (const fs::path& other : listing->others) {
    problems.warning(Error(ErrorCode::kUnexpectedEntry, "not a regular .npy file, ignored").in_file(other.string()));
  }
  for (const Error& irregular : listing->irregular_arrays) problems.error(irregular);
  for (const fs::path& file : listing->arrays) check_array(file, variable_of(file), options, report, problems);
  report.issues = std::move(problems.issues());
  detail::require_some_variable(report, ".npy file");
  return report;
}

namespace detail {

const FormatHandler& npy_format() {
  static const FormatHandler handler{.name = "npy",
                                     .summary = "a .npy file (one tensor) or a directory of <variable>.npy files",
                                     .extensions = {},
                                     .kind = FormatKind::kDirectory,
                                     .detect = looks_like_npy,
                                     .open = open_npy,
                                     .create = create_npy_directory,
                                     .validate = validate_with_options,
                                     .dtype_label = npy_descr};
  return handler;
}

}  // namespace detail
}  // namespace ckpt
