// ckpt-validate: checks a checkpoint and lists its variables and problems.
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: ckpt-validate PATH [--json] [--quiet]

Checks a OneFlow checkpoint directory against every rule of the format
(spec/validation.md) and reports all problems found, not only the first.

Layouts recognised (the "format" field):
  oneflow-snapshot  meta + out per variable, snapshot_done (OneFlow 0.3.2-0.5, E1/L1)
  oneflow-lazy      out only, snapshot_done (OneFlow <= 0.3.1, L0): bytes only
  oneflow-graph     model.mlir + variable directories (nn.Graph export, G1)
  oneflow-pickle    pickled_data + tensor_N/ (OneFlow 0.6+, P1): variables
                    are the pickled tensors, named by their dotted keys
  npy               a directory of <variable>.npy files: every header and size
  npz               a NumPy .npz archive: every member's header, size and CRC

Options:
  --json    print one JSON object:
            {"path", "format", "valid",
             "variables": [{"name", "dtype", "shape", "bytes"}],
             "issues": [{"code", "name", "severity", "variable", "message"}]}
            dtype is OneFlow's enum name ("kFloat"); dtype and shape are null
            when unknown (no meta, or a broken one); format is null when
            nothing was recognised.
  --quiet   print only the problems (nothing when there is none)
  --help    this text

Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.
)";

struct Options {
  std::string path;
  bool json = false;
  bool quiet = false;
};

int exit_status(const ckpt::ValidationReport& report) {
  for (const auto& issue : report.issues) {
    auto family = static_cast<unsigned>(issue.code) / 100;
    if (issue.severity == ckpt::Severity::kError && family == 1) return 2;
  }
  return report.valid() ? 0 : 1;
}

std::string_view severity_word(ckpt::Severity severity) {
  return severity == ckpt::Severity::kError ? "error" : "warning";
}

// A report and the name of the format it found ("npy", "oneflow-snapshot"),
// absent when nothing was recognised.
struct Checked {
  ckpt::ValidationReport report;
  std::optional<std::string> format;
};

Checked validate_path(const std::string& path) {
  auto detected = ckpt::detect_format(path);
  // Nothing recognised: OneFlow's rules say what is missing or wrong.
  const std::string format = detected.ok() ? *detected : "oneflow";
  Checked checked{ckpt::validate_checkpoint(path, format), std::nullopt};
  if (!checked.report.layout.empty()) {
    checked.format = checked.report.layout;
  } else if (detected.ok()) {
    checked.format = format;
  }
  return checked;
}

void print_json(const ckpt::ValidationReport& report, const std::optional<std::string>& format) {
  nlohmann::json variables = nlohmann::json::array();
  for (const auto& variable : report.variables) {
    nlohmann::json entry = {{"name", variable.name}, {"bytes", variable.byte_size}};
    entry["dtype"] = variable.meta ? nlohmann::json(std::string(ckpt::dtype_name(variable.meta->dtype()))) : nullptr;
    entry["shape"] = variable.meta ? nlohmann::json(variable.meta->shape()) : nullptr;
    variables.push_back(std::move(entry));
  }
  nlohmann::json issues = nlohmann::json::array();
  for (const auto& issue : report.issues) {
    issues.push_back({{"code", ckpt::code_id(issue.code)},
                      {"name", std::string(ckpt::code_name(issue.code))},
                      {"severity", std::string(severity_word(issue.severity))},
                      {"variable", issue.variable.empty() ? nlohmann::json(nullptr) : nlohmann::json(issue.variable)},
                      {"message", issue.message}});
  }
  nlohmann::json out = {
      {"path", report.path.string()},
      {"format", format ? nlohmann::json(*format) : nullptr},
      {"valid", report.valid()},
      {"variables", std::move(variables)},
      {"issues", std::move(issues)},
  };
  // Replace invalid UTF-8 in names rather than failing on a hostile file.
  fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
}

void print_issues(const ckpt::ValidationReport& report) {
  for (const auto& issue : report.issues) {
    std::string where = issue.variable.empty() ? "" : fmt::format(" [{}]", issue.variable);
    fmt::print("{:7} {} {}{}: {}\n", severity_word(issue.severity), ckpt::code_id(issue.code),
               ckpt::code_name(issue.code), where, issue.message);
  }
}

void print_table(const ckpt::ValidationReport& report, const std::optional<std::string>& format) {
  std::uint64_t total = 0;
  std::size_t name_width = 4;
  for (const auto& variable : report.variables) {
    total += variable.byte_size;
    name_width = std::max(name_width, variable.name.size());
  }
  fmt::print("{}: {}, {} variables, {} bytes\n", report.path.string(), format.value_or("unrecognised"),
             report.variables.size(), total);
  if (!report.variables.empty()) {
    fmt::print("  {:<{}}  {:<10}  {:<20}  {:>12}\n", "name", name_width, "dtype", "shape", "bytes");
    for (const auto& variable : report.variables) {
      std::string dtype = variable.meta ? std::string(ckpt::dtype_name(variable.meta->dtype())) : "?";
      std::string shape = variable.meta ? ckpt::shape_to_string(variable.meta->shape()) : "?";
      fmt::print("  {:<{}}  {:<10}  {:<20}  {:>12}\n", variable.name, name_width, dtype, shape, variable.byte_size);
    }
  }
  print_issues(report);
  fmt::print("{}: {} errors, {} warnings\n", report.valid() ? "valid" : "INVALID",
             report.count(ckpt::Severity::kError), report.count(ckpt::Severity::kWarning));
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::string_view arg : args) {
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--quiet" || arg == "-q") {
      options.quiet = true;
    } else if (arg.starts_with("-") && arg != "-") {
      fmt::print(stderr, "ckpt-validate: unknown option {}\n\n{}", arg, kUsage);
      return 2;
    } else if (options.path.empty()) {
      options.path = arg;
    } else {
      fmt::print(stderr, "ckpt-validate: one PATH only (got '{}' and '{}')\n", options.path, arg);
      return 2;
    }
  }
  if (options.path.empty()) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  auto [report, format] = validate_path(options.path);
  if (options.json) {
    print_json(report, format);
  } else if (options.quiet) {
    print_issues(report);
  } else {
    print_table(report, format);
  }
  return exit_status(report);
}
