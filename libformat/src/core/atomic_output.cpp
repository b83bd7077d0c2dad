#include "ckpt/format/atomic_output.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/posix_util.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

// The failure a real system call would report at that step: a full disk
// while writing, an I/O error while syncing or renaming.
Status injected_fault(const FaultHook& hook, IoStep step, const fs::path& path) {
  if (hook && hook(step, path)) {
    std::string_view errno_name = step == IoStep::kWrite ? "ENOSPC" : step == IoStep::kCreate ? "EDQUOT" : "EIO";
    return Error(ErrorCode::kInjectedFault, fmt::format("injected failure of {} ({})", io_step_name(step), errno_name))
        .in_file(path.string());
  }
  return {};
}

// ---- Staging outputs removed on SIGINT, SIGTERM, SIGHUP ----

// A slot is free, being filled or emptied by the owning thread, or live (the
// handler may read it). Plain arrays and atomics: the handler can use them.
enum SlotState : int { kFree, kBusy, kLive };
struct StagingSlot {
  std::atomic<int> state{kFree};
  char path[PATH_MAX] = {};
};
std::array<StagingSlot, kMaxTrackedStagingOutputs> staging_slots;
constexpr std::array kCleanupSignals = {SIGINT, SIGTERM, SIGHUP};

// Removes `name` under `dir_fd`, a file or a directory tree at most `depth`
// levels deep, with async-signal-safe calls only (no allocation).
void remove_entry_at(int dir_fd, const char* name, int depth) {
  if (::unlinkat(dir_fd, name, 0) == 0 || (errno != EISDIR && errno != EPERM) || depth == 0) return;
  int fd = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  alignas(struct dirent64) char buffer[2048];
  // Removing entries while listing may hide some from the listing: list
  // again from the start until a pass finds nothing to remove.
  for (bool removed = true; removed;) {
    removed = false;
    ::lseek(fd, 0, SEEK_SET);
    for (ssize_t n; (n = ::getdents64(fd, buffer, sizeof buffer)) > 0;) {
      for (ssize_t at = 0; at < n;) {
        const auto* entry = reinterpret_cast<const struct dirent64*>(buffer + at);
        at += entry->d_reclen;
        if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) continue;
        remove_entry_at(fd, entry->d_name, depth - 1);
        removed = true;
      }
    }
  }
  ::close(fd);
  ::unlinkat(dir_fd, name, AT_REMOVEDIR);
}

extern "C" void remove_staging_and_reraise(int signal_number) {
  const int saved_errno = errno;
  for (StagingSlot& slot : staging_slots) {
    if (slot.state.load(std::memory_order_acquire) == kLive) remove_entry_at(AT_FDCWD, slot.path, 16);
  }
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  ::sigemptyset(&default_action.sa_mask);
  ::sigaction(signal_number, &default_action, nullptr);
  errno = saved_errno;
  // Delivered with the default action once this handler returns.
  ::raise(signal_number);
}

