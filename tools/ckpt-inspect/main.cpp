// ckpt-inspect: lists the tensors of a checkpoint of any supported format,
// with per-tensor statistics on request.
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/parallel.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/values.hpp"

namespace {

using ckpt::printable;

constexpr std::string_view kDescription = R"text(Lists the tensors of a checkpoint of any registered format (detected from
the content unless --format names it) with dtype, shape and bytes. The dtype is
the canonical (OneFlow) name, followed by the file's own name where the format
has one: "kBFloat16 (BF16)". A whole-module pickle (flow.save(model), torch.save(model))
also lists its modules: each module's name (its tensors' prefix, "" for the
saved object) and class, kept as data: the class is never imported. The pickle
formats also list the object's non-tensor values ("objects"): each one's path
(named as tensors are), type and Python repr() when short: an epoch, a config
dict, an argparse.Namespace kept as a stub (--allow-global). A safetensors
file's __metadata__ is listed after the summary line; npz members of types
ckpt cannot represent ('|S3', '<f16', objects) are listed as unsupported.)text";

// repr() up to this many bytes in --json ("value": null beyond), and in text
// cut to kTextValueBytes with "...".
constexpr std::size_t kJsonValueBytes = 256;
constexpr std::size_t kTextValueBytes = 100;

struct Stats {
  std::uint64_t finite = 0;
  std::uint64_t nan = 0;
  std::uint64_t inf = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double mean = 0;
  double sum_squares = 0;  // of differences from the mean

  // One pass for the counts, sum and extremes, one for the squared
  // differences from the chunk's own mean, then merged: no division per value.
  void add(std::span<const double> values) {
    Stats chunk;
    double sum = 0;
    for (double value : values) {
      if (std::isnan(value)) {
        ++chunk.nan;
      } else if (std::isinf(value)) {
        ++chunk.inf;
      } else {
        ++chunk.finite;
        sum += value;
        chunk.min = std::min(chunk.min, value);
        chunk.max = std::max(chunk.max, value);
      }
    }
    if (chunk.finite > 0) {
      chunk.mean = sum / static_cast<double>(chunk.finite);
      for (double value : values) {
        if (std::isfinite(value)) chunk.sum_squares += (value - chunk.mean) * (value - chunk.mean);
      }
    }
    merge(chunk);
  }

  // Chan, Golub and LeVeque's pairwise update of mean and sum of squares.
  void merge(const Stats& other) {
    nan += other.nan;
    inf += other.inf;
    if (other.finite == 0) return;
    const double n = static_cast<double>(finite + other.finite);
    const double delta = other.mean - mean;
    mean += delta * static_cast<double>(other.finite) / n;
    sum_squares += other.sum_squares + delta * delta * static_cast<double>(finite) * static_cast<double>(other.finite) / n;
    finite += other.finite;
    min = std::min(min, other.min);
    max = std::max(max, other.max);
  }
  double std_dev() const { return finite > 0 ? std::sqrt(sum_squares / static_cast<double>(finite)) : 0; }
};

