// ckpt-convert: converts a checkpoint between any two formats of the
// registry (a OneFlow snapshot, a directory of .npy files, an .npz archive, ...).
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "ckpt/convert/convert.hpp"
#include "ckpt/format/views.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: ckpt-convert SRC DST [--from FMT] [--to FMT] [--force] [--shapes FILE]
                    [--compress] [--v2-as-bfloat16] [--nest PREFIX]... [--dtype T]
                    [--include GLOB]... [--exclude GLOB]... [--rename OLD=NEW]...

Converts a checkpoint between formats, one variable at a time, crash-safe
(DST appears complete or not at all).

Formats:
  oneflow         a OneFlow snapshot directory (<variable>/out, <variable>/meta, snapshot_done)
  oneflow-pickle  a OneFlow 0.6+ pickle directory (pickled_data + tensor_N/)
  npy             a directory of <variable>.npy files
  npz             a NumPy .npz archive of <variable>.npy members
  safetensors     a safetensors file
  torch           a torch.save zip file (.pt, .pth, .bin; torch >= 1.6)
Nested objects of the pickle formats ({"model": ..., "optimizer": ..., "epoch": 3})
become dotted names in flat formats ("model.l1.weight"); between pickle
formats the whole object, non-tensor leaves included, is kept.

Options:
  --from FMT         source format; detected from the content when absent
  --to FMT           destination format; else by extension (.npz, .safetensors,
                     .pt/.pth/.bin), else what an existing DST holds, else oneflow
  --force            replace an existing DST (atomically)
  --shapes FILE      dtype and shape of variables without meta (OneFlow <= 0.3.1):
                     {"name": {"dtype": "kFloat", "shape": [2, 3]}}
  --compress         deflate .npz members (default: stored, as np.savez)
  --v2-as-bfloat16   read '<V2' arrays (ml_dtypes.bfloat16 saved by numpy) as kBFloat16;
                     kBFloat16 is always written as '<V2'
  --include GLOB     convert only variables whose name matches GLOB (fnmatch:
                     *, ?, [...]); repeatable, a name matching any is kept;
                     a GLOB matching nothing is an error
  --exclude GLOB     leave out variables whose name matches GLOB; repeatable
  --dtype T          cast floating variables (f16, bf16, f32, f64) to T, one of
                     bf16, f16, f32, f64: round to nearest even, NaN stays NaN
                     (quiet), Inf stays Inf, finite values beyond T's range
                     become Inf; other types are kept (spec/casting.md)
  --rename OLD=NEW   a name starting with OLD starts with NEW instead; repeatable,
                     the first matching rule applies; OLD empty prefixes all
  --nest PREFIX      pickle destinations: nest dotted names under PREFIX (repeatable;
                     '*' matches one segment), e.g. --nest model --nest 'optimizer.state.*'
                     (spec/pickle.md, "Nesting")
  --help             this text

Variables are filtered, cast, then renamed: GLOBs see the source's names.

Notes: int8 arrays become kInt8 (never kChar). Big-endian arrays are stored
little-endian, Fortran-order arrays in C order (in memory, up to 1 GiB each).

Exit status: 0 converted, 1 invalid input, 2 usage or I/O error.
)";

// The text above, and every format this build has (others register beside npy/npz).
std::string usage() {
  return fmt::format("{}\nFormats of this build: {}\n", kUsage, fmt::join(ckpt::checkpoint_formats(), ", "));
}

int usage_error(std::string_view message) {
  fmt::print(stderr, "ckpt-convert: {}\n\n{}", message, usage());
  return 2;
}

bool is_format(std::string_view name) {
  for (std::string_view known : ckpt::checkpoint_formats()) {
    if (known == name) return true;
  }
  return false;
}

struct ViewOptions {
  std::vector<std::string> include, exclude;
  std::optional<ckpt::DType> cast_to;
  std::vector<ckpt::RenameRule> renames;
};

std::optional<ckpt::DType> float_dtype_from_flag(std::string_view name) {
  if (name == "bf16") return ckpt::DType::kBFloat16;
  if (name == "f16") return ckpt::DType::kFloat16;
  if (name == "f32") return ckpt::DType::kFloat;
  if (name == "f64") return ckpt::DType::kDouble;
  return std::nullopt;
}

// --include/--exclude, then --dtype, then --rename: patterns see the source's names.
ckpt::Result<std::unique_ptr<ckpt::CheckpointReader>> apply_views(std::unique_ptr<ckpt::CheckpointReader> reader,
                                                                  ViewOptions views) {
  if (!views.include.empty() || !views.exclude.empty()) {
    CKPT_ASSIGN_OR_RETURN(reader, ckpt::filter_view(std::move(reader), std::move(views.include),
                                                    std::move(views.exclude)));
  }
  if (views.cast_to) {
    CKPT_ASSIGN_OR_RETURN(reader, ckpt::cast_view(std::move(reader), *views.cast_to));
  }
  if (!views.renames.empty()) {
    CKPT_ASSIGN_OR_RETURN(reader, ckpt::rename_view(std::move(reader), std::move(views.renames)));
  }
  return reader;
}

