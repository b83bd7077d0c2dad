// ckpt-diff: compares two checkpoints of any supported formats, tensor by
// tensor, within an absolute and relative tolerance.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/parallel.hpp"
#include "ckpt/format/values.hpp"
#include "ckpt/format/views.hpp"

namespace {

using ckpt::printable;

constexpr std::string_view kDescription = R"(Compares the checkpoints A and B (any registered formats, detected from the
content): tensors only in A (missing from B) or only in B (extra), shape or
dtype mismatches, and for each tensor in both the maximum absolute difference
|a - b| and relative difference |a - b| / |b|.

Two values are equal within tolerance when |a - b| <= atol + rtol * |b|
(numpy.isclose), or when both are NaN, or both the same infinity. The defaults,
atol = rtol = 0, ask for exact equality. Tensors of different dtypes are a
dtype mismatch and their values are not compared, unless --cast: then both
sides are read as float64 and compared by value (max abs/rel error);
complex and 128-bit tensors are compared byte for byte.

--include/--exclude/--rename present A's tensors as ckpt-convert would with
the same options (filter, then rename): `ckpt-diff --rename a.=b. --cast A B`
checks that B's tensors are what `ckpt-convert --rename a.=b. --dtype bf16 A B`
wrote. A's non-tensor values are compared whatever the views.

The pickle formats' non-tensor values (an epoch, a config, an argparse.Namespace
kept as a stub) are compared too, by path (spec/pickle.md, "Non-tensor data"):
a value only in A or only in B, or equal in neither, makes the checkpoints
different, so a config pickle and an empty npz are not equal.)";

// repr() shown for a differing value, in bytes.
constexpr std::size_t kShownValueBytes = 80;

struct Options {
  std::string a;
  std::string b;
  ckpt::cli::ReaderOptions reader;
  ckpt::cli::ViewOptions views;  // on A
  bool cast = false;
  double atol = 0;
  double rtol = 0;
  ckpt::cli::ParallelFlags parallel;
  bool json = false;
  bool quiet = false;
};

struct Comparison {
  double max_abs = 0;
  double max_rel = 0;
  std::uint64_t differing = 0;  // elements (or bytes, for byte comparison) outside tolerance
};

void compare_values(double a, double b, const Options& options, Comparison& result) {
  if (std::isnan(a) || std::isnan(b) || std::isinf(a) || std::isinf(b)) {
    bool same = (std::isnan(a) && std::isnan(b)) || a == b;
    if (!same) {
      ++result.differing;
      result.max_abs = result.max_rel = std::numeric_limits<double>::infinity();
    }
    return;
  }
  double difference = std::fabs(a - b);
  double relative = b != 0 ? difference / std::fabs(b) : difference > 0 ? std::numeric_limits<double>::infinity() : 0;
  result.max_abs = std::max(result.max_abs, difference);
  result.max_rel = std::max(result.max_rel, relative);
  if (difference > options.atol + options.rtol * std::fabs(b)) ++result.differing;
}

// `a_dtype` and `b_dtype` differ only with --cast, and then both have real values.
ckpt::Result<Comparison> compare(const ckpt::ByteSource& a, const ckpt::ByteSource& b, ckpt::DType a_dtype,
                                 ckpt::DType b_dtype, const Options& options) {
  Comparison result;
  if (!ckpt::has_real_values(a_dtype)) {
    // One-byte "elements": equal or not, no magnitude.
    CKPT_ASSIGN_OR_RETURN(auto a_bytes, ckpt::ValueReader::open(a, ckpt::DType::kUInt8));
    CKPT_ASSIGN_OR_RETURN(auto b_bytes, ckpt::ValueReader::open(b, ckpt::DType::kUInt8));
    while (true) {
      CKPT_ASSIGN_OR_RETURN(auto a_chunk, a_bytes.next());
      CKPT_ASSIGN_OR_RETURN(auto b_chunk, b_bytes.next());
      if (a_chunk.empty()) break;
      for (std::size_t i = 0; i < a_chunk.size(); ++i) result.differing += a_chunk[i] != b_chunk[i] ? 1 : 0;
    }
    if (result.differing > 0) result.max_abs = result.max_rel = std::numeric_limits<double>::quiet_NaN();
    return result;
  }
  CKPT_ASSIGN_OR_RETURN(auto a_values, ckpt::ValueReader::open(a, a_dtype));
  CKPT_ASSIGN_OR_RETURN(auto b_values, ckpt::ValueReader::open(b, b_dtype));
  while (true) {
    // The same element count on both sides, read in chunks of the same count, so the chunks line up.
    CKPT_ASSIGN_OR_RETURN(auto a_chunk, a_values.next());
    CKPT_ASSIGN_OR_RETURN(auto b_chunk, b_values.next());
    if (a_chunk.empty()) break;
    for (std::size_t i = 0; i < a_chunk.size(); ++i) compare_values(a_chunk[i], b_chunk[i], options, result);
  }
  return result;
}

