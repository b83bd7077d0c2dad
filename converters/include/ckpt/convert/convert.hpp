// Conversion between any two checkpoint formats of the registry
// (ckpt/format/checkpoint.hpp): every tensor of a reader is added to a
// writer, then the writer commits.
//
// Memory stays bounded: each tensor streams from its source (file to file by
// the kernel when both ends are plain files; big-endian and deflated data are
// converted while read; Fortran-order arrays are reordered in memory up to
// NpyReadOptions::max_reorder_bytes). The output is crash-safe: nothing
// appears at the destination unless every tensor was written.
//
// Parallel: the writer is told every tensor first (CheckpointWriter::plan);
// where it then accepts concurrent adds (safetensors, single or sharded),
// up to `jobs` tensors are read, cast and written at once, each holding up
// to min(its bytes, kCopyBufferBytes) of buffers, and together no more than
// the byte budget (a tensor is always admitted when nothing else runs). The
// output is the same bytes for every number of jobs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/parallel.hpp"
#include "ckpt/format/registry.hpp"

namespace ckpt::convert {

// Shapes of an L0 snapshot (no meta) from a JSON file:
// {"name": {"dtype": "kFloat", "shape": [2, 3]}}, dtype in any common spelling.
Result<ShapeTable> load_shapes(const std::filesystem::path& json_file);

struct Progress {
  std::size_t variables_done = 0;
  std::size_t variables_total = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::string_view variable;  // the one just written
};

struct ConvertOptions {
  // Called after each tensor is written, one call at a time.
  std::function<void(const Progress&)> progress;
  // Text metadata to write, over the source's (safetensors destinations only;
  // others refuse it).
  TextMetadata metadata;
  // Convert a source with unsupported tensors (CheckpointReader::unsupported)
  // without them; otherwise that is refused (E540), as they would be lost.
  bool skip_unsupported = false;
  // Refuse (kObjectDataDropped) rather than drop a pickle's non-tensor data
  // in a flat destination.
  bool strict = false;
  ParallelOptions parallel = {};
};

// The buffer bytes converting one tensor of `bytes` holds: the copy buffer
// when its data is not moved file to file by the kernel.
std::uint64_t tensor_buffer_bytes(std::uint64_t bytes);

struct ConvertSummary {
  std::size_t variables = 0;
  std::uint64_t bytes = 0;  // element bytes
  std::vector<std::string> skipped;  // unsupported tensors left out (skip_unsupported)
  // The paths of the source object's non-tensor leaves (pickle::object_leaves)
  // that a flat destination has no place for: "epoch", "args"; "" for a
  // saved object that is itself one leaf.
  std::vector<std::string> dropped;
};

// Adds every tensor of `source` to `destination` (in name order, or several
// at once where the writer takes concurrent adds) and commits it. On failure
// nothing is committed: the caller drops the writer, and the destination
// stays absent (or as it was). A pickle source's object goes to a
// destination that keeps_object(); for another, its non-tensor leaves are
// listed in `dropped` (or refused when options.strict). A destination that
// stores text metadata gets the source's, then options.metadata's entries.
Result<ConvertSummary> convert(const CheckpointReader& source, CheckpointWriter& destination,
                               const ConvertOptions& options = {});

}  // namespace ckpt::convert
