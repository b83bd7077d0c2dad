// The one walk over a checkpoint directory behind both Snapshot::open (which
// stops at the first error) and validate_snapshot (which collects them all).
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/format/snapshot.hpp"
#include "oneflow/pickle_dir_scan.hpp"

namespace ckpt::detail {

class ScanSink {
 public:
  virtual ~ScanSink() = default;
  // Returns false to stop the scan.
  virtual bool report(Severity severity, Error problem) = 0;
};

struct ScanResult {
  std::optional<Layout> layout;
  std::vector<VariableInfo> variables;  // sorted by name
  PickleDirectories pickle_directories;  // P1 only: variable -> tensor directory
};

ScanResult scan_checkpoint(const std::filesystem::path& root, ScanSink& sink);

}  // namespace ckpt::detail
