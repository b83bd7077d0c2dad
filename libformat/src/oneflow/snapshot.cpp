#include "ckpt/format/snapshot.hpp"

#include <algorithm>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/posix_util.hpp"
#include "oneflow/snapshot_scan.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

// Keeps the first error and stops the scan there.
class FirstError final : public detail::ScanSink {
 public:
  bool report(Severity severity, Error problem) override {
    if (severity != Severity::kError) return true;
    error.emplace(std::move(problem));
    return false;
  }
  std::optional<Error> error;
};

}  // namespace

std::string_view layout_format_name(Layout layout) {
  switch (layout) {
    case Layout::kSnapshot: return "oneflow-snapshot";
    case Layout::kLazy: return "oneflow-lazy";
    case Layout::kGraph: return "oneflow-graph";
    case Layout::kPickleDir: return "oneflow-pickle";
  }
  return "unknown";
}

// ---- MappedBytes ----

MappedBytes::MappedBytes(MappedBytes&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedBytes& MappedBytes::operator=(MappedBytes&& other) noexcept {
  if (this != &other) {
    if (address_ != nullptr) ::munmap(address_, size_);
    address_ = std::exchange(other.address_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedBytes::~MappedBytes() {
  if (address_ != nullptr) ::munmap(address_, size_);
}

Result<MappedBytes> MappedBytes::map(const FileSource& file) {
  const std::string& path = file.name();
  MappedBytes mapped;
  if (file.size() == 0) return mapped;  // mmap refuses length 0; an empty view is the answer
  if (file.size() > SIZE_MAX) return Error(ErrorCode::kIo, "too large to map").in_file(path);
  void* address = ::mmap(nullptr, static_cast<std::size_t>(file.size()), PROT_READ, MAP_PRIVATE,
                         file.file_descriptor(), 0);
  if (address == MAP_FAILED) return detail::io_error("mmap", path);
  mapped.address_ = address;
  mapped.size_ = static_cast<std::size_t>(file.size());
  return mapped;
}

// ---- Snapshot ----

Result<Snapshot> Snapshot::open(const fs::path& root) {
  // The scan reads by path; the directory must still be the one opened
  // after it, else a writer swapped it meanwhile and we look again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto directory = ReadDirectory::open(root);
    FirstError sink;
    detail::ScanResult scan = detail::scan_checkpoint(root, sink);
    if (sink.error) return std::move(*sink.error);
    if (!directory.ok()) return std::move(directory).error();
    if (!(*directory)->still_at(root)) {
      if (attempt < kAttempts) continue;
      return Error(ErrorCode::kBusy, "replaced repeatedly while being opened").in_file(root.string());
    }
    return Snapshot(root, std::move(directory).value(), *scan.layout, std::move(scan.variables),
                    std::move(scan.pickle_directories));
  }
}

const VariableInfo* Snapshot::find(std::string_view name) const {
  auto it = std::lower_bound(variables_.begin(), variables_.end(), name,
                             [](const VariableInfo& info, std::string_view key) { return info.name < key; });
  return it != variables_.end() && it->name == name ? &*it : nullptr;
}

Result<const VariableInfo*> Snapshot::get(std::string_view name) const {
  if (const VariableInfo* info = find(name)) return info;
  return Error(ErrorCode::kUnknownVariable, "the checkpoint has no such variable")
      .in_variable(name)
      .in_file(root_.string());
}

std::string_view Snapshot::directory_of(std::string_view name) const {
  auto directory = directories_.find(name);
  return directory != directories_.end() ? std::string_view(directory->second) : name;
}

fs::path Snapshot::data_path(std::string_view name) const { return root_ / directory_of(name) / kDataFile; }

Result<FileSource> Snapshot::open_data(std::string_view name) const {
  CKPT_ASSIGN_OR_RETURN(const VariableInfo* info, get(name));
  auto source = FileSource::open_at(directory_->fd(), fs::path(directory_of(name)) / kDataFile, data_path(name));
  if (!source.ok()) return std::move(std::move(source).error().in_variable(name));
  if (source->size() != info->byte_size) {
    return Error(ErrorCode::kDataSizeMismatch,
                 fmt::format("changed since the checkpoint was opened: {} bytes, was {}", source->size(),
                             info->byte_size))
        .in_file(source->name())
        .in_variable(name);
  }
  return source;
}

Status Snapshot::read(std::string_view name, std::span<std::byte> out) const {
  CKPT_ASSIGN_OR_RETURN(FileSource source, open_data(name));
  if (out.size() != source.size()) {
    return Error(ErrorCode::kBufferSizeMismatch,
                 fmt::format("buffer holds {} bytes, the variable has {}", out.size(), source.size()))
        .in_variable(name);
  }
  auto status = source.read_at(0, out);
  if (!status.ok()) return std::move(std::move(status).error().in_variable(name));
  return {};
}

Result<MappedBytes> Snapshot::map(std::string_view name) const {
  CKPT_ASSIGN_OR_RETURN(FileSource source, open_data(name));
  auto mapped = MappedBytes::map(source);
  if (!mapped.ok()) return std::move(std::move(mapped).error().in_variable(name));
  return mapped;
}

Status Snapshot::read_chunks(std::string_view name, std::size_t chunk_bytes,
                             const std::function<Status(std::span<const std::byte>)>& consume) const {
  if (chunk_bytes == 0) return Error(ErrorCode::kInvalidArgument, "chunk size must be positive");
  CKPT_ASSIGN_OR_RETURN(FileSource source, open_data(name));
  std::vector<std::byte> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(chunk_bytes, source.size())));
  for (std::uint64_t offset = 0; offset < source.size();) {
    std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(source.size() - offset, buffer.size()));
    std::span<std::byte> chunk(buffer.data(), piece);
    auto status = source.read_at(offset, chunk);
    if (!status.ok()) return std::move(std::move(status).error().in_variable(name));
    CKPT_TRY(consume(chunk));
    offset += piece;
  }
  return {};
}

}  // namespace ckpt
