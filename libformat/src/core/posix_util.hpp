// Small POSIX helpers shared by the sources: errno-carrying errors and
// retrying system calls.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "ckpt/format/error.hpp"

namespace ckpt::detail {

// An I/O error naming the operation, the file and the errno text.
inline Error io_error(std::string_view operation, std::string_view path, int error_number = errno) {
  ErrorCode code = error_number == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
  return Error(code, fmt::format("{} failed: {}", operation, std::strerror(error_number))).in_file(path);
}

}  // namespace ckpt::detail
