// ckpt-convert: converts a checkpoint between any two formats of the
// registry (a OneFlow snapshot, a directory of .npy files, an .npz archive, ...).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
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

struct Options {
  std::string source, destination;
  ckpt::cli::ReaderOptions reader;
  std::optional<std::string> to;
  bool force = false;
  bool strict = false;
  bool compress = false;
  std::optional<std::string> max_shard_size;
  std::string dtype;
  std::vector<std::string> nesting;
  std::vector<std::string> metadata;  // KEY=VALUE
  ckpt::cli::ViewOptions views;
  bool skip_unsupported = false;
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
    if (!dtype || !ckpt::is_floating(*dtype)) {
      return usage(fmt::format("--dtype needs a floating type (bf16, f16, f32, f64, f8_e4m3, f8_e5m2, f8_e8m0 in any "
                               "spelling), got '{}'",
                               printable(options.dtype)));
    }
    options.views.cast_to = dtype;
  }
  ckpt::TextMetadata metadata;
  for (const std::string& entry : options.metadata) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos || equals == 0) {
      return usage(fmt::format("--metadata: expected KEY=VALUE, got '{}'", printable(entry)));
    }
    metadata[entry.substr(0, equals)] = entry.substr(equals + 1);
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
  auto source = ckpt::cli::apply_views(std::move(opened).value(), std::move(options.views));
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
  convert_options.metadata = std::move(metadata);
  convert_options.skip_unsupported = options.skip_unsupported;
  convert_options.strict = options.strict;
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
  if (!summary->skipped.empty() && !options.json) {
    fmt::print(stderr, "{}: warning: left out {} tensor(s) of types ckpt cannot represent (--skip-unsupported): {}\n",
               tool.name(), summary->skipped.size(), printable(fmt::format("{}", fmt::join(summary->skipped, ", "))));
  }
  if (!summary->dropped.empty() && !options.quiet && !options.json) {
    std::vector<std::string> names;
    for (const auto& name : summary->dropped) names.push_back(name.empty() ? "(the saved object)" : printable(name));
    const std::string flat = ckpt::hidden_object(**source) != nullptr ? "--include/--exclude/--rename" : *target;
    fmt::print(stderr, "{}: warning: {} keeps tensors only; {} non-tensor values of the object were dropped: {} "
               "(--strict refuses)\n", tool.name(), flat, names.size(), fmt::join(names, ", "));
  }
  if (options.json) {
    out["dropped"] = summary->dropped;
    for (const auto& tensor : (*source)->tensors()) {
      out["tensors"].push_back(ckpt::cli::tensor_json(tensor.name, &tensor.meta, tensor.meta.byte_size(), *target));
    }
    if (!summary->skipped.empty()) out["skipped"] = summary->skipped;
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
  app.add_flag("--strict", options.strict,
               "refuse (E150) instead of dropping the non-tensor data of a pickle (epoch, args, config) when DST's "
               "format keeps tensors only; without it the values dropped are named in a warning");
  app.add_flag("--compress", options.compress, "deflate .npz members (default: stored, as np.savez)");
  app.add_option("--max-shard-size", options.max_shard_size,
                 "safetensors-sharded: the most bytes per shard, as huggingface_hub reads it (5GB, 500MB; KB..TB are "
                 "powers of 1000, KiB..TiB of 1024); default 5GB; tensors are never split, a larger one gets a shard "
                 "of its own")
      ->type_name("SIZE");
  ckpt::cli::add_view_options(app, options.views);
  app.add_option("--dtype", options.dtype,
                 "cast floating variables (bf16, f16, f32, f64, FP8) to T, a floating type in any spelling (bf16, "
                 "bfloat16, torch.float16, F32, <f8, F8_E4M3, float8_e5m2 ...): round to nearest even, NaN stays "
                 "NaN (quiet), Inf stays Inf, finite values beyond T's range become Inf (NaN for F8_E4M3, which has "
                 "no Inf); other types are kept (spec/casting.md)")
      ->type_name("T");
  app.add_option("--nest", options.nesting,
                 "pickle destinations: nest dotted names under PREFIX (repeatable; '*' matches one segment), e.g. "
                 "--nest model --nest 'optimizer.state.*' (spec/pickle.md, \"Nesting\")")
      ->type_name("PREFIX")
      ->expected(1)
      ->take_all();
  app.add_flag("--skip-unsupported", options.skip_unsupported,
               "leave out the tensors of types ckpt cannot represent (npz members of '|S3', '<f16', objects), with a "
               "warning naming them; without it such a source is refused (E540) rather than silently thinned");
  app.add_option("--metadata", options.metadata,
                 "safetensors destinations: set __metadata__ KEY to VALUE, over the source's metadata (kept from a "
                 "safetensors source) or the default {\"format\": \"pt\"}; repeatable")
      ->type_name("KEY=VALUE")
      ->expected(1)
      ->take_all();
  ckpt::cli::add_parallel_options(app, options.parallel);
  app.add_flag("--json", options.json,
               "print one JSON document (spec/schema/ckpt-convert.schema.json): the envelope for SRC, "
               "\"destination\", the tensors written, \"variables\", \"bytes\" and \"dropped\" (the paths of the "
               "non-tensor values a flat DST has no place for)");
  app.add_flag("-q,--quiet", options.quiet, "no progress and no summary line");
  app.footer(ckpt::cli::formats_help() + "\nExit status: 0 converted, 1 invalid input, 2 usage or I/O error.");
  if (auto stop = tool.parse(argc, argv)) return *stop;
  return run(tool, options);
}
