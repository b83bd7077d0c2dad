#include "cli.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "ckpt/convert/convert.hpp"
#include "ckpt/format/registry.hpp"
#include "ckpt/format/safetensors_sharded.hpp"

namespace ckpt::cli {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The long option of `app` nearest to the first unknown "--word" of argv.
std::optional<std::string> suggestion(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> known;
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) known.push_back("--" + name);
  }
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (!arg.starts_with("--")) continue;
    arg = arg.substr(0, arg.find('='));
    if (std::find(known.begin(), known.end(), arg) != known.end()) continue;
    const std::string* best = nullptr;
    std::size_t best_distance = 0;
    for (const std::string& name : known) {
      std::size_t distance = edit_distance(arg, name);
      if (best == nullptr || distance < best_distance) {
        best = &name;
        best_distance = distance;
      }
    }
    if (best != nullptr && best_distance <= std::max<std::size_t>(2, arg.size() / 4)) return *best;
    return std::nullopt;
  }
  return std::nullopt;
}

// A flag of the tools that would help with `error`; the library's messages
// name its options, never a command line.
std::optional<std::string_view> hint(const Error& error) {
  const std::string& message = error.message();
  if (error.code() == ErrorCode::kDestinationExists) return "pass --force to replace it";
  if (error.code() == ErrorCode::kNpyUnsupportedMember) {
    return "leave them out with --exclude NAME, or convert the rest with --skip-unsupported";
  }
  if (message.find("void2_as_bfloat16") != std::string::npos) return "pass --v2-as-bfloat16 to read '<V2' as bfloat16";
  if (message.find("shape table") != std::string::npos) {
    return "give dtypes and shapes with --shapes FILE.json ({\"name\": {\"dtype\": \"float32\", \"shape\": [2, 3]}})";
  }
  if (message.find("name the destination format") != std::string::npos) return "name the format with --to";
  if (error.code() == ErrorCode::kPickleForbiddenGlobal) {
    return "if the global is harmless data, pass --allow-global MODULE.NAME (or --stub-unknown) to keep it as an "
           "inert stub; nothing is run";
  }
  return std::nullopt;
}

}  // namespace

int exit_status(const Error& error) {
  const auto family = static_cast<unsigned>(error.code()) / 100;
  return family == 1 || error.code() == ErrorCode::kDeviceError ? kExitUsageOrIo : kExitInvalid;
}

std::string_view version() { return CKPT_VERSION; }

Tool::Tool(std::string name, std::string description) : name_(std::move(name)), app_(std::move(description), name_) {
  app_.set_version_flag("--version", fmt::format("{} (ckpt) {}", name_, version()));
  app_.get_formatter()->column_width(28);
}

std::optional<int> Tool::parse(int argc, char** argv) {
  try {
    app_.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app_.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app_.exit(e);
  } catch (const CLI::CallForVersion& e) {
    fmt::print("{}\n", e.what());
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    std::string message = printable(e.what());
    if (auto near = suggestion(app_, argc, argv)) message += fmt::format(" (did you mean {}?)", *near);
    return usage_error(message);
  }
  return std::nullopt;
}

int Tool::fail(const Error& error, nlohmann::json* document) const {
  if (document != nullptr) {
    (*document)["error"] = error_json(error);
    print_json(*document);
  }
  fmt::print(stderr, "{}: error: {}\n", name_, error.describe());
  if (auto text = hint(error)) fmt::print(stderr, "{}: hint: {}\n", name_, *text);
  return exit_status(error);
}

int Tool::usage_error(std::string_view message) const {
  fmt::print(stderr, "{}: error: {}\nRun '{} --help' for usage.\n", name_, message, name_);
  return kExitUsageOrIo;
}

CLI::Option* add_format_option(CLI::App& app, const std::string& flag, std::optional<std::string>& format,
                               const std::string& description) {
  std::vector<std::string> names;
  for (std::string_view name : checkpoint_formats()) names.emplace_back(name);
  return app.add_option(flag, format, description)->type_name("FMT")->check(CLI::IsMember(names));
}

std::string formats_help() {
  std::string text = "Formats:\n";
  std::size_t width = 0;
  for (const auto& format : registered_formats()) width = std::max(width, format.name.size());
  for (const auto& format : registered_formats()) {
    text += fmt::format("  {:<{}}  {}", format.name, width, format.summary);
    if (!format.extensions.empty()) text += fmt::format(" ({})", fmt::join(format.extensions, " "));
    text += "\n";
  }
  return text;
}

