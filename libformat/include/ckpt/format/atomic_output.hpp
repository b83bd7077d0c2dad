// Crash-safe output. Everything is written under a temporary sibling of the
// destination, fsynced, and renamed into place last, so the destination is
// always absent, the old content, or the complete new content.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

// The system calls a writer makes, named so that tests can fail each one.
enum class IoStep { kCreate, kWrite, kSync, kRename, kMkdir };
std::string_view io_step_name(IoStep step);

// Called before each step; returning true makes the step fail with
// kInjectedFault as if the system call had failed. For tests only.
using FaultHook = std::function<bool(IoStep step, const std::filesystem::path& path)>;

// Says whether the existing directory at a path is a checkpoint (ok) or why not.
using CheckpointCheck = std::function<Status(const std::filesystem::path& directory)>;

struct WriteOptions {
  // Replace an existing destination (atomically: never a mix of old and new).
  // Only a regular file, an empty directory, or a directory `is_checkpoint`
  // accepts is replaced (spec/writing.md, "Replacing").
  bool overwrite = false;
  // create_checkpoint and SnapshotWriter::create set it when absent (they
  // open the directory as a checkpoint); without one, overwrite refuses
  // every non-empty directory.
  CheckpointCheck is_checkpoint = {};
  // The paths this write reads from (a conversion's source): the
  // destination may not be one, hold one, or lie inside one (E171).
  std::vector<std::filesystem::path> sources = {};
  FaultHook fault_hook = {};
  // Formats with optional compression deflate their data (npz: members
  // deflated as np.savez_compressed does); the others store it as always.
  bool compress = false;
  // safetensors-sharded: the most tensor bytes per shard (huggingface_hub's
  // max_shard_size); a larger tensor gets a shard of its own, never split.
  std::uint64_t max_shard_bytes = 5'000'000'000;
};

// When a file's data reaches the disk.
enum class SyncMode {
  kFsync,     // finish() fsyncs the file
  kDeferred,  // finish() only starts write-back; the owner syncs the file system once at the end
};

// A new file opened for writing (never an existing one). Its errors and
// name() say `shown_as` when given: the path the caller asked for, not the
// staging name the bytes go to until commit.
class FileSink final : public ByteSink {
 public:
  static Result<FileSink> create(const std::filesystem::path& path, const FaultHook& hook = {},
                                 SyncMode mode = SyncMode::kFsync, const std::filesystem::path& shown_as = {});
  FileSink(FileSink&& other) noexcept;
  FileSink& operator=(FileSink&& other) noexcept;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;
  ~FileSink() override;

  Status write(std::span<const std::byte> bytes) override;
  Status finish() override;
  const std::string& name() const override { return path_; }
  // copy_file_range when `source` is a plain file, else the buffered default.
  Status write_from(const ByteSource& source, std::uint64_t offset, std::uint64_t length) override;
  // Bytes written by write() and write_from(), which append after each other.
  std::uint64_t written() const { return written_; }

  // Positioned writes, which several threads may make at once to disjoint
  // ranges; they leave written() as it is.
  Status write_at(std::uint64_t at, std::span<const std::byte> bytes) const;
  Status write_from_at(std::uint64_t at, const ByteSource& source, std::uint64_t offset, std::uint64_t length) const;

 private:
  Status copy_through_buffer(std::uint64_t at, const ByteSource& source, std::uint64_t offset,
                             std::uint64_t length) const;
  FileSink(int fd, std::string path, FaultHook hook, SyncMode mode)
      : fd_(fd), path_(std::move(path)), hook_(std::move(hook)), mode_(mode) {}
  int fd_ = -1;
  std::string path_;
  FaultHook hook_;
  SyncMode mode_ = SyncMode::kFsync;
  std::uint64_t written_ = 0;
};

// A file's identity: device and inode.
using FileIdentity = std::pair<std::uint64_t, std::uint64_t>;

// A directory checkpoint opened for reading. Every file is read through its
// descriptor (openat), so a checkpoint swapped at the path is never mixed
// with the new one, and it holds a shared flock: a writer that replaces the
// directory deletes the old tree only when no reader holds it, and moves it
// aside under a ".ckpt-old-" name otherwise (spec/writing.md).
class ReadDirectory {
 public:
  static Result<std::shared_ptr<const ReadDirectory>> open(const std::filesystem::path& path);
  ReadDirectory(const ReadDirectory&) = delete;
  ReadDirectory& operator=(const ReadDirectory&) = delete;
  ~ReadDirectory();
  int fd() const { return fd_; }
  // Whether `path` still names this directory (not replaced since opened).
  bool still_at(const std::filesystem::path& path) const;