// The larger, NaN (a byte comparison that found differences) winning.
double larger(double a, double b) { return std::isnan(a) || std::isnan(b) ? std::numeric_limits<double>::quiet_NaN() : std::max(a, b); }

void merge(Comparison& into, const Comparison& part) {
  into.max_abs = larger(into.max_abs, part.max_abs);
  into.max_rel = larger(into.max_rel, part.max_rel);
  into.differing += part.differing;
}

// Whether A's and B's tensors of one name are compared element by element:
// the same shape, and the same dtype or (--cast) both with real values.
bool comparable(const ckpt::TensorInfo& a, const ckpt::TensorInfo& b, const Options& options) {
  if (a.meta.shape() != b.meta.shape()) return false;
  return a.meta.dtype() == b.meta.dtype() ||
         (options.cast && ckpt::has_real_values(a.meta.dtype()) && ckpt::has_real_values(b.meta.dtype()));
}

// The comparisons of the tensors A and B both hold and that are comparable()
// (by index into A's tensors), their element ranges compared in
// parallel and merged in order. On a failure, the tensor it names is
// `failed_tensor` and only the tensors before it are compared.
struct Comparisons {
  std::vector<std::optional<Comparison>> by_tensor;
  std::optional<ckpt::Error> failure;
  std::size_t failed_tensor = 0;
};

Comparisons compare_all(const ckpt::CheckpointReader& a, const ckpt::CheckpointReader& b, const Options& options) {
  const auto& tensors = a.tensors();
  Comparisons result;
  result.by_tensor.resize(tensors.size());
  std::vector<ckpt::cli::ElementRange> ranges;
  std::vector<const ckpt::TensorInfo*> others(tensors.size(), nullptr);
  for (std::size_t i = 0; i < tensors.size() && !result.failure; ++i) {
    const ckpt::TensorInfo* other = b.find(tensors[i].name);
    if (other == nullptr || !comparable(tensors[i], *other, options)) continue;
    others[i] = other;
    bool split = false;
    if (tensors[i].meta.element_count() > ckpt::cli::kRangeElements) {
      auto a_window = ckpt::cli::is_file_window(a, tensors[i]);
      auto b_window = a_window.ok() ? ckpt::cli::is_file_window(b, *other) : a_window;
      if (!b_window.ok()) {
        result.failure = std::move(b_window).error();
        result.failed_tensor = i;
        break;
      }
      split = *a_window && *b_window;
    }
    ckpt::cli::append_ranges(ranges, i, tensors[i].meta.element_count(), split);
  }
  std::vector<Comparison> range_results(ranges.size());
  std::vector<char> range_done(ranges.size(), 0);  // not vector<bool>: threads set neighbours
  ckpt::Status status = ckpt::run_tasks(
      ranges.size(), options.parallel.options(), [](std::size_t) { return 2 * ckpt::cli::kRangeBufferBytes; },
      [&](std::size_t index) -> ckpt::Status {
        const auto& range = ranges[index];
        const auto& tensor = tensors[range.tensor];
        CKPT_ASSIGN_OR_RETURN(auto a_source, ckpt::cli::open_range(a, tensor, range));
        const ckpt::TensorInfo& other = *others[range.tensor];
        CKPT_ASSIGN_OR_RETURN(auto b_source, ckpt::cli::open_range(b, other, range));
        CKPT_ASSIGN_OR_RETURN(range_results[index],
                              compare(*a_source, *b_source, tensor.meta.dtype(), other.meta.dtype(), options));
        range_done[index] = 1;
        return {};
      });
  for (std::size_t index = 0; index < ranges.size(); ++index) {
    const std::size_t tensor = ranges[index].tensor;
    if (range_done[index] == 0) {
      // The lowest range not done is the one that failed (tasks start in order).
      if (!result.failure || tensor < result.failed_tensor) {
        result.failure = std::move(status).error();
        result.failed_tensor = tensor;
      }
      result.by_tensor[tensor].reset();
      break;
    }
    auto& merged = result.by_tensor[tensor];
    if (!merged) merged.emplace();
    merge(*merged, range_results[index]);
  }
  return result;
}

