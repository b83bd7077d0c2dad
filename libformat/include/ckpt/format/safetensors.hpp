// safetensors files (huggingface/safetensors), read and written with every
// rule of the reference implementation plus an explicit duplicate check:
//
//   8 bytes   N, the header length, u64 little-endian, at most 100 000 000
//   N bytes   UTF-8 JSON object, space-padded (we pad to a multiple of 8):
//             {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]},
//              "__metadata__": {"key": "value"}}
//   the rest  the byte buffer: tensors C order, little-endian, contiguous
//             from 0, no holes, no overlaps, ending exactly at end of file
//
// The reader fails fast on the first problem; check_safetensors() collects
// every problem for validators. The format is registered as "safetensors"
// with open_checkpoint/create_checkpoint. Rules and codes: spec/safetensors.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/tensor.hpp"

namespace ckpt {

// The reference's MAX_HEADER_SIZE: refused before anything is allocated.
inline constexpr std::uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
inline constexpr std::string_view kSafetensorsMetadataKey = "__metadata__";

struct SafetensorsEntry {
  std::string name;
  VariableMeta meta;
  std::uint64_t begin;  // data_offsets, relative to the start of the byte buffer
  std::uint64_t end;
};

struct SafetensorsHeader {
  std::uint64_t data_start = 0;             // 8 + N: where the byte buffer begins in the file
  std::vector<SafetensorsEntry> entries;    // sorted by name
  std::map<std::string, std::string> metadata;
};

// The header of `file`, checked against every rule in the reference's
// order. Every problem goes to `problems` (none skipped once the header
// parses as a JSON object, unless the sink says stop); nullopt when there
// was an error.
std::optional<SafetensorsHeader> read_safetensors_header(const ByteSource& file, ProblemSink& problems);
// The same, failing on the first problem.
Result<SafetensorsHeader> read_safetensors_header(const ByteSource& file);

// "F32" -> kFloat; nullopt for names OneFlow has no type for (F8_*, F4, ...).
std::optional<DType> dtype_from_safetensors(std::string_view name);

// Whether `text` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view text);

}  // namespace ckpt
