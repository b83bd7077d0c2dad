// Conversions between a OneFlow snapshot, a directory of .npy files
// ("<variable>.npy") and an .npz archive, in any direction.
//
// Every conversion streams one variable at a time: C-order little-endian
// data is copied file to file by the kernel (copy_file_range) when both ends
// are plain files, and through a bounded buffer otherwise; big-endian .npy
// data is swapped chunk by chunk; Fortran-order .npy data is transposed in
// memory, capped by NpyReadOptions::max_reorder_bytes. The output is
// crash-safe: built under a temporary sibling and renamed into place last.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/meta.hpp"
#include "ckpt/format/npy.hpp"
#include "ckpt/format/zip.hpp"

namespace ckpt::convert {

enum class Format { kOneflow, kNpy, kNpz };

// "oneflow", "npy", "npz".
std::string_view format_name(Format format);
std::optional<Format> format_from_name(std::string_view name);

// From the content: a zip file is npz; a directory with snapshot_done or a
// variable directory is oneflow; a directory of .npy files is npy.
Result<Format> detect_source_format(const std::filesystem::path& path);
// The --to format, else .npz by extension, else what an existing directory
// holds, else oneflow.
Format choose_destination_format(const std::filesystem::path& path, std::optional<Format> requested);

// Shapes of an L0 snapshot (no meta): {"name": {"dtype": "kFloat", "shape": [2, 3]}}.
Result<ShapeTable> load_shapes(const std::filesystem::path& json_file);

struct Progress {
  std::size_t variables_done = 0;
  std::size_t variables_total = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::string_view variable;  // the one just written
};

struct ConvertOptions {
  WriteOptions write;            // overwrite, fault hook
  NpyReadOptions npy;            // bfloat16 policy, reorder cap
  ZipMethod npz_method = ZipMethod::kStored;
  ShapeTable shapes;             // for variables without meta
  std::function<void(const Progress&)> progress;
};

struct ConvertSummary {
  std::size_t variables = 0;
  std::uint64_t bytes = 0;  // element bytes
};

Result<ConvertSummary> convert(const std::filesystem::path& source, Format from,
                               const std::filesystem::path& destination, Format to,
                               const ConvertOptions& options = {});

}  // namespace ckpt::convert