// Only where the action is the default: a program's own handlers stay, and
// an ignored SIGHUP (nohup) stays ignored.
void install_cleanup_handlers() {
  for (int signal_number : kCleanupSignals) {
    struct sigaction current {};
    if (::sigaction(signal_number, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
    struct sigaction action {};
    action.sa_handler = remove_staging_and_reraise;
    ::sigemptyset(&action.sa_mask);
    for (int other : kCleanupSignals) ::sigaddset(&action.sa_mask, other);
    ::sigaction(signal_number, &action, nullptr);
  }
}

void track_staging(const fs::path& staging) {
  static std::once_flag installed;
  std::call_once(installed, install_cleanup_handlers);
  std::error_code ec;
  const std::string absolute = fs::absolute(staging, ec).string();
  if (ec || absolute.size() >= PATH_MAX) return;
  for (StagingSlot& slot : staging_slots) {
    int expected = kFree;
    if (!slot.state.compare_exchange_strong(expected, kBusy)) continue;
    std::memcpy(slot.path, absolute.c_str(), absolute.size() + 1);
    slot.state.store(kLive, std::memory_order_release);
    return;
  }
}

void untrack_staging(const fs::path& staging) {
  std::error_code ec;
  const std::string absolute = fs::absolute(staging, ec).string();
  for (StagingSlot& slot : staging_slots) {
    int expected = kLive;
    if (slot.state.load() != kLive || absolute != slot.path) continue;
    if (slot.state.compare_exchange_strong(expected, kBusy)) slot.state.store(kFree, std::memory_order_release);
    return;
  }
}

fs::path parent_of(const fs::path& path) {
  fs::path parent = path.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

bool path_exists(const fs::path& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

Status sync_directory_at(const fs::path& directory, const FaultHook& hook) {
  CKPT_TRY(injected_fault(hook, IoStep::kSync, directory));
  int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return detail::io_error("open directory", directory.string());
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) return detail::io_error("fsync directory", directory.string(), saved);
  return {};
}

// One flush of everything written under `directory`: data, inodes and
// directory entries of every file the staging tree holds.
Status sync_file_system(const fs::path& directory, const FaultHook& hook) {
  CKPT_TRY(injected_fault(hook, IoStep::kSync, directory));
  int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return detail::io_error("open directory", directory.string());
  int rc = ::syncfs(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) return detail::io_error("syncfs", directory.string(), saved);
  return {};
}

// A unique hidden sibling of `destination` inside the same directory, so the
// final rename never crosses file systems; `marker` says what it is.
fs::path sibling_name(const fs::path& destination, std::string_view marker) {
  static std::atomic<std::uint64_t> counter{0};
  auto stamp = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::string name = fmt::format(".{}{}{}-{}-{:x}", destination.filename().string(), marker, ::getpid(),
                                 counter.fetch_add(1), stamp & 0xffffff);
  return parent_of(destination) / name;
}

std::optional<FileIdentity> identity_of(const fs::path& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) return std::nullopt;
  return FileIdentity{info.st_dev, info.st_ino};
}

// `path` (resolved) and every directory above it, up to the root.
std::vector<FileIdentity> identities_up_from(const fs::path& path) {
  std::vector<FileIdentity> chain;
  std::error_code ec;
  fs::path resolved = fs::canonical(path, ec);
  if (ec) return chain;
  for (;;) {
    if (auto identity = identity_of(resolved)) chain.push_back(*identity);
    if (resolved == resolved.root_path() || !resolved.has_relative_path()) break;
    resolved = resolved.parent_path();
  }
  return chain;
}

bool contains(const std::vector<FileIdentity>& chain, const std::optional<FileIdentity>& identity) {
  return identity && std::find(chain.begin(), chain.end(), *identity) != chain.end();
}

// A destination that is a source, holds one, or lies inside one would
// destroy or change the data being read.
Status refuse_source_overlap(const fs::path& destination, const std::vector<fs::path>& sources) {
  const std::vector<FileIdentity> above_destination = identities_up_from(parent_of(destination));
  const std::optional<FileIdentity> destination_identity = identity_of(destination);
  for (const fs::path& source : sources) {
    auto overlap = [&](std::string_view how) {
      return Error(ErrorCode::kReplaceOverlapsSource,
                   fmt::format("the destination {} the source '{}' being read; nothing was written", how,
                               source.string()))
          .in_file(destination.string());
    };
    const std::vector<FileIdentity> source_and_above = identities_up_from(source);
    if (source_and_above.empty()) continue;  // no such source: nothing to protect
    if (destination_identity == source_and_above.front()) return overlap("is");
    if (contains(source_and_above, destination_identity)) return overlap("holds");
    if (contains(above_destination, source_and_above.front())) return overlap("lies inside");
  }
  return {};
}

std::string_view kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "symbolic link";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "device";
  return "special file";
}

// The first few names inside `directory` (sorted) and how many there are.
std::pair<std::vector<std::string>, std::size_t> first_entries(const fs::path& directory, std::size_t shown) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string() + (it->is_directory(ec) ? "/" : ""));
  }
  std::sort(names.begin(), names.end());
  const std::size_t count = names.size();
  names.resize(std::min(count, shown));
  return {std::move(names), count};
}