 private:
  explicit ReadDirectory(int fd) : fd_(fd) {}
  int fd_;
};

// A directory built under a temporary sibling name and moved into place by
// commit(). Destroying an uncommitted one removes the staging directory, and
// so does SIGINT, SIGTERM or SIGHUP while it exists (see below).
// Errors name the destination (and paths inside it), never the staging name.
// Its files are not fsynced one by one (thousands of small variables would
// cost one disk flush each): commit() syncs the file system once, then
// renames.
class AtomicDirectory {
 public:
  static Result<AtomicDirectory> create(const std::filesystem::path& destination, WriteOptions options = {});
  AtomicDirectory(AtomicDirectory&& other) noexcept;
  AtomicDirectory& operator=(AtomicDirectory&&) = delete;
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;
  ~AtomicDirectory();

  const std::filesystem::path& destination() const { return destination_; }
  const std::filesystem::path& staging() const { return staging_; }

  // `relative` is a plain relative path inside the directory.
  Status make_directory(const std::filesystem::path& relative);
  Result<FileSink> create_file(const std::filesystem::path& relative);

  // Syncs everything written (syncfs) and renames the staging directory over
  // the destination.
  Status commit();

 private:
  AtomicDirectory(std::filesystem::path destination, std::filesystem::path staging, WriteOptions options,
                  std::optional<FileIdentity> checked)
      : destination_(std::move(destination)), staging_(std::move(staging)), options_(std::move(options)),
        checked_(checked) {}

  std::filesystem::path destination_;
  std::filesystem::path staging_;
  WriteOptions options_;
  std::optional<FileIdentity> checked_;  // what was at the destination when checked for replacing
  bool committed_ = false;
};

// A single file with the same protocol as AtomicDirectory.
class AtomicFile final : public ByteSink {
 public:
  static Result<AtomicFile> create(const std::filesystem::path& destination, WriteOptions options = {});
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  ~AtomicFile() override;

  Status write(std::span<const std::byte> bytes) override { return sink_.write(bytes); }
  Status finish() override { return sink_.finish(); }
  const std::string& name() const override { return sink_.name(); }
  Status write_from(const ByteSource& source, std::uint64_t offset, std::uint64_t length) override {
    return sink_.write_from(source, offset, length);
  }

  // finish() and rename into place.
  Status commit();
  // The staging file, for positioned writes before commit().
  const FileSink& file() const { return sink_; }

 private:
  AtomicFile(std::filesystem::path destination, std::filesystem::path staging, FileSink sink, WriteOptions options,
             std::optional<FileIdentity> checked)
      : destination_(std::move(destination)), staging_(std::move(staging)), sink_(std::move(sink)),
        options_(std::move(options)), checked_(checked) {}
  std::filesystem::path destination_;
  std::filesystem::path staging_;
  FileSink sink_;
  WriteOptions options_;
  std::optional<FileIdentity> checked_;
  bool committed_ = false;
};

// `path` without trailing separators, so "out/" names the entry "out".
std::filesystem::path without_trailing_separator(const std::filesystem::path& path);

// While an AtomicDirectory or AtomicFile is uncommitted its staging path is
// in a process-wide table. On the first one, handlers for SIGINT, SIGTERM and
// SIGHUP are installed where the signal's action is the default: they remove
// every staging output in the table (async-signal-safe calls only), restore
// the default action and raise the signal again, so the process ends as the
// signal asked and leaves no staging files. A program with its own handlers
// keeps them. SIGKILL cannot be caught: ckpt-validate reports its leftovers.
// How many staging outputs the table holds at once; more are still removed
// by their destructors, only not on a signal.
inline constexpr std::size_t kMaxTrackedStagingOutputs = 64;

// Prefix of every staging name, so readers and validators can recognise
// leftovers of an interrupted write: ".<name>.ckpt-tmp-<pid>-<n>".
inline constexpr std::string_view kStagingMarker = ".ckpt-tmp-";
// A replaced directory a reader still held: ".<name>.ckpt-old-<pid>-<n>",
// removed by the next replacing save to the same path once no reader holds it.
inline constexpr std::string_view kRetiredMarker = ".ckpt-old-";

}  // namespace ckpt
