// One byte-source and one byte-sink interface shared by files, memory and
// callbacks. Every parser reads through ByteSource, every writer writes
// through ByteSink, so each is tested the same way in every mode.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ckpt/format/error.hpp"

namespace ckpt {

// Random-access input of known size.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::uint64_t size() const = 0;
  // Fills `out` completely from `offset`, or fails (never a short read).
  virtual Status read_at(std::uint64_t offset, std::span<std::byte> out) const = 0;
  // For error messages: a path, or a description such as "<memory>".
  virtual const std::string& name() const = 0;
  // The open descriptor when the source is a plain file, for zero-copy
  // paths, and where this source's byte 0 lies in that file.
  virtual int file_descriptor() const { return -1; }
  virtual std::uint64_t file_offset() const { return 0; }
};

// One version of a file, from fstat: equal versions mean the file was
// neither replaced nor written to in between (to the file system clock's
// resolution), so what a reader parsed from it still holds.
struct FileVersion {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::int64_t modified_ns = 0;
  std::int64_t changed_ns = 0;
  bool operator==(const FileVersion&) const = default;
};

// Whether opening a file follows a symlink in its last component.
enum class FollowSymlink : std::uint8_t { kYes, kNo };

// A read-only regular file, read with pread. Opening never blocks (a FIFO or
// device is refused with E211 without waiting for a writer), and with
// FollowSymlink::kNo a symlink is refused instead of followed.
class FileSource final : public ByteSource {
 public:
  static Result<FileSource> open(const std::filesystem::path& path, FollowSymlink follow = FollowSymlink::kYes);
  // Opens `relative` under the open directory `directory_fd`, so a reader
  // keeps reading one directory even if its path is swapped meanwhile;
  // `display_path` names the file in errors.
  static Result<FileSource> open_at(int directory_fd, const std::filesystem::path& relative,
                                    const std::filesystem::path& display_path,
                                    FollowSymlink follow = FollowSymlink::kYes);
  FileSource(FileSource&& other) noexcept;
  FileSource& operator=(FileSource&& other) noexcept;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  ~FileSource() override;

  std::uint64_t size() const override { return size_; }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return path_; }
  int file_descriptor() const override { return fd_; }
  // The file as it was when opened.
  const FileVersion& version() const { return version_; }

 private:
  FileSource(int fd, const FileVersion& version, std::string path)
      : fd_(fd), size_(version.size), version_(version), path_(std::move(path)) {}
  int fd_ = -1;
  std::uint64_t size_ = 0;
  FileVersion version_;
  std::string path_;
};

// A window [offset, offset + length) of another source: the data section of
// an .npy, a stored zip member. Keeps the zero-copy path when the underlying
// source is a file.
class SliceSource final : public ByteSource {
 public:
  // Fails when the window does not lie inside `inner`, which must outlive
  // the slice.
  static Result<SliceSource> make(const ByteSource& inner, std::uint64_t offset, std::uint64_t length);
  // The same, keeping `inner` alive as long as the slice, for slices handed
  // out on their own (a reader's open()).
  static Result<SliceSource> make(std::shared_ptr<const ByteSource> inner, std::uint64_t offset, std::uint64_t length);
  std::uint64_t size() const override { return length_; }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return inner_->name(); }
  int file_descriptor() const override { return inner_->file_descriptor(); }
  std::uint64_t file_offset() const override { return inner_->file_offset() + offset_; }

 private:
  SliceSource(std::shared_ptr<const ByteSource> inner, std::uint64_t offset, std::uint64_t length)
      : inner_(std::move(inner)), offset_(offset), length_(length) {}
  std::shared_ptr<const ByteSource> inner_;  // owning or not, as made
  std::uint64_t offset_;
  std::uint64_t length_;
};

// Bytes the caller owns and keeps alive.
class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::span<const std::byte> bytes, std::string name = "<memory>")
      : bytes_(bytes), name_(std::move(name)) {}
  std::uint64_t size() const override { return bytes_.size(); }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return name_; }

 private:
  std::span<const std::byte> bytes_;
  std::string name_;
};

// Bytes produced on demand: a stream, a device buffer, a generator.
class CallbackSource final : public ByteSource {
 public:
  using ReadFn = std::function<Status(std::uint64_t offset, std::span<std::byte> out)>;
  CallbackSource(std::uint64_t size, ReadFn read, std::string name = "<callback>")
      : size_(size), read_(std::move(read)), name_(std::move(name)) {}
  std::uint64_t size() const override { return size_; }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return name_; }

 private:
  std::uint64_t size_;
  ReadFn read_;
  std::string name_;
};

// The most bytes a copy between two sources holds in memory at once (when
// the kernel cannot copy file to file).
inline constexpr std::size_t kCopyBufferBytes = 8u << 20;

// Sequential output.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status write(std::span<const std::byte> bytes) = 0;
  // Makes everything written durable (fsync for files). No write may follow.
  virtual Status finish() = 0;
  virtual const std::string& name() const = 0;
  // Appends `length` bytes of `source` from `offset`. The default streams
  // through a bounded buffer; file sinks let the kernel copy file to file.
  virtual Status write_from(const ByteSource& source, std::uint64_t offset, std::uint64_t length);
};

class MemorySink final : public ByteSink {
 public:
  explicit MemorySink(std::string name = "<memory>") : name_(std::move(name)) {}
  Status write(std::span<const std::byte> bytes) override;
  Status finish() override { return {}; }
  const std::string& name() const override { return name_; }
  const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
  std::string name_;
};

// Checks that [offset, offset + length) lies inside `source`.
Status check_range(const ByteSource& source, std::uint64_t offset, std::uint64_t length);

inline std::span<const std::byte> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

}  // namespace ckpt