// 1xx errors are usage and I/O; every other family is a problem of the input.
int exit_status(const ckpt::Error& error) { return static_cast<unsigned>(error.code()) / 100 == 1 ? 2 : 1; }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  std::vector<std::string_view> paths;
  std::optional<std::string> to;
  std::optional<std::string> shapes_file;
  ckpt::OpenOptions open_options;
  ckpt::WriteOptions write_options;
  ViewOptions views;
  std::vector<std::string> nesting;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", usage());
      return 0;
    } else if (arg == "--from" || arg == "--to") {
      auto name = value();
      if (!name) return usage_error(fmt::format("{} needs a format", arg));
      if (!is_format(*name)) {
        return usage_error(
            fmt::format("unknown format '{}' ({})", *name, fmt::join(ckpt::checkpoint_formats(), ", ")));
      }
      (arg == "--from" ? open_options.format : to) = std::string(*name);
    } else if (arg == "--shapes") {
      auto file = value();
      if (!file) return usage_error("--shapes needs a file");
      shapes_file = std::string(*file);
    } else if (arg == "--force") {
      write_options.overwrite = true;
    } else if (arg == "--compress") {
      write_options.compress = true;
    } else if (arg == "--v2-as-bfloat16") {
      open_options.npy.void2_as_bfloat16 = true;
    } else if (arg == "--include" || arg == "--exclude") {
      auto pattern = value();
      if (!pattern) return usage_error(fmt::format("{} needs a glob pattern", arg));
      (arg == "--include" ? views.include : views.exclude).emplace_back(*pattern);
    } else if (arg == "--dtype") {
      auto name = value();
      auto dtype = name ? float_dtype_from_flag(*name) : std::nullopt;
      if (!dtype) return usage_error(fmt::format("--dtype needs bf16, f16, f32 or f64, got '{}'", name.value_or("")));
      views.cast_to = dtype;
    } else if (arg == "--rename") {
      auto text = value();
      if (!text) return usage_error("--rename needs OLD=NEW");
      auto rule = ckpt::parse_rename_rule(*text);
      if (!rule.ok()) return usage_error(fmt::format("--rename: {}", rule.error().message()));
      views.renames.push_back(std::move(rule).value());
    } else if (arg == "--nest") {
      auto prefix = value();
      if (!prefix) return usage_error("--nest needs a prefix");
      nesting.emplace_back(*prefix);
    } else if (arg.starts_with("-")) {
      return usage_error(fmt::format("unknown option {}", arg));
    } else {
      paths.push_back(arg);
    }
  }
  if (paths.size() != 2) return usage_error("SRC and DST are required");
  const std::filesystem::path source_path(paths[0]), destination_path(paths[1]);
  const std::string target = ckpt::convert::choose_destination_format(destination_path, to);
  if (write_options.compress && target != "npz") {
    return usage_error(fmt::format("--compress applies to npz only, and the destination is {}", target));
  }

  auto fail = [](const ckpt::Error& error) {
    fmt::print(stderr, "ckpt-convert: {}\n", error.describe());
    return exit_status(error);
  };
  ckpt::ShapeTable shapes;
  if (shapes_file) {
    auto loaded = ckpt::convert::load_shapes(*shapes_file);
    if (!loaded.ok()) return fail(loaded.error());
    shapes = std::move(loaded).value();
    open_options.shapes = &shapes;
  }
  auto opened = ckpt::open_checkpoint(source_path, open_options);
  if (!opened.ok()) return fail(opened.error());
  auto source = apply_views(std::move(opened).value(), std::move(views));
  if (!source.ok()) return fail(source.error());
  write_options.sources = {source_path};  // --force never replaces the source or a directory around it
  auto destination = ckpt::create_checkpoint(destination_path, target, std::move(write_options));
  if (!destination.ok()) return fail(destination.error());
  if (!nesting.empty()) {
    if (auto nested = (*destination)->set_nesting(std::move(nesting)); !nested.ok()) return fail(nested.error());
  }

  ckpt::convert::ConvertOptions options;
  const bool show_progress = ::isatty(STDERR_FILENO) == 1;
  if (show_progress) {
    options.progress = [](const ckpt::convert::Progress& p) {
      fmt::print(stderr, "\r[{}/{}] {:.1f}/{:.1f} MiB {:<40.40}", p.variables_done, p.variables_total,
                 static_cast<double>(p.bytes_done) / (1 << 20), static_cast<double>(p.bytes_total) / (1 << 20),
                 p.variable);
    };
  }
  auto summary = ckpt::convert::convert(**source, **destination, options);
  if (show_progress) fmt::print(stderr, "\n");
  if (!summary.ok()) return fail(summary.error());
  fmt::print(stderr, "ckpt-convert: {} ({}) -> {} ({}): {} variables, {} bytes\n", source_path.string(),
             (*source)->format_name(), destination_path.string(), target, summary->variables, summary->bytes);
  return 0;
}
