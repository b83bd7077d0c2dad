// ckpt-convert: converts a checkpoint between any two formats of the
// registry (a OneFlow snapshot, a directory of .npy files, an .npz archive, ...).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "cli.hpp"
#include "ckpt/convert/convert.hpp"
#include "ckpt/format/registry.hpp"
#include "ckpt/format/safetensors_sharded.hpp"
#include "ckpt/format/views.hpp"

namespace {

using ckpt::printable;

constexpr std::string_view kDescription = R"(Converts a checkpoint between formats, crash-safe: DST appears complete or
not at all, and SIGINT, SIGTERM or SIGHUP remove the partial output before the
tool exits. Into safetensors (single or sharded), up to --jobs variables are
read, cast and written at once, within --memory-budget; the output is the
same bytes for every --jobs.

Nested objects of the pickle formats ({"model": ..., "optimizer": ..., "epoch": 3})
become dotted names in flat formats ("model.l1.weight"); between pickle formats
the whole object, non-tensor leaves included, is kept. Variables are filtered,
cast, then renamed: GLOBs see the source's names. int8 arrays become kInt8
(never kChar). Big-endian arrays are stored little-endian, Fortran-order arrays
in C order (in memory, up to 1 GiB each).)";

struct ViewOptions {
  std::vector<std::string> include, exclude;
  std::optional<ckpt::DType> cast_to;
  std::vector<ckpt::RenameRule> renames;
};

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

bool is_float(ckpt::DType dtype) {
  return dtype == ckpt::DType::kBFloat16 || dtype == ckpt::DType::kFloat16 || dtype == ckpt::DType::kFloat ||
         dtype == ckpt::DType::kDouble;
}

struct Options {
  std::string source, destination;
  ckpt::cli::ReaderOptions reader;
  std::optional<std::string> to;
  bool force = false;
  bool compress = false;
  std::optional<std::string> max_shard_size;
  std::string dtype;
  std::vector<std::string> renames;
  std::vector<std::string> nesting;
  ViewOptions views;
  ckpt::cli::ParallelFlags parallel;
  bool json = false;
  bool quiet = false;
};

