// ckpt-validate: checks a checkpoint and lists its variables and problems.
#include <optional>
#include <string>

#include <fmt/format.h>

#include "cli.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/snapshot.hpp"

namespace {

using ckpt::printable;

constexpr std::string_view kDescription = R"(Checks a checkpoint of any registered format against every rule of its
format (spec/validation.md) and reports all problems found, not only the first.
The format is detected from the content unless --format names it; a directory
nothing recognises is checked by OneFlow's rules, which say what is missing.)";

struct Options {
  std::string path;
  ckpt::cli::ReaderOptions reader;
  bool json = false;
  bool quiet = false;
};

int exit_status(const ckpt::ValidationReport& report) {
  for (const auto& issue : report.issues) {
    auto family = static_cast<unsigned>(issue.code) / 100;
    if (issue.severity == ckpt::Severity::kError && family == 1) return ckpt::cli::kExitUsageOrIo;
  }
  return report.valid() ? ckpt::cli::kExitOk : ckpt::cli::kExitInvalid;
}

std::string_view severity_word(ckpt::Severity severity) {
  return severity == ckpt::Severity::kError ? "error" : "warning";
}

// The report, the registry name of the format checked (absent when nothing
// was recognised) and the OneFlow layout found.
struct Checked {
  ckpt::ValidationReport report;
  std::optional<std::string> format;
  std::optional<std::string> layout;
};

Checked validate_path(const std::string& path, const ckpt::OpenOptions& options) {
  auto detected = options.format ? ckpt::Result<std::string>(*options.format) : ckpt::detect_format(path);
  // Nothing recognised: OneFlow's rules say what is missing or wrong.
  const std::string format = detected.ok() ? *detected : "oneflow";
  Checked checked{ckpt::validate_checkpoint(path, format, options), std::nullopt, std::nullopt};
  if (detected.ok() || !checked.report.layout.empty()) checked.format = format;
  if (!checked.report.layout.empty()) checked.layout = checked.report.layout;
  return checked;
}

void print_json(const Options& options, const Checked& checked) {
  nlohmann::json out = ckpt::cli::envelope("ckpt-validate", options.path);
  const std::string format = checked.format.value_or("");
  if (checked.format) out["format"] = *checked.format;
  if (checked.layout) out["layout"] = *checked.layout;
  out["valid"] = checked.report.valid();
  for (const auto& variable : checked.report.variables) {
    out["tensors"].push_back(ckpt::cli::tensor_json(variable.name, variable.meta ? &*variable.meta : nullptr,
                                                    variable.byte_size,
                                                    ckpt::cli::label_format(format, variable.numpy_array)));
  }
  for (const auto& issue : checked.report.issues) out["issues"].push_back(ckpt::cli::issue_json(issue));
  ckpt::cli::print_json(out);
}

void print_issues(const ckpt::ValidationReport& report) {
  for (const auto& issue : report.issues) {
    std::string where = issue.variable.empty() ? "" : fmt::format(" [{}]", printable(issue.variable));
    fmt::print("{:7} {} {}{}: {}\n", severity_word(issue.severity), ckpt::code_id(issue.code),
               ckpt::code_name(issue.code), where, printable(issue.message));
  }
}

void print_table(const Options& options, const Checked& checked) {
  const auto& report = checked.report;
  const std::string format = checked.format.value_or("");
  std::uint64_t total = 0;
  std::size_t name_width = 4;
  for (const auto& variable : report.variables) {
    total += variable.byte_size;
    name_width = std::max(name_width, printable(variable.name).size());
  }
  std::string kind = checked.format.value_or("unrecognised");
  if (checked.layout) kind += fmt::format(" ({})", *checked.layout);
  fmt::print("{}: {}, {} variables, {} bytes\n", printable(options.path), kind, report.variables.size(), total);
  if (!report.variables.empty()) {
    fmt::print("  {:<{}}  {:<18}  {:<20}  {:>12}\n", "name", name_width, "dtype", "shape", "bytes");
    for (const auto& variable : report.variables) {
      std::string_view labels = ckpt::cli::label_format(format, variable.numpy_array);
      std::string dtype = variable.meta ? ckpt::cli::dtype_text(variable.meta->dtype(), labels) : "?";
      std::string shape = variable.meta ? ckpt::shape_to_string(variable.meta->shape()) : "?";
      fmt::print("  {:<{}}  {:<18}  {:<20}  {:>12}\n", printable(variable.name), name_width, dtype, shape,
                 variable.byte_size);
    }
  }
  print_issues(report);
  fmt::print("{}: {} errors, {} warnings\n", report.valid() ? "valid" : "INVALID",
             report.count(ckpt::Severity::kError), report.count(ckpt::Severity::kWarning));
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  ckpt::cli::Tool tool("ckpt-validate", std::string(kDescription));
  auto& app = tool.app();
  app.add_option("PATH", options.path, "the checkpoint to check")->required();
  ckpt::cli::add_reader_options(app, options.reader, "--format");
  app.add_flag("--json", options.json,
               "print one JSON document (spec/schema/ckpt-validate.schema.json): the envelope with "
               "\"valid\", every tensor and every issue");
  app.add_flag("-q,--quiet", options.quiet, "print only the problems (nothing when there is none)");
  app.footer(ckpt::cli::formats_help() + "\nExit status: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.");
  if (auto stop = tool.parse(argc, argv)) return *stop;

  auto open_options = options.reader.open_options();
  if (!open_options.ok()) {
    nlohmann::json out = ckpt::cli::envelope("ckpt-validate", options.path);
    out["valid"] = false;
    return tool.fail(open_options.error(), options.json ? &out : nullptr);
  }
  Checked checked = validate_path(options.path, *open_options);
  if (options.json) {
    print_json(options, checked);
  } else if (options.quiet) {
    print_issues(checked.report);
  } else {
    print_table(options, checked);
  }
  return exit_status(checked.report);
}
