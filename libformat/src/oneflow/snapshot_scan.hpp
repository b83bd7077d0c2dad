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

ScanResult scan_checkpoint(const std::filesystem::path& root, ProblemSink& problems, const pickle::PicklePolicy& policy);

}  // namespace ckpt::detail