int run(const ckpt::cli::Tool& tool, Options& options) {
  nlohmann::json out = ckpt::cli::envelope("ckpt-convert", options.source);
  out["destination"] = {{"path", options.destination}, {"format", nullptr}, {"layout", nullptr}};
  auto failed = [&](const ckpt::Error& error) { return tool.fail(error, options.json ? &out : nullptr); };
  auto usage = [&](std::string message) {
    return failed(ckpt::Error(ckpt::ErrorCode::kInvalidArgument, std::move(message)));
  };
  if (!options.dtype.empty()) {
    auto dtype = ckpt::parse_dtype(options.dtype);
    if (!dtype || !is_float(*dtype)) {
      return usage(fmt::format("--dtype needs a floating type (bf16, f16, f32, f64 in any spelling), got '{}'",
                               printable(options.dtype)));
    }
    options.views.cast_to = dtype;
  }
  for (const std::string& text : options.renames) {
    auto rule = ckpt::parse_rename_rule(text);
    if (!rule.ok()) return usage(fmt::format("--rename: {}", rule.error().message()));
    options.views.renames.push_back(std::move(rule).value());
  }
  auto target = ckpt::format_for_destination(options.destination, options.to);
  if (!target.ok()) return failed(target.error());
  out["destination"]["format"] = *target;
  if (options.compress && *target != "npz") {
    return usage(fmt::format("--compress applies to npz only, and the destination is {}", *target));
  }
  ckpt::WriteOptions write_options;
  if (options.max_shard_size) {
    if (*target != "safetensors-sharded") {
      return usage(fmt::format("--max-shard-size applies to safetensors-sharded only, and the destination is {}", *target));
    }
    auto size = ckpt::parse_byte_size(*options.max_shard_size);
    if (!size.ok()) return usage(fmt::format("--max-shard-size: {}", size.error().message()));
    write_options.max_shard_bytes = *size;
  }
  auto opened = options.reader.open(options.source);
  if (!opened.ok()) return failed(opened.error());
  ckpt::cli::describe_checkpoint(out, **opened);
  auto source = apply_views(std::move(opened).value(), std::move(options.views));
  if (!source.ok()) return failed(source.error());
  write_options.overwrite = options.force;
  write_options.sources = {options.source};  // never replaced, never written into
  write_options.compress = options.compress;
  auto destination = ckpt::create_checkpoint(options.destination, *target, std::move(write_options));
  if (!destination.ok()) return failed(destination.error());
  if (!options.nesting.empty()) {
    if (auto nested = (*destination)->set_nesting(std::move(options.nesting)); !nested.ok()) {
      return failed(nested.error());
    }
  }

  ckpt::convert::ConvertOptions convert_options;
  convert_options.parallel = options.parallel.options();
  const bool show_progress = !options.quiet && ::isatty(STDERR_FILENO) == 1;
  if (show_progress) {
    convert_options.progress = [](const ckpt::convert::Progress& p) {
      fmt::print(stderr, "\r[{}/{}] {:.1f}/{:.1f} MiB {:<40.40}", p.variables_done, p.variables_total,
                 static_cast<double>(p.bytes_done) / (1 << 20), static_cast<double>(p.bytes_total) / (1 << 20),
                 printable(p.variable));
    };
  }
  auto summary = ckpt::convert::convert(**source, **destination, convert_options);
  if (show_progress) fmt::print(stderr, "\n");
  if (!summary.ok()) return failed(summary.error());
  if (options.json) {
    for (const auto& tensor : (*source)->tensors()) {
      out["tensors"].push_back(ckpt::cli::tensor_json(tensor.name, &tensor.meta, tensor.meta.byte_size(), *target));
    }
    out["variables"] = summary->variables;
    out["bytes"] = summary->bytes;
    ckpt::cli::print_json(out);
  } else if (!options.quiet) {
    fmt::print(stderr, "{}: {} ({}) -> {} ({}): {} variables, {} bytes\n", tool.name(), printable(options.source),
               (*source)->format_name(), printable(options.destination), *target, summary->variables, summary->bytes);
  }
  return ckpt::cli::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  ckpt::cli::Tool tool("ckpt-convert", std::string(kDescription));
  auto& app = tool.app();
  app.add_option("SRC", options.source, "the checkpoint to read")->required();
  app.add_option("DST", options.destination, "where to write; must not exist unless --force")->required();
  ckpt::cli::add_reader_options(app, options.reader, "--from");
  ckpt::cli::add_format_option(app, "--to", options.to,
                               "destination format; else by DST's extension (the registry's, listed below), else "
                               "what an existing DST holds, else (no extension) oneflow; another extension is "
                               "refused");
  app.add_flag("--force", options.force, "replace an existing DST (atomically)");
  app.add_flag("--compress", options.compress, "deflate .npz members (default: stored, as np.savez)");
  app.add_option("--max-shard-size", options.max_shard_size,
                 "safetensors-sharded: the most bytes per shard, as huggingface_hub reads it (5GB, 500MB; KB..TB are "
                 "powers of 1000, KiB..TiB of 1024); default 5GB; tensors are never split, a larger one gets a shard "
                 "of its own")
      ->type_name("SIZE");
  app.add_option("--include", options.views.include,
                 "convert only variables whose name matches GLOB (fnmatch: *, ?, [...]); repeatable, a name "
                 "matching any is kept; a GLOB matching nothing is an error")
      ->type_name("GLOB")
      ->expected(1)
      ->take_all();
  app.add_option("--exclude", options.views.exclude, "leave out variables whose name matches GLOB; repeatable")
      ->type_name("GLOB")
      ->expected(1)
      ->take_all();
  app.add_option("--dtype", options.dtype,
                 "cast floating variables (bf16, f16, f32, f64) to T, a floating type in any spelling (bf16, "
                 "bfloat16, torch.float16, F32, <f8 ...): round to nearest even, NaN stays NaN (quiet), Inf stays "
                 "Inf, finite values beyond T's range become Inf; other types are kept (spec/casting.md)")
      ->type_name("T");
  app.add_option("--rename", options.renames,
                 "a name starting with OLD starts with NEW instead; repeatable, the first matching rule applies; "
                 "OLD empty prefixes all")
      ->type_name("OLD=NEW")
      ->expected(1)
      ->take_all();
  app.add_option("--nest", options.nesting,
                 "pickle destinations: nest dotted names under PREFIX (repeatable; '*' matches one segment), e.g. "
                 "--nest model --nest 'optimizer.state.*' (spec/pickle.md, \"Nesting\")")
      ->type_name("PREFIX")
      ->expected(1)
      ->take_all();
  ckpt::cli::add_parallel_options(app, options.parallel);
  app.add_flag("--json", options.json,
               "print one JSON document (spec/schema/ckpt-convert.schema.json): the envelope for SRC, "
               "\"destination\", the tensors written, \"variables\" and \"bytes\"");
  app.add_flag("-q,--quiet", options.quiet, "no progress and no summary line");
  app.footer(ckpt::cli::formats_help() + "\nExit status: 0 converted, 1 invalid input, 2 usage or I/O error.");
  if (auto stop = tool.parse(argc, argv)) return *stop;
  return run(tool, options);
}
