// A OneFlow variable's `meta` file: its shape and data type as OneFlow's
// VariableMetaInfo text protobuf. The description itself is generic
// (tensor.hpp); only this text form is OneFlow's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ckpt/format/error.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/tensor.hpp"

namespace ckpt {

// Parses `meta` text as OneFlow's Python reader does: fields in any order,
// free whitespace and comments, the dtype by name or number, a missing
// shape meaning a scalar. Every problem goes to `problems` (unknown fields
// as warnings, kMetaUnknownField); nullopt when there was an error.
std::optional<VariableMeta> parse_meta(std::string_view text, ProblemSink& problems);
// The same, failing on the first error; warnings are dropped.
Result<VariableMeta> parse_meta(std::string_view text);

// OneFlow's exact bytes: "shape {\n  dim: 128\n  dim: 784\n}\ndata_type: kFloat\n".
std::string meta_to_text(const VariableMeta& meta);

// A meta file larger than this is refused before it is read: a real one is
// under a kilobyte even for 64 dims.
inline constexpr std::uint64_t kMaxMetaBytes = 64 * 1024;

}  // namespace ckpt