// What overwrite may replace: nothing there, a regular file, an empty
// directory, or a directory `is_checkpoint` accepts. Never a user's
// directory, a link or a device.
Status check_replaceable(const fs::path& destination, const WriteOptions& options) {
  struct stat info {};
  if (::lstat(destination.c_str(), &info) != 0) {
    return errno == ENOENT ? Status{} : detail::io_error("lstat", destination.string());
  }
  if (S_ISREG(info.st_mode)) return {};
  if (!S_ISDIR(info.st_mode)) {
    return Error(ErrorCode::kReplaceSpecialFile,
                 fmt::format("is a {}; overwrite replaces only a file or a checkpoint directory, nothing was replaced",
                             kind_of(info.st_mode)))
        .in_file(destination.string());
  }
  auto [names, count] = first_entries(destination, 5);
  if (count == 0) return {};
  std::string why = "no checkpoint check was given";
  if (options.is_checkpoint) {
    Status checked = options.is_checkpoint(destination);
    if (checked.ok()) return {};
    why = fmt::format("{} {}: {}", code_id(checked.error().code()), code_name(checked.error().code()),
                      checked.error().message());
  }
  std::vector<std::string> quoted;
  for (const std::string& name : names) quoted.push_back(fmt::format("{:?}", name));
  return Error(ErrorCode::kReplaceNotCheckpoint,
               fmt::format("is a directory that is not a checkpoint of a known format ({}); it holds {} entr{}: {}{}; "
                           "overwrite (--force) replaces only checkpoints and single files, nothing was replaced",
                           why, count, count == 1 ? "y" : "ies", fmt::join(quoted, ", "),
                           count > quoted.size() ? ", ..." : ""))
      .in_file(destination.string());
}

// Removes a replaced directory tree `old` (or file) unless a reader holds
// it, in which case it is moved aside to a ".ckpt-old-" sibling of
// `destination` for a later save to remove.
void retire(const fs::path& old, const fs::path& destination) {
  int fd = ::open(old.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    ::unlink(old.c_str());  // a file: a reader's open descriptor keeps its data alive
    return;
  }
  std::error_code ignored;
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    fs::remove_all(old, ignored);  // holding the lock, so no reader starts on it meanwhile
  } else if (!destination.empty()) {
    fs::rename(old, sibling_name(destination, kRetiredMarker), ignored);
  }
  ::close(fd);
}

// Removes the retired trees of earlier saves to `destination` that no
// reader holds any more.
void sweep_retired(const fs::path& destination) {
  const std::string prefix = "." + destination.filename().string() + std::string(kRetiredMarker);
  std::vector<fs::path> retired;
  std::error_code ec;
  for (fs::directory_iterator it(parent_of(destination), ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(prefix)) retired.push_back(it->path());
  }
  for (const fs::path& old : retired) retire(old, {});
}

// Moves the finished `staging` onto `destination`. Without overwrite the
// rename refuses an existing destination even if it appeared meanwhile;
// with overwrite the two are exchanged atomically and the old one retired.
// `checked` is what stood at the destination when it was found replaceable;
// anything else found there now is checked again.
Status publish(const fs::path& staging, const fs::path& destination, const WriteOptions& options,
               const std::optional<FileIdentity>& checked) {
  CKPT_TRY(injected_fault(options.fault_hook, IoStep::kRename, destination));
  const std::optional<FileIdentity> present = identity_of(destination);
  const bool replacing = options.overwrite && present.has_value();
  if (replacing && present != checked) {
    CKPT_TRY(refuse_source_overlap(destination, options.sources));
    CKPT_TRY(check_replaceable(destination, options));
  }
  unsigned flags = replacing ? RENAME_EXCHANGE : RENAME_NOREPLACE;
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, destination.c_str(), flags) != 0) {
    if (errno == EEXIST || errno == ENOTEMPTY) {
      return Error(ErrorCode::kDestinationExists, "destination appeared while writing (another writer?); not replaced")
          .in_file(destination.string());
    }
    return detail::io_error("rename into place", destination.string());
  }
  if (replacing) {
    // The old checkpoint now sits at the staging name; the new one is in
    // place, so failing to remove the old copy loses nothing.
    retire(staging, destination);
    sweep_retired(destination);
  }
  return sync_directory_at(parent_of(destination), options.fault_hook);
}

