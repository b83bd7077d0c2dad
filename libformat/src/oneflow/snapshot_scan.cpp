#include "oneflow/snapshot_scan.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/meta.hpp"
#include "ckpt/format/writer.hpp"
#include "core/posix_util.hpp"

namespace ckpt::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kEmbeddingOptionsFile = "one_embedding_options.json";

struct Entry {
  std::string name;
  struct stat link_info {};  // lstat: is it a symlink?
  struct stat info {};       // stat: what it points to (valid when resolved)
  bool resolved = false;
};

// The scan's state: the root and where problems go.
class Scanner {
 public:
  Scanner(fs::path root, ProblemSink& sink, const pickle::PicklePolicy& policy, ScanDepth depth)
      : root_(std::move(root)), depth_(depth), problems_(sink), policy_(policy) {}
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;
  ~Scanner() {
    if (root_fd_ >= 0) ::close(root_fd_);
  }

  ScanResult run();

 private:
  bool report(Severity severity, Error problem, std::string_view variable = {}) {
    if (!variable.empty()) problem.in_variable(variable);
    return problems_.report(severity, std::move(problem));
  }
  bool error(ErrorCode code, std::string message, const fs::path& file, std::string_view variable = {}) {
    return report(Severity::kError, Error(code, std::move(message)).in_file(file.string()), variable);
  }
  bool warning(ErrorCode code, std::string message, const fs::path& file, std::string_view variable = {}) {
    return report(Severity::kWarning, Error(code, std::move(message)).in_file(file.string()), variable);
  }

  std::optional<std::vector<Entry>> list(const fs::path& directory, std::string_view variable);
  // `out` and `meta` of one variable looked up without listing its directory.
  std::vector<Entry> look_up_data_and_meta(std::string_view variable) const;
  // A symlink must resolve inside the checkpoint; false if it escapes.
  bool stays_inside(const fs::path& path, const Entry& entry, std::string_view variable);
  void scan_variable(const Entry& entry, ScanResult& result);
  std::optional<VariableMeta> read_meta(const fs::path& path, const Entry& entry, std::string_view variable);
  void warn_bf16_stored_as_float32(const VariableInfo& info, const fs::path& data_path) {
    warning(ErrorCode::kBf16StoredAsFloat32,
            fmt::format("kBFloat16 {} with {} bytes, twice its size: float32 values, as OneFlow 0.9 saves bfloat16 "
                        "(OneFlow cannot load it back); read rounded to bfloat16",
                        shape_to_string(info.meta->shape()), info.byte_size),
            data_path, info.name);
  }
  void check_marker(const Entry& entry);
  bool check_pickle_file(const Entry& entry);

  fs::path root_;
  ScanDepth depth_;
  int root_fd_ = -1;  // lookups relative to it skip walking the root's path each time
  fs::path canonical_root_;
  TrackingSink problems_;
  const pickle::PicklePolicy& policy_;
  bool has_marker_ = false;
  bool pickle_dir_ = false;  // P1: variables get their names from pickled_data after the scan
  std::size_t variables_with_meta_ = 0;
  std::vector<std::string> variables_without_meta_;
};

