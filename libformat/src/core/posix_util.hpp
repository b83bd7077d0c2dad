// Small POSIX helpers shared by the sources: errno-carrying errors and
// retrying system calls.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <unistd.h>

#include <fmt/format.h>

#include "ckpt/format/error.hpp"

namespace ckpt::detail {

// An I/O error naming the operation, the file and the errno text.
inline Error io_error(std::string_view operation, std::string_view path, int error_number = errno) {
  ErrorCode code = error_number == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
  return Error(code, fmt::format("{} failed: {}", operation, std::strerror(error_number))).in_file(path);
}

// Fills `out` from `offset` of `fd`, retrying short reads and EINTR. A file
// that ends first is kDataSizeMismatch (it changed while open).
inline Status pread_full(int fd, std::uint64_t offset, std::span<std::byte> out, std::string_view path) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("read", path);
    if (n == 0) {
      return Error(ErrorCode::kDataSizeMismatch,
                   fmt::format("file ended at {} bytes while reading up to {} (changed while open?)", offset + done,
                               offset + out.size()))
          .in_file(path);
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace ckpt::detail
