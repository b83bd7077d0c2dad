// Validation of a checkpoint directory: every rule of spec/validation.md is
// checked and every problem collected, none stops the others.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/format/snapshot.hpp"

namespace ckpt {

struct Issue {
  ErrorCode code;
  Severity severity;
  std::string variable;  // empty for checkpoint-level issues
  std::string message;   // names the file, expected and actual
};

// An issue from an error: its code, variable, and message prefixed with its file.
Issue make_issue(const Error& problem, Severity severity);

struct ValidationReport {
  std::filesystem::path path;
  std::optional<Layout> layout;        // absent when nothing was recognised
  std::vector<VariableInfo> variables;  // those that could be described
  std::vector<Issue> issues;

  bool valid() const;  // no issue of severity error
  std::size_t count(Severity severity) const;
};

ValidationReport validate_snapshot(const std::filesystem::path& root);

}  // namespace ckpt
