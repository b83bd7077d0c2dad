#include "ckpt/format/names.hpp"

#include <fmt/format.h>

#include "ckpt/format/atomic_output.hpp"

namespace ckpt {
namespace {

// Longest file name on common Linux file systems.
constexpr std::size_t kMaxNameBytes = 255;

Status invalid_name(std::string_view name, std::string_view why) {
  return Error(ErrorCode::kUnsafeName, fmt::format("variable name {:?} {}", name, why));
}

}  // namespace

Status check_entry_name(std::string_view name) {
  if (name.empty()) return invalid_name(name, "is empty");
  if (name == "." || name == "..") return invalid_name(name, "would name the directory itself or its parent");
  if (name.size() > kMaxNameBytes) {
    return invalid_name(name, fmt::format("is {} bytes; a directory name holds at most {}", name.size(), kMaxNameBytes));
  }
  for (char c : name) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '/') return invalid_name(name, "contains '/', which would make nested directories");
    if (byte < 0x20 || byte == 0x7f) return invalid_name(name, "contains a control character");
  }
  if (name.find(kStagingMarker) != std::string_view::npos) {
    return invalid_name(name, "looks like a leftover of an interrupted write");
  }
  return {};
}

}  // namespace ckpt
