// What the registry knows about each format: its name, a one-line summary,
// its file-name extensions and whether it is a file or a directory. Tools
// build their --help lists, their --from/--to/--format choices and the
// destination format of a conversion from this, so a format added to the
// registry appears everywhere at once.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

enum class FormatKind { kFile, kDirectory };
// "file" or "directory".
std::string_view format_kind_name(FormatKind kind);

struct FormatDescription {
  std::string_view name;     // "safetensors": the one name every tool, report and API uses
  std::string_view summary;  // one line for --help
  std::span<const std::string_view> extensions;  // ".safetensors"; empty for directory formats
  FormatKind kind;
};

// In detection order.
std::vector<FormatDescription> registered_formats();

// The format to write at `destination`: `explicit_to` when given (a
// registered name), else the format whose extension the name has, else the
// format an existing destination holds, else, for a name without an
// extension, the first directory format of the registry (oneflow). A name
// with an extension no format claims is refused, and so is a file format
// whose destination is an existing directory: "x.safetensors/" is a
// safetensors file (the separator is dropped) or an error, never a directory.
Result<std::string> format_for_destination(const std::filesystem::path& destination,
                                           const std::optional<std::string>& explicit_to);

// The dtype as `format` spells it in its own files ("BF16" in safetensors,
// "<f4" in npy, "FloatStorage" in torch); empty where the format stores
// OneFlow's names (oneflow) or has none for the type.
std::string_view dtype_name_in_format(std::string_view format, DType dtype);

}  // namespace ckpt
