#include "ckpt/format/snapshot.hpp"

#include "ckpt/format/problems.hpp"
#include "oneflow/snapshot_scan.hpp"

namespace ckpt {

ValidationReport validate_snapshot(const std::filesystem::path& root, const pickle::PicklePolicy& policy) {
  CollectAll problems;
  detail::ScanResult scan = detail::scan_checkpoint(root, problems, policy);
  std::string layout = scan.layout ? std::string(layout_id(*scan.layout)) : std::string();
  return ValidationReport{root, scan.layout ? "oneflow" : "", std::move(layout), std::move(scan.variables),
                          std::move(problems.issues())};
}

}  // namespace ckpt