nlohmann::json describe(const ckpt::TensorInfo& tensor) {
  return {{"dtype", ckpt::dtype_name(tensor.meta.dtype())}, {"shape", tensor.meta.shape()}};
}

// The non-tensor values of A's and B's objects (none for a flat format),
// compared by path: a line for each difference, and {"missing", "extra",
// "differing"} for --json.
nlohmann::json compare_objects(const ckpt::CheckpointReader& a, const ckpt::CheckpointReader& b,
                               std::vector<std::string>& lines) {
  // A's views (--include/--exclude/--rename) select tensors; its values are
  // still compared, as they are when no view is given.
  auto leaves_of = [](const ckpt::CheckpointReader& reader) {
    std::map<std::string, ckpt::pickle::ObjectLeaf, std::less<>> leaves;
    const ckpt::pickle::Value* object = reader.object();
    if (object == nullptr) object = ckpt::hidden_object(reader);
    if (object != nullptr) {
      for (auto& leaf : ckpt::pickle::object_leaves(*object)) leaves.emplace(leaf.path, std::move(leaf));
    }
    return leaves;
  };
  auto shown = [](const ckpt::pickle::ObjectLeaf& leaf) {
    return ckpt::cli::printable_repr(ckpt::pickle::python_repr(*leaf.node, kShownValueBytes).value_or("..."));
  };
  auto path_text = [](const std::string& path) { return path.empty() ? std::string("(saved object)") : printable(path); };
  const auto a_leaves = leaves_of(a);
  const auto b_leaves = leaves_of(b);
  nlohmann::json result = {{"missing", nlohmann::json::array()}, {"extra", nlohmann::json::array()},
                           {"differing", nlohmann::json::array()}};
  for (const auto& [path, leaf] : a_leaves) {
    auto other = b_leaves.find(path);
    if (other == b_leaves.end()) {
      result["missing"].push_back(path);
      lines.push_back(fmt::format("missing  object {} {} (only in A)", path_text(path), printable(leaf.type)));
    } else if (!ckpt::pickle::same_value(*leaf.node, *other->second.node)) {
      result["differing"].push_back({{"path", path}, {"a", leaf.type}, {"b", other->second.type}});
      lines.push_back(fmt::format("differ   object {}: A {} {}, B {} {}", path_text(path), printable(leaf.type), shown(leaf),
                                  printable(other->second.type), shown(other->second)));
    }
  }
  for (const auto& [path, leaf] : b_leaves) {
    if (!a_leaves.contains(path)) {
      result["extra"].push_back(path);
      lines.push_back(fmt::format("extra    object {} {} (only in B)", path_text(path), printable(leaf.type)));
    }
  }
  return result;
}

nlohmann::json number_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr); }