Status refuse_existing(const fs::path& destination, const WriteOptions& options) {
  if (!options.overwrite && path_exists(destination)) {
    return Error(ErrorCode::kDestinationExists, "already exists; not replaced unless asked to overwrite")
        .in_file(destination.string());
  }
  return {};
}

// A new output at `destination`: refuses a path without a name, one that
// overlaps a source, and an existing one (unless overwriting, then anything
// but a file or checkpoint). Returns what stands there now.
Result<std::optional<FileIdentity>> check_destination(const fs::path& destination, const WriteOptions& options) {
  if (destination.filename().empty()) {
    return Error(ErrorCode::kInvalidArgument, "destination has no name").in_file(destination.string());
  }
  CKPT_TRY(refuse_source_overlap(destination, options.sources));
  CKPT_TRY(refuse_existing(destination, options));
  std::optional<FileIdentity> present = identity_of(destination);
  if (present) CKPT_TRY(check_replaceable(destination, options));
  return present;
}

Status check_relative(const fs::path& relative) {
  if (relative.empty() || relative.is_absolute()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a relative path", relative.string()));
  }
  for (const auto& part : relative) {
    if (part == ".." || part == ".") {
      return Error(ErrorCode::kUnsafeName, fmt::format("'{}' leaves its directory", relative.string()));
    }
  }
  return {};
}

}  // namespace

std::string_view io_step_name(IoStep step) {
  switch (step) {
    case IoStep::kCreate: return "create";
    case IoStep::kWrite: return "write";
    case IoStep::kSync: return "fsync";
    case IoStep::kRename: return "rename";
    case IoStep::kMkdir: return "mkdir";
  }
  return "unknown";
}

// ---- FileSink ----

Result<FileSink> FileSink::create(const fs::path& path, const FaultHook& hook, SyncMode mode, const fs::path& shown_as) {
  const std::string name = shown_as.empty() ? path.string() : shown_as.string();
  CKPT_TRY(injected_fault(hook, IoStep::kCreate, name));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return detail::io_error("create", name);
  return FileSink(fd, name, hook, mode);
}

FileSink::FileSink(FileSink&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)), hook_(std::move(other.hook_)),
      mode_(other.mode_), written_(other.written_) {}

FileSink& FileSink::operator=(FileSink&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    hook_ = std::move(other.hook_);
    mode_ = other.mode_;
    written_ = other.written_;
  }
  return *this;
}

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);
}

Status FileSink::write(std::span<const std::byte> bytes) {
  CKPT_TRY(write_at(written_, bytes));
  written_ += bytes.size();
  return {};
}

Status FileSink::write_from(const ByteSource& source, std::uint64_t offset, std::uint64_t length) {
  CKPT_TRY(write_from_at(written_, source, offset, length));
  written_ += length;
  return {};
}