// The statistics of every tensor (none for dtypes without real values), its
// ranges read in parallel and merged in order.
ckpt::Result<std::vector<std::optional<Stats>>> compute_stats(const ckpt::CheckpointReader& reader,
                                                              const ckpt::ParallelOptions& parallel) {
  const auto& tensors = reader.tensors();
  std::vector<ckpt::cli::ElementRange> ranges;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& meta = tensors[i].meta;
    if (!ckpt::has_real_values(meta.dtype())) continue;
    bool split = false;
    if (meta.element_count() > ckpt::cli::kRangeElements) {
      auto window = ckpt::cli::is_file_window(reader, tensors[i]);
      if (!window.ok()) return std::move(window).error().in_variable(tensors[i].name);
      split = *window;
    }
    ckpt::cli::append_ranges(ranges, i, meta.element_count(), split);
  }
  std::vector<Stats> range_stats(ranges.size());
  CKPT_TRY(ckpt::run_tasks(
      ranges.size(), parallel, [](std::size_t) { return ckpt::cli::kRangeBufferBytes; },
      [&](std::size_t index) -> ckpt::Status {
        const auto& range = ranges[index];
        const auto& tensor = tensors[range.tensor];
        auto read = [&]() -> ckpt::Status {
          CKPT_ASSIGN_OR_RETURN(auto source, ckpt::cli::open_range(reader, tensor, range));
          CKPT_ASSIGN_OR_RETURN(auto values, ckpt::ValueReader::open(*source, tensor.meta.dtype()));
          while (true) {
            CKPT_ASSIGN_OR_RETURN(auto chunk, values.next());
            if (chunk.empty()) return {};
            range_stats[index].add(chunk);
          }
        };
        ckpt::Status status = read();
        if (!status.ok()) return std::move(status).error().in_variable(tensor.name);
        return {};
      }));
  std::vector<std::optional<Stats>> stats(tensors.size());
  for (std::size_t index = 0; index < ranges.size(); ++index) {
    auto& merged = stats[ranges[index].tensor];
    if (!merged) merged.emplace();
    merged->merge(range_stats[index]);
  }
  return stats;
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
  ckpt::cli::ReaderOptions reader;
  bool stats = false;
  ckpt::cli::ParallelFlags parallel;
  bool json = false;
  bool quiet = false;
};

// The non-tensor values of a pickle's object: into `out` with --json, else as text.
void print_objects(const ckpt::pickle::Value& object, bool json, nlohmann::json& out) {
  const auto leaves = ckpt::pickle::object_leaves(object);
  if (json) {
    out["objects"] = nlohmann::json::array();
    for (const auto& leaf : leaves) {
      auto value = ckpt::pickle::python_repr(*leaf.node, kJsonValueBytes);
      out["objects"].push_back(
          {{"path", leaf.path}, {"type", leaf.type}, {"value", value ? nlohmann::json(*value) : nlohmann::json(nullptr)}});
    }
    return;
  }
  if (leaves.empty()) return;
  constexpr std::string_view kSavedObject = "(saved object)";
  std::size_t path_width = kSavedObject.size();
  std::size_t type_width = 4;
  for (const auto& leaf : leaves) {
    path_width = std::max(path_width, printable(leaf.path).size());
    type_width = std::max(type_width, printable(leaf.type).size());
  }
  fmt::print("objects (non-tensor values, kept as data):\n");
  for (const auto& leaf : leaves) {
    auto value = ckpt::pickle::python_repr(*leaf.node, kTextValueBytes);
    std::string shown;
    if (value) {
      shown = ckpt::cli::printable_repr(*value);
    } else {
      // Long: its first bytes (a repr of at most 64 KiB is built to cut from).
      auto longer = ckpt::pickle::python_repr(*leaf.node, 1u << 16);
      shown = ckpt::cli::printable_repr(longer ? longer->substr(0, kTextValueBytes) : "") + "...";
    }
    fmt::print("  {:<{}}  {:<{}}  {}\n", leaf.path.empty() ? kSavedObject : printable(leaf.path), path_width,
               printable(leaf.type), type_width, shown);
  }
}