// Fills `entry` from its name under the open directory `directory_fd`;
// false when it vanished meanwhile.
bool describe_entry(int directory_fd, Entry& entry) {
  if (::fstatat(directory_fd, entry.name.c_str(), &entry.link_info, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (S_ISLNK(entry.link_info.st_mode)) {
    entry.resolved = ::fstatat(directory_fd, entry.name.c_str(), &entry.info, 0) == 0;
  } else {
    entry.info = entry.link_info;
    entry.resolved = true;
  }
  return true;
}

std::optional<std::vector<Entry>> Scanner::list(const fs::path& directory, std::string_view variable) {
  DIR* stream = ::opendir(directory.c_str());
  if (stream == nullptr) {
    error(ErrorCode::kIo, fmt::format("cannot list directory: {}", std::strerror(errno)), directory, variable);
    return std::nullopt;
  }
  std::vector<Entry> entries;
  errno = 0;
  while (const dirent* item = ::readdir(stream)) {
    std::string_view name = item->d_name;
    if (name == "." || name == "..") continue;
    Entry entry;
    entry.name = std::string(name);
    // A directory needs no stat: only its kind is used (thousands of variables).
    if (item->d_type == DT_DIR) {
      entry.link_info.st_mode = entry.info.st_mode = S_IFDIR;
      entry.resolved = true;
    } else if (!describe_entry(::dirfd(stream), entry)) {
      continue;  // vanished meanwhile
    }
    entries.push_back(std::move(entry));
    errno = 0;
  }
  const int listing_error = errno;
  ::closedir(stream);
  if (listing_error != 0) {
    error(ErrorCode::kIo, fmt::format("cannot list directory: {}", std::strerror(listing_error)), directory, variable);
    return std::nullopt;
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return entries;
}

std::vector<Entry> Scanner::look_up_data_and_meta(std::string_view variable) const {
  std::vector<Entry> entries;
  for (std::string_view file : {kDataFile, kMetaFile}) {
    Entry entry;
    entry.name = fmt::format("{}/{}", variable, file);
    if (!describe_entry(root_fd_, entry)) continue;  // absent
    entry.name = std::string(file);
    entries.push_back(std::move(entry));
  }
  return entries;
}

bool Scanner::stays_inside(const fs::path& path, const Entry& entry, std::string_view variable) {
  if (!S_ISLNK(entry.link_info.st_mode)) return true;
  std::error_code ec;
  fs::path target = fs::weakly_canonical(path, ec);
  auto [root_end, unused] = std::mismatch(canonical_root_.begin(), canonical_root_.end(), target.begin(), target.end());
  if (!ec && root_end == canonical_root_.end() && target != canonical_root_) return true;
  if (ec == std::errc::too_many_symbolic_link_levels) {
    error(ErrorCode::kSymlinkLoop, "symbolic link loop: it resolves to itself, so it names no file", path, variable);
    return false;
  }
  std::error_code read_ec;
  error(ErrorCode::kEscapingSymlink,
        fmt::format("symbolic link to '{}' leaves the checkpoint '{}'; refused", fs::read_symlink(path, read_ec).string(),
                    root_.string()),
        path, variable);
  return false;
}

void Scanner::check_marker(const Entry& entry) {
  fs::path path = root_ / entry.name;
  has_marker_ = true;
  if (!stays_inside(path, entry, {})) return;
  if (!entry.resolved || !S_ISREG(entry.info.st_mode)) {
    error(ErrorCode::kSnapshotDoneNotFile, "snapshot_done must be an empty regular file", path);
  } else if (entry.info.st_size != 0) {
    warning(ErrorCode::kSnapshotDoneNotEmpty,
            fmt::format("expected an empty file, found {} bytes", static_cast<long long>(entry.info.st_size)), path);
  }
}

// pickled_data is parsed and quoted in messages: it must be a regular file of
// the checkpoint (a FIFO would block the reader, a link could leak a file).
bool Scanner::check_pickle_file(const Entry& entry) {
  fs::path path = root_ / entry.name;
  if (!stays_inside(path, entry, {})) return false;
  if (!entry.resolved || !S_ISREG(entry.info.st_mode)) {
    error(ErrorCode::kDataNotFile, "pickled_data is not a regular file; not read", path);
    return false;
  }
  return true;
}

std::optional<VariableMeta> Scanner::read_meta(const fs::path& path, const Entry& entry, std::string_view variable) {
  if (!entry.resolved || !S_ISREG(entry.info.st_mode)) {
    error(ErrorCode::kDataNotFile, "meta is not a regular file", path, variable);
    return std::nullopt;
  }
  if (static_cast<std::uint64_t>(entry.info.st_size) > kMaxMetaBytes) {
    error(ErrorCode::kMetaTooLarge,
          fmt::format("meta is {} bytes, the limit is {}", static_cast<long long>(entry.info.st_size), kMaxMetaBytes),
          path, variable);
    return std::nullopt;
  }
  auto source = root_fd_ >= 0 ? FileSource::open_at(root_fd_, fs::path(variable) / kMetaFile, path) : FileSource::open(path);
  if (!source.ok()) {
    report(Severity::kError, std::move(source).error(), variable);
    return std::nullopt;
  }
  std::string text(static_cast<std::size_t>(source->size()), '\0');
  if (auto read = source->read_at(0, std::as_writable_bytes(std::span(text))); !read.ok()) {
    report(Severity::kError, std::move(read).error(), variable);
    return std::nullopt;
  }
  InContext in_meta(problems_, path.string(), std::string(variable));
  return parse_meta(text, in_meta);
}

void Scanner::scan_variable(const Entry& entry, ScanResult& result) {
  const std::string& name = entry.name;
  fs::path directory = root_ / name;
  if (auto safe = check_variable_name(name); !safe.ok()) {
    error(ErrorCode::kUnsafeName, std::move(safe).error().message(), directory, name);
    return;
  }
  if (!stays_inside(directory, entry, name)) return;
  // A variable reached through a symbolic link is listed: its files are
  // looked up by the resolved path.
  const bool listed = depth_ == ScanDepth::kListEverything || root_fd_ < 0 || S_ISLNK(entry.link_info.st_mode);
  auto entries = listed ? list(directory, name) : std::optional(look_up_data_and_meta(name));
  if (!entries) return;

  const Entry* data = nullptr;
  const Entry* meta_entry = nullptr;
  for (const Entry& child : *entries) {
    if (child.name == kDataFile) {
      data = &child;
    } else if (child.name == kMetaFile) {
      meta_entry = &child;
    } else if (!warning(ErrorCode::kUnexpectedEntry, "OneFlow writes only `out` and `meta` here; ignored",
                        directory / child.name, name)) {
      return;
    }
  }
  if (data == nullptr) {
    warning(ErrorCode::kMissingData, "directory has no `out` file; OneFlow skips it", directory, name);
    return;
  }
  fs::path data_path = directory / kDataFile;
  if (!stays_inside(data_path, *data, name)) return;
  if (!data->resolved || !S_ISREG(data->info.st_mode)) {
    error(ErrorCode::kDataNotFile, "out is not a regular file", data_path, name);
    return;
  }
  VariableInfo info{name, std::nullopt, static_cast<std::uint64_t>(data->info.st_size)};
  if (meta_entry != nullptr) {
    ++variables_with_meta_;
    fs::path meta_path = directory / kMetaFile;
    if (stays_inside(meta_path, *meta_entry, name)) info.meta = read_meta(meta_path, *meta_entry, name);
    if (problems_.stopped()) return;
  } else {
    variables_without_meta_.push_back(name);
  }
  if (info.meta && info.meta->dtype() == DType::kBFloat16 && info.byte_size == 2 * info.meta->byte_size() &&
      info.byte_size > 0) {
    info.bf16_stored_as_float32 = true;
    // A P1 tensor is reported once pickled_data has given it its name.
    if (!pickle_dir_) warn_bf16_stored_as_float32(info, data_path);
  } else if (info.meta && info.meta->byte_size() != info.byte_size) {
    const VariableMeta& meta = *info.meta;
    std::string_view relation = info.byte_size < meta.byte_size() ? "truncated" : "has extra bytes";
    error(ErrorCode::kDataSizeMismatch,
          fmt::format("{}: expected {} bytes (shape {} x {} bytes of {}), found {}", relation, meta.byte_size(),
                      shape_to_string(meta.shape()), dtype_size(meta.dtype()), dtype_name(meta.dtype()),
                      info.byte_size),
          data_path, name);
  }
  result.variables.push_back(std::move(info));
}

ScanResult Scanner::run() {
  ScanResult result;
  struct stat root_info {};
  if (::stat(root_.c_str(), &root_info) != 0) {
    report(Severity::kError, io_error("open checkpoint", root_.string()));
    return result;
  }
  if (!S_ISDIR(root_info.st_mode)) {
    error(ErrorCode::kNotADirectory, "a OneFlow checkpoint is a directory", root_);
    return result;
  }
  std::error_code ec;
  canonical_root_ = fs::canonical(root_, ec);
  root_fd_ = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  auto entries = list(root_, {});
  if (!entries) return result;

  auto has = [&](std::string_view name) {
    return std::any_of(entries->begin(), entries->end(), [&](const Entry& e) { return e.name == name; });
  };
  pickle_dir_ = has(kPickleFile);
  bool pickle_file_readable = false;
  bool graph = !pickle_dir_ && has(kGraphFile);

  for (const Entry& entry : *entries) {
    if (problems_.stopped()) return result;
    fs::path path = root_ / entry.name;
    bool is_directory = entry.resolved && S_ISDIR(entry.info.st_mode);
    if (entry.name == kDoneFile) {
      check_marker(entry);
    } else if (entry.name.find(kStagingMarker) != std::string::npos) {
      warning(ErrorCode::kUnexpectedEntry, "leftover of an interrupted ckpt write; safe to delete", path);
    } else if (pickle_dir_ && entry.name == kPickleFile) {
      pickle_file_readable = check_pickle_file(entry);
    } else if (is_directory) {
      scan_variable(entry, result);
    } else if (!(graph && (entry.name == kGraphFile || entry.name == kEmbeddingOptionsFile))) {
      warning(ErrorCode::kUnexpectedEntry, "not part of a OneFlow checkpoint; ignored", path);
    }
  }
  if (problems_.stopped()) return result;

  if (pickle_dir_) {
    result.layout = Layout::kPickleDir;
    if (!pickle_file_readable) return result;
    const bool directories_valid = !problems_.failed() && variables_without_meta_.empty();
    PickleVariables named = name_pickle_variables(root_, result.variables, directories_valid, problems_, policy_);
    result.pickle_directories = std::move(named.directories);
    result.pickle = std::move(named.pickle);
    if (problems_.stopped()) return result;
    for (const VariableInfo& info : result.variables) {
      if (!info.bf16_stored_as_float32) continue;
      auto directory = result.pickle_directories.find(info.name);
      const std::string& on_disk = directory != result.pickle_directories.end() ? directory->second : info.name;
      warn_bf16_stored_as_float32(info, root_ / on_disk / kDataFile);
    }
  } else if (graph) {
    result.layout = Layout::kGraph;
  } else if (variables_with_meta_ > 0) {
    result.layout = Layout::kSnapshot;
  } else if (!result.variables.empty()) {
    result.layout = Layout::kLazy;
  }

  bool marker_required = result.layout == Layout::kSnapshot || result.layout == Layout::kLazy;
  if (marker_required && !has_marker_ &&
      !error(ErrorCode::kMissingSnapshotDone,
             "no snapshot_done: the save did not finish (OneFlow writes it last and refuses to load without it)",
             root_ / kDoneFile)) {
    return result;
  }
  for (const std::string& name : variables_without_meta_) {
    fs::path path = root_ / name / kMetaFile;
    bool keep_going = result.layout == Layout::kLazy
                          ? warning(ErrorCode::kMetaMissing,
                                    "no meta (OneFlow <= 0.3 lazy layout): shape and data type are unknown, "
                                    "only the bytes can be read",
                                    path, name)
                          : error(ErrorCode::kMetaMissing,
                                  "no meta while other variables have one; OneFlow cannot load this variable", path,
                                  name);
    if (!keep_going) return result;
  }
  if (result.variables.empty() && !problems_.failed()) {
    if (has_marker_) {
      warning(ErrorCode::kEmptySnapshot, "snapshot_done is present but there is no variable", root_);
    } else if (!result.layout) {
      error(ErrorCode::kNotACheckpoint, "no variable directory and no snapshot_done: not a OneFlow checkpoint", root_);
    }
  }
  return result;
}

}  // namespace

ScanResult scan_checkpoint(const fs::path& root, ProblemSink& problems, const pickle::PicklePolicy& policy,
                           ScanDepth depth) {
  return Scanner(root, problems, policy, depth).run();
}

}  // namespace ckpt::detail
