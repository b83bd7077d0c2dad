#include "ckpt/format/snapshot.hpp"

#include <algorithm>

#include "ckpt/format/oneflow_pickle.hpp"
#include "ckpt/format/problems.hpp"
#include "oneflow/snapshot_scan.hpp"

namespace ckpt {

ValidationReport validate_snapshot(const std::filesystem::path& root, const pickle::PicklePolicy& policy) {
  CollectAll problems;
  detail::ScanResult scan = detail::scan_checkpoint(root, problems, policy);
  std::string layout = scan.layout ? std::string(layout_id(*scan.layout)) : std::string();
  // P1's array tensors are the pickle's, beside the directories scanned.
  if (scan.pickle) {
    for (const PickleArrayRef& array : scan.pickle->arrays) {
      scan.variables.push_back(
          {.name = array.name, .meta = array.meta, .byte_size = array.meta.byte_size(), .numpy_array = true});
    }
    std::sort(scan.variables.begin(), scan.variables.end(),
              [](const VariableInfo& a, const VariableInfo& b) { return a.name < b.name; });
  }
  return ValidationReport{root, scan.layout ? "oneflow" : "", std::move(layout), std::move(scan.variables),
                          std::move(problems.issues())};
}

}  // namespace ckpt
