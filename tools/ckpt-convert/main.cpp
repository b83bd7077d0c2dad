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

namespace {

constexpr std::string_view kUsage = R"(usage: ckpt-convert SRC DST [--from FMT] [--to FMT] [--force] [--shapes FILE]
                    [--compress] [--v2-as-bfloat16] [--nest PREFIX]...

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
  --nest PREFIX      pickle destinations: nest dotted names under PREFIX (repeatable;
                     '*' matches one segment), e.g. --nest model --nest 'optimizer.state.*'
                     (spec/pickle.md, "Nesting")
  --help             this text

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
  auto source = ckpt::open_checkpoint(source_path, open_options);
  if (!source.ok()) return fail(source.error());
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