Result<OpenOptions> ReaderOptions::open_options() {
  OpenOptions options;
  options.format = format;
  options.npy.void2_as_bfloat16 = v2_as_bfloat16;
  options.pickle_policy.allowed_globals = allowed_globals;
  options.pickle_policy.stub_unknown = stub_unknown;
  if (!shapes_file.empty()) {
    if (!shapes_loaded_) {
      CKPT_ASSIGN_OR_RETURN(shapes, convert::load_shapes(shapes_file));
      shapes_loaded_ = true;
    }
    options.shapes = &shapes;
  }
  return options;
}

Result<std::unique_ptr<CheckpointReader>> ReaderOptions::open(const std::string& path) {
  CKPT_ASSIGN_OR_RETURN(OpenOptions options, open_options());
  return open_checkpoint(path, options);
}

void add_reader_options(CLI::App& app, ReaderOptions& options, const std::string& format_flag) {
  add_format_option(app, format_flag, options.format, "read as FMT instead of detecting the format from the content");
  app.add_option("--shapes", options.shapes_file,
                 "dtype and shape of variables without meta (OneFlow L0): a JSON file "
                 "{\"name\": {\"dtype\": \"float32\", \"shape\": [2, 3]}}; dtype in any common spelling")
      ->type_name("FILE");
  app.add_flag("--v2-as-bfloat16", options.v2_as_bfloat16,
               "read '<V2' npy/npz arrays (ml_dtypes.bfloat16 saved by numpy) as kBFloat16");
  app.add_option("--allow-global", options.allowed_globals,
                 "pickle formats: keep objects of this global (module.name, e.g. argparse.Namespace) as inert stubs "
                 "(nothing is imported or run); numpy.core.multiarray._reconstruct and .scalar read numpy arrays "
                 "and scalars; repeatable")
      ->type_name("MODULE.NAME")
      ->expected(1)
      ->take_all()
      ->check([](const std::string& value) {
        auto dot = value.rfind('.');
        return dot == std::string::npos || dot == 0 || dot + 1 == value.size()
                   ? std::string("expected MODULE.NAME, e.g. argparse.Namespace")
                   : std::string();
      });
  app.add_flag("--stub-unknown", options.stub_unknown,
               "pickle formats: keep objects of every global off the allow-list as inert stubs (nothing is imported "
               "or run)");
}

ParallelOptions ParallelFlags::options() const {
  return {.jobs = jobs, .byte_budget = parse_byte_size(memory_budget).value()};
}

void add_parallel_options(CLI::App& app, ParallelFlags& flags) {
  app.add_option("-j,--jobs", flags.jobs,
                 fmt::format("work on up to N tensors (or chunks) at once (default: the cores, here {}); the "
                             "output is the same for every N",
                             flags.jobs))
      ->check(CLI::Range(1u, 1024u))
      ->type_name("N");
  app.add_option("--memory-budget", flags.memory_budget,
                 "the most bytes of buffers the tensors in flight hold together (default 256MiB; 5GB, 500MB, 64MiB "
                 "...); a tensor needing more than the budget runs alone")
      ->check([](const std::string& text) -> std::string {
        auto size = parse_byte_size(text);
        return size.ok() ? "" : size.error().message();
      })
      ->type_name("SIZE");
}

void append_ranges(std::vector<ElementRange>& ranges, std::size_t tensor, std::uint64_t elements, bool split) {
  if (!split || elements <= kRangeElements) {
    ranges.push_back({tensor, 0, elements});
    return;
  }
  for (std::uint64_t first = 0; first < elements; first += kRangeElements) {
    ranges.push_back({tensor, first, std::min(kRangeElements, elements - first)});
  }
}

Result<bool> is_file_window(const CheckpointReader& reader, const TensorInfo& tensor) {
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source, reader.open(tensor.name));
  return source->file_descriptor() >= 0;
}

Result<std::unique_ptr<ByteSource>> open_range(const CheckpointReader& reader, const TensorInfo& tensor,
                                               const ElementRange& range) {
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source, reader.open(tensor.name));
  const std::uint64_t element_bytes = dtype_size(tensor.meta.dtype());
  if (range.first == 0 && range.count * element_bytes == source->size()) return source;
  CKPT_ASSIGN_OR_RETURN(SliceSource slice, SliceSource::make(std::shared_ptr<const ByteSource>(std::move(source)),
                                                             range.first * element_bytes, range.count * element_bytes));
  return std::unique_ptr<ByteSource>(std::make_unique<SliceSource>(std::move(slice)));
}

