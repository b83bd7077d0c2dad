#include "ckpt/format/snapshot.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/format/oneflow_pickle.hpp"
#include <fmt/format.h>

#include "core/float_codec.hpp"
#include "core/posix_util.hpp"
#include "oneflow/snapshot_scan.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

// An E480 variable: `out` holds float32 values, the variable is bfloat16.
// Each 2-byte element read is its float32 rounded to nearest even.
class Float32AsBFloat16 final : public ByteSource {
 public:
  explicit Float32AsBFloat16(FileSource file) : file_(std::move(file)) {}

  std::uint64_t size() const override { return file_.size() / 2; }
  const std::string& name() const override { return file_.name(); }

  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset > size() || out.size() > size() - offset) {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("read of {} bytes at {} past the end ({} bytes)", out.size(), offset, size()))
          .in_file(name());
    }
    // Whole elements covering the request, converted a block at a time.
    constexpr std::uint64_t kBlockElements = 1 << 14;
    std::array<std::byte, kBlockElements * 4> floats;
    std::uint64_t first = offset / 2;
    std::uint64_t end = (offset + out.size() + 1) / 2;
    for (std::uint64_t element = first; element < end; element += kBlockElements) {
      std::uint64_t count = std::min(kBlockElements, end - element);
      CKPT_TRY(file_.read_at(element * 4, std::span(floats.data(), count * 4)));
      for (std::uint64_t i = 0; i < count; ++i) {
        std::uint32_t bits = 0;
        for (int b = 0; b < 4; ++b) bits |= static_cast<std::uint32_t>(floats[i * 4 + b]) << (8 * b);
        auto half = static_cast<std::uint16_t>(detail::double_to_float_bits(
            detail::float_bits_to_double(bits, detail::kFloatLayout), detail::kBFloat16Layout));
        for (int b = 0; b < 2; ++b) {
          std::uint64_t at = (element + i) * 2 + b;  // byte of the bf16 stream
          if (at >= offset && at < offset + out.size()) out[at - offset] = static_cast<std::byte>(half >> (8 * b));
        }
      }
    }
    return {};
  }

 private:
  FileSource file_;
};

}  // namespace

std::string_view layout_id(Layout layout) {
  switch (layout) {
    case Layout::kSnapshot: return "L1/E1";
    case Layout::kLazy: return "L0";
    case Layout::kGraph: return "G1";
    case Layout::kPickleDir: return "P1";
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

Result<Snapshot> Snapshot::open(const fs::path& root, const pickle::PicklePolicy& policy) {
  // The scan reads by path; the directory must still be the one opened
  // after it, else a writer swapped it meanwhile and we look again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto directory = ReadDirectory::open(root);
    FailFast problems;
    detail::ScanResult scan = detail::scan_checkpoint(root, problems, policy, detail::ScanDepth::kDataAndMeta);
    CKPT_TRY(problems.status());
    if (!directory.ok()) return std::move(directory).error();
    if (!(*directory)->still_at(root)) {
      if (attempt < kAttempts) continue;
      return Error(ErrorCode::kBusy, "replaced repeatedly while being opened").in_file(root.string());
    }
    return Snapshot(root, std::move(directory).value(), *scan.layout, std::move(scan.variables),
                    std::move(scan.pickle_directories), std::move(scan.pickle));
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

Result<std::unique_ptr<ByteSource>> Snapshot::open_values(std::string_view name) const {
  CKPT_ASSIGN_OR_RETURN(const VariableInfo* info, get(name));
  CKPT_ASSIGN_OR_RETURN(FileSource source, open_data(name));
  if (info->bf16_stored_as_float32) return std::unique_ptr<ByteSource>(std::make_unique<Float32AsBFloat16>(std::move(source)));
  return std::unique_ptr<ByteSource>(std::make_unique<FileSource>(std::move(source)));
}

Status Snapshot::read(std::string_view name, std::span<std::byte> out) const {
  CKPT_ASSIGN_OR_RETURN(auto source, open_values(name));
  if (out.size() != source->size()) {
    return Error(ErrorCode::kBufferSizeMismatch,
                 fmt::format("buffer holds {} bytes, the variable has {}", out.size(), source->size()))
        .in_variable(name);
  }
  auto status = source->read_at(0, out);
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
