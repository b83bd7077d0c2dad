// ckpt-diff: compares two checkpoints of any supported formats, tensor by
// tensor, within an absolute and relative tolerance.
#include <charconv>
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
#include "ckpt/format/values.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: ckpt-diff A B [--atol X] [--rtol Y] [--json]

Compares the checkpoints A and B (any supported formats, detected from the
content): tensors only in A (missing from B) or only in B (extra), shape or
dtype mismatches, and for each tensor in both the maximum absolute
difference |a - b| and relative difference |a - b| / |b|.

Two values are equal within tolerance when |a - b| <= atol + rtol * |b|
(numpy.isclose), or when both are NaN, or both the same infinity. The
defaults, atol = rtol = 0, ask for exact equality. Tensors of different
dtypes are a mismatch and their values are not compared; complex and
128-bit tensors are compared byte for byte.

Options:
  --atol X   absolute tolerance (default 0)
  --rtol Y   relative tolerance (default 0)
  --json     print one JSON object:
             {"equal", "missing": [names], "extra": [names],
              "mismatched": [{"name", "a": {"dtype", "shape"}, "b": {...}}],
              "tensors": [{"name", "equal", "max_abs", "max_rel", "differing"}]}
  --help     this text

Exit status: 0 equal within tolerance, 1 different, 2 usage or read error.
)";

struct Options {
  std::string a;
  std::string b;
  double atol = 0;
  double rtol = 0;
  bool json = false;
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

ckpt::Result<Comparison> compare(const ckpt::ByteSource& a, const ckpt::ByteSource& b, ckpt::DType dtype,
                                 const Options& options) {
  Comparison result;
  if (!ckpt::has_real_values(dtype)) {
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
  CKPT_ASSIGN_OR_RETURN(auto a_values, ckpt::ValueReader::open(a, dtype));
  CKPT_ASSIGN_OR_RETURN(auto b_values, ckpt::ValueReader::open(b, dtype));
  while (true) {
    // Same dtype and size on both sides, so the chunks line up.
    CKPT_ASSIGN_OR_RETURN(auto a_chunk, a_values.next());
    CKPT_ASSIGN_OR_RETURN(auto b_chunk, b_values.next());
    if (a_chunk.empty()) break;
    for (std::size_t i = 0; i < a_chunk.size(); ++i) compare_values(a_chunk[i], b_chunk[i], options, result);
  }
  return result;
}

nlohmann::json describe(const ckpt::TensorInfo& tensor) {
  return {{"dtype", ckpt::dtype_name(tensor.meta.dtype())}, {"shape", tensor.meta.shape()}};
}

nlohmann::json number_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr); }

int run(const Options& options) {
  auto a = ckpt::open_checkpoint(options.a);
  auto b = a.ok() ? ckpt::open_checkpoint(options.b) : std::move(a);
  if (!b.ok()) {
    fmt::print(stderr, "ckpt-diff: {}\n", b.error().describe());
    return 2;
  }
  nlohmann::json missing = nlohmann::json::array();
  nlohmann::json extra = nlohmann::json::array();
  nlohmann::json mismatched = nlohmann::json::array();
  nlohmann::json compared = nlohmann::json::array();
  std::vector<std::string> lines;
  for (const auto& tensor : (*a)->tensors()) {
    const ckpt::TensorInfo* other = (*b)->find(tensor.name);
    if (other == nullptr) {
      missing.push_back(tensor.name);
      lines.push_back(fmt::format("missing  {} (only in A)", tensor.name));
      continue;
    }
    if (!(tensor.meta == other->meta)) {
      mismatched.push_back({{"name", tensor.name}, {"a", describe(tensor)}, {"b", describe(*other)}});
      lines.push_back(fmt::format("mismatch {}: A {} {}, B {} {}", tensor.name, ckpt::dtype_name(tensor.meta.dtype()),
                                  ckpt::shape_to_string(tensor.meta.shape()), ckpt::dtype_name(other->meta.dtype()),
                                  ckpt::shape_to_string(other->meta.shape())));
      continue;
    }
    auto a_source = (*a)->open(tensor.name);
    auto b_source = a_source.ok() ? (*b)->open(tensor.name) : std::move(a_source);
    auto result = b_source.ok() ? compare(**a_source, **b_source, tensor.meta.dtype(), options)
                                : ckpt::Result<Comparison>(std::move(b_source).error());
    if (!result.ok()) {
      fmt::print(stderr, "ckpt-diff: {}\n", std::move(result).error().in_variable(tensor.name).describe());
      return 2;
    }
    bool same = result->differing == 0;
    compared.push_back({{"name", tensor.name}, {"equal", same}, {"max_abs", number_or_null(result->max_abs)},
                        {"max_rel", number_or_null(result->max_rel)}, {"differing", result->differing}});
    if (!same) {
      lines.push_back(fmt::format("differ   {}: {} elements outside tolerance, max abs {:.6g}, max rel {:.6g}",
                                  tensor.name, result->differing, result->max_abs, result->max_rel));
    }
  }
  for (const auto& tensor : (*b)->tensors()) {
    if ((*a)->find(tensor.name) == nullptr) {
      extra.push_back(tensor.name);
      lines.push_back(fmt::format("extra    {} (only in B)", tensor.name));
    }
  }
  bool equal = lines.empty();
  if (options.json) {
    nlohmann::json out = {{"equal", equal},           {"missing", std::move(missing)},
                          {"extra", std::move(extra)}, {"mismatched", std::move(mismatched)},
                          {"tensors", std::move(compared)}};
    fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    for (const auto& line : lines) fmt::print("{}\n", line);
    fmt::print("{}: {} tensors in A ({}), {} in B ({}), atol={} rtol={}\n", equal ? "equal" : "DIFFERENT",
               (*a)->tensors().size(), (*a)->format_name(), (*b)->tensors().size(), (*b)->format_name(),
               options.atol, options.rtol);
  }
  return equal ? 0 : 1;
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
  std::vector<std::string_view> args(argv + 1, argv + argc);
  std::vector<std::string_view> paths;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (arg == "--json") {
      options.json = true;
    } else if ((arg == "--atol" || arg == "--rtol") && i + 1 < args.size()) {
      auto value = parse_tolerance(args[++i]);
      if (!value) {
        fmt::print(stderr, "ckpt-diff: {} needs a non-negative number, got '{}'\n", arg, args[i]);
        return 2;
      }
      (arg == "--atol" ? options.atol : options.rtol) = *value;
    } else if (arg.starts_with("-")) {
      fmt::print(stderr, "ckpt-diff: unknown option {}\n\n{}", arg, kUsage);
      return 2;
    } else {
      paths.push_back(arg);
    }
  }
  if (paths.size() != 2) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  options.a = paths[0];
  options.b = paths[1];
  return run(options);
}
