// ckpt-inspect: lists the tensors of a checkpoint of any supported format,
// with per-tensor statistics on request.
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/values.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: ckpt-inspect PATH [--stats] [--json] [--format NAME]

Lists the tensors of a checkpoint of any supported format (the format is
detected from the content unless --format names it) with dtype, shape and
bytes.

Options:
  --stats        also min, max, mean, std (population) over the finite
                 values, and the NaN and Inf counts; read in bounded chunks.
                 Complex and 128-bit tensors get no statistics.
  --json         print one JSON object:
                 {"path", "format", "tensors": [{"name", "dtype", "shape",
                  "bytes", "stats": {"min", "max", "mean", "std", "nan",
                  "inf", "finite"} or null}]}
                 min/max/mean/std are null when no value is finite.
                 and "modules": [{"name", "class"}] (see below)
  --format NAME  read as NAME instead of detecting the format
  --help         this text

A whole-module pickle (flow.save(model), torch.save(model)) also lists its
modules: each module's name (as its tensors' prefix, "" for the saved
object) and class, kept as data: the class is never imported.

Exit status: 0 listed, 2 usage or read error.
)";

struct Stats {
  std::uint64_t finite = 0;
  std::uint64_t nan = 0;
  std::uint64_t inf = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double mean = 0;
  double sum_squares = 0;  // of differences from the mean (Welford)

  void add(double value) {
    if (std::isnan(value)) {
      ++nan;
    } else if (std::isinf(value)) {
      ++inf;
    } else {
      ++finite;
      min = std::min(min, value);
      max = std::max(max, value);
      double delta = value - mean;
      mean += delta / static_cast<double>(finite);
      sum_squares += delta * (value - mean);
    }
  }
  double std_dev() const { return finite > 0 ? std::sqrt(sum_squares / static_cast<double>(finite)) : 0; }
};

ckpt::Result<std::optional<Stats>> compute_stats(const ckpt::CheckpointReader& reader, const ckpt::TensorInfo& tensor) {
  if (!ckpt::has_real_values(tensor.meta.dtype())) return std::optional<Stats>();
  CKPT_ASSIGN_OR_RETURN(auto source, reader.open(tensor.name));
  CKPT_ASSIGN_OR_RETURN(auto values, ckpt::ValueReader::open(*source, tensor.meta.dtype()));
  Stats stats;
  while (true) {
    CKPT_ASSIGN_OR_RETURN(auto chunk, values.next());
    if (chunk.empty()) break;
    for (double value : chunk) stats.add(value);
  }
  return std::optional<Stats>(stats);
}

nlohmann::json stats_json(const std::optional<Stats>& stats) {
  if (!stats) return nullptr;
  auto finite_or_null = [&](double value) { return stats->finite > 0 ? nlohmann::json(value) : nlohmann::json(nullptr); };
  return {{"min", finite_or_null(stats->min)},   {"max", finite_or_null(stats->max)},
          {"mean", finite_or_null(stats->mean)}, {"std", finite_or_null(stats->std_dev())},
          {"nan", stats->nan},                   {"inf", stats->inf},
          {"finite", stats->finite}};
}

std::string stats_text(const std::optional<Stats>& stats) {
  if (!stats) return "  (no statistics for this dtype)";
  if (stats->finite == 0) return fmt::format("  no finite value  nan={} inf={}", stats->nan, stats->inf);
  return fmt::format("  min={:.6g} max={:.6g} mean={:.6g} std={:.6g} nan={} inf={}", stats->min, stats->max,
                     stats->mean, stats->std_dev(), stats->nan, stats->inf);
}

struct Options {
  std::string path;
  std::optional<std::string> format;
  bool stats = false;
  bool json = false;
};

int run(const Options& options) {
  ckpt::OpenOptions open_options;
  open_options.format = options.format;
  auto reader = ckpt::open_checkpoint(options.path, open_options);
  if (!reader.ok()) {
    fmt::print(stderr, "ckpt-inspect: {}\n", reader.error().describe());
    return 2;
  }
  const auto& tensors = (*reader)->tensors();
  nlohmann::json listed = nlohmann::json::array();
  std::uint64_t total = 0;
  std::size_t name_width = 4;
  for (const auto& tensor : tensors) {
    total += tensor.meta.byte_size();
    name_width = std::max(name_width, tensor.name.size());
  }
  if (!options.json) {
    fmt::print("{}: {}, {} tensors, {} bytes\n", options.path, (*reader)->format_name(), tensors.size(), total);
  }
  for (const auto& tensor : tensors) {
    std::optional<Stats> stats;
    if (options.stats) {
      auto computed = compute_stats(**reader, tensor);
      if (!computed.ok()) {
        fmt::print(stderr, "ckpt-inspect: {}\n", std::move(computed).error().in_variable(tensor.name).describe());
        return 2;
      }
      stats = *computed;
    }
    std::string_view dtype = ckpt::dtype_name(tensor.meta.dtype());
    if (options.json) {
      nlohmann::json entry = {{"name", tensor.name}, {"dtype", dtype}, {"shape", tensor.meta.shape()},
                              {"bytes", tensor.meta.byte_size()}};
      if (options.stats) entry["stats"] = stats_json(stats);
      listed.push_back(std::move(entry));
    } else {
      fmt::print("  {:<{}}  {:<10}  {:<20}  {:>12}{}\n", tensor.name, name_width, dtype,
                 ckpt::shape_to_string(tensor.meta.shape()), tensor.meta.byte_size(),
                 options.stats ? stats_text(stats) : "");
    }
  }
  std::vector<ckpt::pickle::NamedStub> modules;
  if (const ckpt::pickle::Value* object = (*reader)->object()) modules = ckpt::pickle::module_stubs(*object);
  nlohmann::json modules_json = nlohmann::json::array();
  constexpr std::string_view kSavedObject = "(saved object)";
  std::size_t module_width = std::max(name_width, kSavedObject.size());
  if (!options.json && !modules.empty()) fmt::print("modules (classes kept as data, never imported):\n");
  for (const auto& module : modules) {
    std::string cls = fmt::format("{}.{}", module.node->cls->text, module.node->cls->name);
    if (options.json) {
      modules_json.push_back({{"name", module.name}, {"class", cls}});
    } else {
      fmt::print("  {:<{}}  {}\n", module.name.empty() ? kSavedObject : std::string_view(module.name), module_width, cls);
    }
  }
  if (options.json) {
    nlohmann::json out = {{"path", options.path}, {"format", (*reader)->format_name()}, {"tensors", std::move(listed)}};
    if (!modules.empty()) out["modules"] = std::move(modules_json);
    fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (arg == "--stats") {
      options.stats = true;
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--format" && i + 1 < args.size()) {
      options.format = std::string(args[++i]);
    } else if (arg.starts_with("-")) {
      fmt::print(stderr, "ckpt-inspect: unknown option {}\n\n{}", arg, kUsage);
      return 2;
    } else if (options.path.empty()) {
      options.path = arg;
    } else {
      fmt::print(stderr, "ckpt-inspect: one PATH only (got '{}' and '{}')\n", options.path, arg);
      return 2;
    }
  }
  if (options.path.empty()) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  return run(options);
}
