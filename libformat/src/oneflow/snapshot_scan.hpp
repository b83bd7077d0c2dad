// The one walk over a checkpoint directory behind both Snapshot::open (which
// stops at the first error) and validate_snapshot (which collects them all).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "ckpt/format/problems.hpp"
#include "ckpt/format/snapshot.hpp"
#include "oneflow/pickle_dir_scan.hpp"

namespace ckpt::detail {

struct ScanResult {
  std::optional<Layout> layout;
  std::vector<VariableInfo> variables;  // sorted by name
  PickleDirectories pickle_directories;  // P1 only: variable -> tensor directory
  std::shared_ptr<const OneflowPickle> pickle;  // P1 only: pickled_data, read once
};

// How much of each variable directory the scan looks at.
enum class ScanDepth {
  // Every entry listed, so stray files are reported (validation).
  kListEverything,
  // Only `out` and `meta` looked up, not listed: an opening reader keeps no
  // warnings, and listing costs a directory read per variable.
  kDataAndMeta,
};

ScanResult scan_checkpoint(const std::filesystem::path& root, ProblemSink& problems, const pickle::PicklePolicy& policy,
                           ScanDepth depth = ScanDepth::kListEverything);

}  // namespace ckpt::detail