int run(const ckpt::cli::Tool& tool, Options& options) {
  nlohmann::json out = ckpt::cli::envelope("ckpt-inspect", options.path);
  auto failed = [&](const ckpt::Error& error) { return tool.fail(error, options.json ? &out : nullptr); };
  auto reader = options.reader.open(options.path);
  if (!reader.ok()) return failed(reader.error());
  ckpt::cli::describe_checkpoint(out, **reader);
  const std::string format((*reader)->format_name());
  const auto& tensors = (*reader)->tensors();
  std::uint64_t total = 0;
  std::size_t name_width = 4;
  for (const auto& tensor : tensors) {
    total += tensor.meta.byte_size();
    name_width = std::max(name_width, printable(tensor.name).size());
  }
  if (!options.json && !options.quiet) {
    std::string kind = format + ((*reader)->layout().empty() ? "" : fmt::format(" ({})", (*reader)->layout()));
    fmt::print("{}: {}, {} tensors, {} bytes\n", printable(options.path), kind, tensors.size(), total);
  }
  const ckpt::TextMetadata& metadata = (*reader)->metadata();
  if (options.json) {
    if (!metadata.empty()) out["metadata"] = metadata;
  } else if (!options.quiet && !metadata.empty()) {
    fmt::print("metadata:\n");
    for (const auto& [key, value] : metadata) fmt::print("  {}: {}\n", printable(key), printable(value));
  }
  std::vector<std::optional<Stats>> all_stats(tensors.size());
  if (options.stats) {
    auto computed = compute_stats(**reader, options.parallel.options());
    if (!computed.ok()) return failed(computed.error());
    all_stats = std::move(computed).value();
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& tensor = tensors[i];
    const std::optional<Stats>& stats = all_stats[i];
    if (options.json) {
      nlohmann::json entry = ckpt::cli::tensor_json(tensor.name, &tensor.meta, tensor.meta.byte_size(),
                                                    ckpt::cli::label_format(format, tensor.numpy_array));
      if (options.stats) entry["stats"] = stats_json(stats);
      out["tensors"].push_back(std::move(entry));
    } else {
      fmt::print("  {:<{}}  {:<18}  {:<20}  {:>12}{}\n", printable(tensor.name), name_width,
                 ckpt::cli::dtype_text(tensor.meta.dtype(), ckpt::cli::label_format(format, tensor.numpy_array)),
                 ckpt::shape_to_string(tensor.meta.shape()),
                 tensor.meta.byte_size(), options.stats ? stats_text(stats) : "");
    }
  }
  const auto& unsupported = (*reader)->unsupported();
  if (!options.json && !unsupported.empty()) fmt::print("unsupported (types ckpt cannot represent, not read):\n");
  for (const auto& tensor : unsupported) {
    if (options.json) {
      out["unsupported"].push_back({{"name", tensor.name}, {"descr", tensor.descr}, {"reason", tensor.reason}});
    } else {
      fmt::print("  {:<{}}  {:<18}  {}\n", printable(tensor.name), name_width, printable(tensor.descr),
                 printable(tensor.reason));
    }
  }
  std::vector<ckpt::pickle::NamedStub> modules;
  if (const ckpt::pickle::Value* object = (*reader)->object()) modules = ckpt::pickle::module_stubs(*object);
  constexpr std::string_view kSavedObject = "(saved object)";
  const std::size_t module_width = std::max(name_width, kSavedObject.size());
  if (!options.json && !modules.empty()) fmt::print("modules (classes kept as data, never imported):\n");
  for (const auto& module : modules) {
    std::string cls = fmt::format("{}.{}", module.node->cls->text, module.node->cls->name);
    if (options.json) {
      out["modules"].push_back({{"name", module.name}, {"class", cls}});
    } else {
      fmt::print("  {:<{}}  {}\n", module.name.empty() ? kSavedObject : printable(module.name), module_width,
                 printable(cls));
    }
  }
  if (const ckpt::pickle::Value* object = (*reader)->object()) print_objects(*object, options.json, out);
  if (options.json) ckpt::cli::print_json(out);
  return ckpt::cli::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  ckpt::cli::Tool tool("ckpt-inspect", std::string(kDescription));
  auto& app = tool.app();
  app.add_option("PATH", options.path, "the checkpoint to list")->required();
  ckpt::cli::add_reader_options(app, options.reader, "--format");
  app.add_flag("--stats", options.stats,
               "also min, max, mean, std (population) over the finite values, and the NaN and Inf counts; read in "
               "bounded chunks, several at once (--jobs); complex and 128-bit tensors get none");
  ckpt::cli::add_parallel_options(app, options.parallel);
  app.add_flag("--json", options.json,
               "print one JSON document (spec/schema/ckpt-inspect.schema.json); with --stats each tensor has "
               "\"stats\": {min, max, mean, std, nan, inf, finite} or null");
  app.add_flag("-q,--quiet", options.quiet, "print the tensor lines only, without the summary line");
  app.footer(ckpt::cli::formats_help() + "\nExit status: 0 listed, 1 invalid input, 2 usage or I/O error.");
  if (auto stop = tool.parse(argc, argv)) return *stop;
  return run(tool, options);
}
