#include "ckpt/format/byte_io.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/posix_util.hpp"

namespace ckpt {
namespace {

// Big enough to amortise system calls, small enough to keep memory bounded.

}  // namespace

Status check_range(const ByteSource& source, std::uint64_t offset, std::uint64_t length) {
  if (offset > source.size() || length > source.size() - offset) {
    return Error(ErrorCode::kDataSizeMismatch,
                 fmt::format("read of {} bytes at offset {} is past the end ({} bytes)", length, offset, source.size()))
        .in_file(source.name());
  }
  return {};
}

Result<FileSource> FileSource::open(const std::filesystem::path& path, FollowSymlink follow) {
  return open_at(AT_FDCWD, path, path, follow);
}

Result<FileSource> FileSource::open_at(int directory_fd, const std::filesystem::path& relative,
                                       const std::filesystem::path& display_path, FollowSymlink follow) {
  const std::filesystem::path& path = display_path;
  // O_NONBLOCK: opening a FIFO waits for a writer otherwise (forever); it has
  // no effect on the regular files we go on to read.
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow == FollowSymlink::kNo ? O_NOFOLLOW : 0);
  int fd = ::openat(directory_fd, relative.c_str(), flags);
  if (fd < 0 && errno == ELOOP && follow == FollowSymlink::kNo) {
    return Error(ErrorCode::kDataNotFile, "a symbolic link, refused (not followed)").in_file(path.string());
  }
  if (fd < 0) return detail::io_error("open", path.string());
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    Error error = detail::io_error("fstat", path.string());
    ::close(fd);
    return error;
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return Error(ErrorCode::kDataNotFile, "not a regular file (a FIFO, device or directory); not read")
        .in_file(path.string());
  }
  auto nanoseconds = [](const timespec& time) { return time.tv_sec * 1'000'000'000LL + time.tv_nsec; };
  FileVersion version{.device = static_cast<std::uint64_t>(info.st_dev),
                      .inode = static_cast<std::uint64_t>(info.st_ino),
                      .size = static_cast<std::uint64_t>(info.st_size),
                      .modified_ns = nanoseconds(info.st_mtim),
                      .changed_ns = nanoseconds(info.st_ctim)};
  return FileSource(fd, version, path.string());
}

FileSource::FileSource(FileSource&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_), version_(other.version_), path_(std::move(other.path_)) {}

FileSource& FileSource::operator=(FileSource&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    version_ = other.version_;
    path_ = std::move(other.path_);
  }
  return *this;
}

FileSource::~FileSource() {
  if (fd_ >= 0) ::close(fd_);
}

Status FileSource::read_at(std::uint64_t offset, std::span<std::byte> out) const {
  CKPT_TRY(check_range(*this, offset, out.size()));
  return detail::pread_full(fd_, offset, out, path_);
}

Result<SliceSource> SliceSource::make(const ByteSource& inner, std::uint64_t offset, std::uint64_t length) {
  // An empty owner: the pointer is shared without keeping `inner` alive.
  return make(std::shared_ptr<const ByteSource>(std::shared_ptr<const ByteSource>(), &inner), offset, length);
}

Result<SliceSource> SliceSource::make(std::shared_ptr<const ByteSource> inner, std::uint64_t offset,
                                      std::uint64_t length) {
  CKPT_TRY(check_range(*inner, offset, length));
  return SliceSource(std::move(inner), offset, length);
}

Status SliceSource::read_at(std::uint64_t offset, std::span<std::byte> out) const {
  CKPT_TRY(check_range(*this, offset, out.size()));
  return inner_->read_at(offset_ + offset, out);
}

Status MemorySource::read_at(std::uint64_t offset, std::span<std::byte> out) const {
  CKPT_TRY(check_range(*this, offset, out.size()));
  if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset, out.size());
  return {};
}

Status CallbackSource::read_at(std::uint64_t offset, std::span<std::byte> out) const {
  CKPT_TRY(check_range(*this, offset, out.size()));
  return read_(offset, out);
}

Status MemorySink::write(std::span<const std::byte> bytes) {
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
  return {};
}

Status ByteSink::write_from(const ByteSource& source, std::uint64_t offset, std::uint64_t length) {
  CKPT_TRY(check_range(source, offset, length));
  std::vector<std::byte> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(length, kCopyBufferBytes)));
  for (std::uint64_t copied = 0; copied < length;) {
    std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(length - copied, buffer.size()));
    std::span<std::byte> chunk(buffer.data(), piece);
    CKPT_TRY(source.read_at(offset + copied, chunk));
    CKPT_TRY(write(chunk));
    copied += piece;
  }
  return {};
}

}  // namespace ckpt