int run(const ckpt::cli::Tool& tool, Options& options) {
  nlohmann::json out = ckpt::cli::envelope("ckpt-diff", options.a);
  out["b"] = {{"path", options.b}, {"format", nullptr}, {"layout", nullptr}};
  auto failed = [&](const ckpt::Error& error) { return tool.fail(error, options.json ? &out : nullptr); };
  auto opened = options.reader.open(options.a);
  if (!opened.ok()) return failed(opened.error());
  ckpt::cli::describe_checkpoint(out, **opened);
  auto a = ckpt::cli::apply_views(std::move(opened).value(), std::move(options.views));
  if (!a.ok()) return failed(a.error());
  auto b = options.reader.open(options.b);
  if (!b.ok()) return failed(b.error());
  ckpt::cli::describe_checkpoint(out["b"], **b);
  nlohmann::json missing = nlohmann::json::array();
  nlohmann::json extra = nlohmann::json::array();
  nlohmann::json mismatched = nlohmann::json::array();
  std::vector<std::string> lines;
  Comparisons comparisons = compare_all(**a, **b, options);
  for (std::size_t i = 0; i < (*a)->tensors().size(); ++i) {
    const auto& tensor = (*a)->tensors()[i];
    const ckpt::TensorInfo* other = (*b)->find(tensor.name);
    if (other == nullptr) {
      missing.push_back(tensor.name);
      lines.push_back(fmt::format("missing  {} (only in A)", printable(tensor.name)));
      continue;
    }
    const bool same_shape = tensor.meta.shape() == other->meta.shape();
    const bool same_dtype = tensor.meta.dtype() == other->meta.dtype();
    if (!comparable(tensor, *other, options)) {
      const char* what = !same_shape ? "shape" : "dtype";
      mismatched.push_back({{"name", tensor.name}, {"a", describe(tensor)}, {"b", describe(*other)}});
      lines.push_back(fmt::format("mismatch {}: {} differs, A {} {}, B {} {}{}", printable(tensor.name), what,
                                  ckpt::dtype_name(tensor.meta.dtype()), ckpt::shape_to_string(tensor.meta.shape()),
                                  ckpt::dtype_name(other->meta.dtype()), ckpt::shape_to_string(other->meta.shape()),
                                  same_shape && !options.cast ? " (--cast compares the values)" : ""));
      continue;
    }
    if (comparisons.failure && comparisons.failed_tensor == i) {
      return failed(std::move(comparisons.failure->in_variable(tensor.name)));
    }
    const auto& result = comparisons.by_tensor[i];
    bool same = result->differing == 0;
    nlohmann::json entry = {{"name", tensor.name}, {"equal", same}, {"max_abs", number_or_null(result->max_abs)},
                            {"max_rel", number_or_null(result->max_rel)}, {"differing", result->differing}};
    if (!same_dtype) entry["cast"] = {{"a", ckpt::dtype_name(tensor.meta.dtype())}, {"b", ckpt::dtype_name(other->meta.dtype())}};
    out["tensors"].push_back(std::move(entry));
    if (!same) {
      lines.push_back(fmt::format("differ   {}: {} elements outside tolerance, max abs {:.6g}, max rel {:.6g}",
                                  printable(tensor.name), result->differing, result->max_abs, result->max_rel));
    }
  }
  for (const auto& tensor : (*b)->tensors()) {
    if ((*a)->find(tensor.name) == nullptr) {
      extra.push_back(tensor.name);
      lines.push_back(fmt::format("extra    {} (only in B)", printable(tensor.name)));
    }
  }
  nlohmann::json objects = compare_objects(**a, **b, lines);
  bool equal = lines.empty();
  if (options.json) {
    out["objects"] = std::move(objects);
    out["equal"] = equal;
    out["missing"] = std::move(missing);
    out["extra"] = std::move(extra);
    out["mismatched"] = std::move(mismatched);
    ckpt::cli::print_json(out);
  } else if (!options.quiet) {
    for (const auto& line : lines) fmt::print("{}\n", line);
    fmt::print("{}: {} tensors in A ({}), {} in B ({}), atol={} rtol={}\n", equal ? "equal" : "DIFFERENT",
               (*a)->tensors().size(), (*a)->format_name(), (*b)->tensors().size(), (*b)->format_name(),
               options.atol, options.rtol);
  }
  return equal ? ckpt::cli::kExitOk : ckpt::cli::kExitInvalid;
}

std::optional<double> parse_tolerance(std::string_view text) {
  double value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !(value >= 0) || std::isinf(value)) return std::nullopt;
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  ckpt::cli::Tool tool("ckpt-diff", std::string(kDescription));
  auto& app = tool.app();
  app.add_option("A", options.a, "the first checkpoint")->required();
  app.add_option("B", options.b, "the second checkpoint, the reference of --rtol")->required();
  auto tolerance = [](const std::string& text) -> std::string {
    return parse_tolerance(text) ? "" : "needs a non-negative finite number, got '" + text + "'";
  };
  app.add_option("--atol", options.atol, "absolute tolerance (default 0)")->check(tolerance)->type_name("X");
  app.add_option("--rtol", options.rtol, "relative tolerance (default 0)")->check(tolerance)->type_name("Y");
  ckpt::cli::add_reader_options(app, options.reader, "--format");
  ckpt::cli::add_view_options(app, options.views);
  app.add_flag("--cast", options.cast,
               "compare tensors of different real dtypes by value (both read as float64), reporting the max abs/rel "
               "error; without it a dtype difference is a mismatch");
  ckpt::cli::add_parallel_options(app, options.parallel);
  app.add_flag("--json", options.json,
               "print one JSON document (spec/schema/ckpt-diff.schema.json): the envelope for A, \"b\" for B, "
               "\"equal\", \"missing\", \"extra\", \"mismatched\" and per-tensor results in \"tensors\"");
  app.add_flag("-q,--quiet", options.quiet, "print nothing; the exit status says equal or not");
  app.footer(ckpt::cli::formats_help() +
             "\nExit status: 0 equal within tolerance, 1 different or invalid input, 2 usage or I/O error.");
  if (auto stop = tool.parse(argc, argv)) return *stop;
  return run(tool, options);
}
