#include "ckpt/format/validation.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "ckpt/format/problems.hpp"

namespace ckpt {

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

bool FailFast::report(Severity severity, Error problem) {
  if (severity != Severity::kError) {
    warnings_.push_back(std::move(problem));
    return true;
  }
  if (!first_error_) first_error_.emplace(std::move(problem));
  return false;
}

Status FailFast::status() const {
  if (first_error_) return *first_error_;
  return {};
}

bool CollectAll::report(Severity severity, Error problem) {
  issues_.push_back(make_issue(problem, severity));
  return true;
}

bool CollectAll::has_errors() const {
  return std::any_of(issues_.begin(), issues_.end(), [](const Issue& issue) { return issue.severity == Severity::kError; });
}

bool TrackingSink::report(Severity severity, Error problem) {
  if (severity == Severity::kError) failed_ = true;
  stopped_ = !inner_.report(severity, std::move(problem)) || stopped_;
  return !stopped_;
}

bool InContext::report(Severity severity, Error problem) {
  problem.in_file(file_);
  if (!variable_.empty()) problem.in_variable(variable_);
  return inner_.report(severity, std::move(problem));
}

}  // namespace ckpt