Status FileSink::write_at(std::uint64_t at, std::span<const std::byte> bytes) const {
  if (fd_ < 0) return Error(ErrorCode::kInvalidArgument, "write after finish").in_file(path_);
  Status fault = injected_fault(hook_, IoStep::kWrite, path_);
  // A disk filling up mid-write: half the bytes land, then the failure.
  std::size_t done = 0;
  std::size_t stop = fault.ok() ? bytes.size() : bytes.size() / 2;
  while (done < stop) {
    ssize_t n = ::pwrite(fd_, bytes.data() + done, stop - done, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return detail::io_error("write", path_);
    done += static_cast<std::size_t>(n);
  }
  return fault;
}

Status FileSink::write_from_at(std::uint64_t at, const ByteSource& source, std::uint64_t offset,
                               std::uint64_t length) const {
  if (fd_ < 0) return Error(ErrorCode::kInvalidArgument, "write after finish").in_file(path_);
  CKPT_TRY(check_range(source, offset, length));
  int in_fd = source.file_descriptor();
  if (in_fd < 0) return copy_through_buffer(at, source, offset, length);
  CKPT_TRY(injected_fault(hook_, IoStep::kWrite, path_));
  // copy_file_range lets the kernel (or the file system: reflinks) move the
  // pages; it is refused across some file systems, then we stream.
  auto in_offset = static_cast<off64_t>(source.file_offset() + offset);
  auto out_offset = static_cast<off64_t>(at);
  std::uint64_t copied = 0;
  while (copied < length) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(length - copied, std::uint64_t{1} << 30));
    ssize_t n = ::copy_file_range(in_fd, &in_offset, fd_, &out_offset, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && copied == 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
      return copy_through_buffer(at, source, offset, length);
    }
    if (n < 0) return detail::io_error("copy_file_range", path_);
    if (n == 0) {
      return Error(ErrorCode::kDataSizeMismatch,
                   fmt::format("source ended after {} of {} bytes (changed while copying?)", copied, length))
          .in_file(source.name());
    }
    copied += static_cast<std::uint64_t>(n);
  }
  return {};
}

Status FileSink::copy_through_buffer(std::uint64_t at, const ByteSource& source, std::uint64_t offset,
                                     std::uint64_t length) const {
  std::vector<std::byte> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(length, kCopyBufferBytes)));
  for (std::uint64_t copied = 0; copied < length;) {
    std::span<std::byte> chunk(buffer.data(), static_cast<std::size_t>(std::min<std::uint64_t>(length - copied, buffer.size())));
    CKPT_TRY(source.read_at(offset + copied, chunk));
    CKPT_TRY(write_at(at + copied, chunk));
    copied += chunk.size();
  }
  return {};
}

Status FileSink::finish() {
  if (fd_ < 0) return {};
  if (mode_ == SyncMode::kFsync) {
    CKPT_TRY(injected_fault(hook_, IoStep::kSync, path_));
    if (::fsync(fd_) != 0) return detail::io_error("fsync", path_);
  } else {
    // Start write-back now so the final syncfs finds little left to do;
    // a file system without it just flushes later.
    ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
  }
  int rc = ::close(std::exchange(fd_, -1));
  if (rc != 0) return detail::io_error("close", path_);
  return {};
}

// ---- ReadDirectory ----

