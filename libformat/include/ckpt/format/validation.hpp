// What a validator reports, for every format: the tensors it could describe
// and every problem found (spec/validation.md), none stopping the others.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/format/tensor.hpp"

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
  // The format validated (a registry name, "oneflow"); empty when none was
  // recognised.
  std::string format;
  // The generation recognised, for formats that have several ("L1/E1", "P1");
  // empty when the format has a single layout or nothing was recognised.
  std::string layout;
  std::vector<VariableInfo> variables;  // those that could be described
  std::vector<Issue> issues;

  bool valid() const;  // no issue of severity error
  std::size_t count(Severity severity) const;
};

}  // namespace ckpt