nlohmann::json envelope(std::string_view tool, std::string_view path) {
  return {{"schema", kJsonSchemaVersion}, {"tool", tool},  {"path", path},
          {"format", nullptr},           {"layout", nullptr}, {"tensors", nlohmann::json::array()},
          {"issues", nlohmann::json::array()}, {"error", nullptr}};
}

void describe_checkpoint(nlohmann::json& document, const CheckpointReader& reader) {
  document["format"] = reader.format_name();
  document["layout"] = reader.layout().empty() ? nlohmann::json(nullptr) : nlohmann::json(reader.layout());
}

nlohmann::json tensor_json(std::string_view name, const VariableMeta* meta, std::uint64_t bytes,
                           std::string_view format) {
  nlohmann::json entry = {{"name", name}, {"bytes", bytes}, {"dtype", nullptr}, {"format_dtype", nullptr},
                          {"shape", nullptr}};
  if (meta != nullptr) {
    entry["dtype"] = dtype_name(meta->dtype());
    entry["shape"] = meta->shape();
    if (auto own = dtype_name_in_format(format, meta->dtype()); !own.empty()) entry["format_dtype"] = own;
  }
  return entry;
}

nlohmann::json issue_json(const Issue& issue) {
  return {{"code", code_id(issue.code)},
          {"name", code_name(issue.code)},
          {"severity", issue.severity == Severity::kError ? "error" : "warning"},
          {"variable", issue.variable.empty() ? nlohmann::json(nullptr) : nlohmann::json(issue.variable)},
          {"message", issue.message}};
}

nlohmann::json error_json(const Error& error) {
  auto or_null = [](const std::string& text) { return text.empty() ? nlohmann::json(nullptr) : nlohmann::json(text); };
  return {{"code", code_id(error.code())},
          {"name", code_name(error.code())},
          {"message", error.message()},
          {"file", or_null(error.file())},
          {"variable", or_null(error.variable())}};
}

void print_json(const nlohmann::json& document) {
  fmt::print("{}\n", document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::string dtype_text(DType dtype, std::string_view format) {
  std::string_view own = dtype_name_in_format(format, dtype);
  return own.empty() || own == dtype_name(dtype) ? std::string(dtype_name(dtype))
                                                 : fmt::format("{} ({})", dtype_name(dtype), own);
}

std::string_view label_format(std::string_view format, bool numpy_array) { return numpy_array ? "npy" : format; }

void add_view_options(CLI::App& app, ViewOptions& views) {
  app.add_option("--include", views.include,
                 "only variables whose name matches GLOB (fnmatch: *, ?, [...]); repeatable, a name matching any is "
                 "kept; a GLOB matching nothing is an error")
      ->type_name("GLOB")
      ->expected(1)
      ->take_all();
  app.add_option("--exclude", views.exclude, "leave out variables whose name matches GLOB; repeatable")
      ->type_name("GLOB")
      ->expected(1)
      ->take_all();
  app.add_option("--rename", views.renames,
                 "a name starting with OLD starts with NEW instead; repeatable, the first matching rule applies; "
                 "OLD empty prefixes all")
      ->type_name("OLD=NEW")
      ->expected(1)
      ->take_all();
}

Result<std::unique_ptr<CheckpointReader>> apply_views(std::unique_ptr<CheckpointReader> reader, ViewOptions views) {
  std::vector<RenameRule> rules;
  for (const std::string& text : views.renames) {
    auto rule = parse_rename_rule(text);
    if (!rule.ok()) return Error(ErrorCode::kInvalidArgument, fmt::format("--rename: {}", rule.error().message()));
    rules.push_back(std::move(rule).value());
  }
  if (!views.include.empty() || !views.exclude.empty()) {
    CKPT_ASSIGN_OR_RETURN(reader, filter_view(std::move(reader), std::move(views.include), std::move(views.exclude)));
  }
  if (views.cast_to) {
    CKPT_ASSIGN_OR_RETURN(reader, cast_view(std::move(reader), *views.cast_to));
  }
  if (!rules.empty()) {
    CKPT_ASSIGN_OR_RETURN(reader, rename_view(std::move(reader), std::move(rules)));
  }
  return reader;
}

std::string printable_repr(std::string_view repr) {
  // printable() doubles each backslash; a repr's backslashes already begin escapes.
  std::string escaped = printable(repr);
  std::string out;
  out.reserve(escaped.size());
  for (std::size_t i = 0; i < escaped.size(); ++i) {
    out += escaped[i];
    if (escaped[i] == '\\' && i + 1 < escaped.size() && escaped[i + 1] == '\\') ++i;
  }
  return out;
}

}  // namespace ckpt::cli