Result<std::shared_ptr<const ReadDirectory>> ReadDirectory::open(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return detail::io_error("open directory", path.string());
  std::shared_ptr<const ReadDirectory> directory(new ReadDirectory(fd));
  // Waits only while a writer deletes this very tree; still_at() then says
  // it is gone and the caller opens the path again.
  int rc;
  do {
    rc = ::flock(fd, LOCK_SH);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return detail::io_error("lock directory", path.string());
  return directory;
}

ReadDirectory::~ReadDirectory() { ::close(fd_); }

bool ReadDirectory::still_at(const fs::path& path) const {
  struct stat open_info {}, path_info {};
  return ::fstat(fd_, &open_info) == 0 && ::stat(path.c_str(), &path_info) == 0 &&
         open_info.st_dev == path_info.st_dev && open_info.st_ino == path_info.st_ino;
}

// ---- AtomicDirectory ----

fs::path without_trailing_separator(const fs::path& path) {
  fs::path result = path;
  while (!result.has_filename() && result.has_relative_path()) result = result.parent_path();
  return result;
}

Result<AtomicDirectory> AtomicDirectory::create(const fs::path& requested, WriteOptions options) {
  const fs::path destination = without_trailing_separator(requested);
  CKPT_ASSIGN_OR_RETURN(std::optional<FileIdentity> checked, check_destination(destination, options));
  fs::path staging = sibling_name(destination, kStagingMarker);
  CKPT_TRY(injected_fault(options.fault_hook, IoStep::kMkdir, destination));
  // Tracked before it exists: a signal right after the mkdir still removes it.
  track_staging(staging);
  if (::mkdir(staging.c_str(), 0755) != 0) {
    Error error = detail::io_error("create a staging directory beside", destination.string());
    untrack_staging(staging);
    return error;
  }
  return AtomicDirectory(destination, std::move(staging), std::move(options), checked);
}

AtomicDirectory::AtomicDirectory(AtomicDirectory&& other) noexcept
    : destination_(std::move(other.destination_)), staging_(std::move(other.staging_)),
      options_(std::move(other.options_)), checked_(other.checked_),
      committed_(std::exchange(other.committed_, true)) {}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_ && !staging_.empty()) {
    std::error_code ignored;
    fs::remove_all(staging_, ignored);
    untrack_staging(staging_);
  }
}

Status AtomicDirectory::make_directory(const fs::path& relative) {
  CKPT_TRY(check_relative(relative));
  const fs::path shown = destination_ / relative;
  CKPT_TRY(injected_fault(options_.fault_hook, IoStep::kMkdir, shown));
  if (::mkdir((staging_ / relative).c_str(), 0755) != 0) return detail::io_error("mkdir", shown.string());
  return {};
}

Result<FileSink> AtomicDirectory::create_file(const fs::path& relative) {
  CKPT_TRY(check_relative(relative));
  return FileSink::create(staging_ / relative, options_.fault_hook, SyncMode::kDeferred, destination_ / relative);
}

Status AtomicDirectory::commit() {
  if (committed_) return Error(ErrorCode::kInvalidArgument, "already committed").in_file(destination_.string());
  Status synced = sync_file_system(staging_, options_.fault_hook);
  if (!synced.ok()) {
    return Error(synced.error().code(), synced.error().message()).in_file(destination_.string());
  }
  CKPT_TRY(publish(staging_, destination_, options_, checked_));
  committed_ = true;
  untrack_staging(staging_);
  return {};
}

// ---- AtomicFile ----

Result<AtomicFile> AtomicFile::create(const fs::path& requested, WriteOptions options) {
  const fs::path destination = without_trailing_separator(requested);
  CKPT_ASSIGN_OR_RETURN(std::optional<FileIdentity> checked, check_destination(destination, options));
  fs::path staging = sibling_name(destination, kStagingMarker);
  // Tracked before it exists: a signal right after the open still removes it.
  track_staging(staging);
  auto sink = FileSink::create(staging, options.fault_hook, SyncMode::kFsync, destination);
  if (!sink.ok()) {
    untrack_staging(staging);
    return std::move(sink).error();
  }
  return AtomicFile(destination, std::move(staging), std::move(sink).value(), std::move(options), checked);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : destination_(std::move(other.destination_)), staging_(std::move(other.staging_)),
      sink_(std::move(other.sink_)), options_(std::move(other.options_)), checked_(other.checked_),
      committed_(std::exchange(other.committed_, true)) {}

AtomicFile::~AtomicFile() {
  if (!committed_ && !staging_.empty()) {
    ::unlink(staging_.c_str());
    untrack_staging(staging_);
  }
}

Status AtomicFile::commit() {
  if (committed_) return Error(ErrorCode::kInvalidArgument, "already committed").in_file(destination_.string());
  CKPT_TRY(sink_.finish());
  CKPT_TRY(publish(staging_, destination_, options_, checked_));
  committed_ = true;
  untrack_staging(staging_);
  return {};
}

}  // namespace ckpt
