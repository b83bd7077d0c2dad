#include "ckpt/format/validate.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "oneflow/snapshot_scan.hpp"

namespace ckpt {
namespace {

class CollectAll final : public detail::ScanSink {
 public:
  bool report(Severity severity, Error problem) override {
    issues.push_back(make_issue(problem, severity));
    return true;
  }
  std::vector<Issue> issues;
};

}  // namespace

Issue make_issue(const Error& problem, Severity severity) {
  std::string message = problem.file().empty() ? problem.message()
                                               : fmt::format("file '{}': {}", problem.file(), problem.message());
  return Issue{problem.code(), severity, problem.variable(), std::move(message)};
}

bool ValidationReport::valid() const { return count(Severity::kError) == 0; }

std::size_t ValidationReport::count(Severity severity) const {
  return static_cast<std::size_t>(
      std::count_if(issues.begin(), issues.end(), [&](const Issue& issue) { return issue.severity == severity; }));
}

ValidationReport validate_snapshot(const std::filesystem::path& root) {
  CollectAll sink;
  detail::ScanResult scan = detail::scan_checkpoint(root, sink);
  return ValidationReport{root, scan.layout, std::move(scan.variables), std::move(sink.issues)};
}

}  // namespace ckpt
