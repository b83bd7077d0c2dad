// The command-line layer every ckpt tool shares: CLI11 parsing with one
// error-line format and --version, the registry-driven format options, the
// reader options (--format/--from, --shapes, --v2-as-bfloat16, the pickle
// policy's --allow-global and --stub-unknown), one exit-code
// policy, hints that name the tools' flags, and the --json envelope
// (spec/schema/).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/views.hpp"
#include "ckpt/format/parallel.hpp"

namespace ckpt::cli {

// One policy for every tool.
enum ExitStatus : int {
  kExitOk = 0,         // valid, listed, equal, converted, trained
  kExitInvalid = 1,    // the input is invalid, or the checkpoints differ
  kExitUsageOrIo = 2,  // a usage error, an I/O error or a device error
};
// kExitUsageOrIo for 1xx (I/O, usage) and device errors, else kExitInvalid.
int exit_status(const Error& error);

// The version of the ckpt project, "0.1.0".
std::string_view version();

class Tool {
 public:
  // `name` is the program name ("ckpt-inspect"), `description` its --help text.
  Tool(std::string name, std::string description);

  CLI::App& app() { return app_; }
  const std::string& name() const { return name_; }

  // Parses the command line. Returns the exit status when the tool should
  // stop now: 0 after --help or --version, 2 after a usage error (one line,
  // a suggestion for a misspelt option, "Run '<tool> --help'").
  std::optional<int> parse(int argc, char** argv);

  // "<tool>: error: <E-code, file, variable, message>" on stderr, then a
  // hint line where a flag of the tools would help; returns exit_status().
  // With a --json document, its "error" is set and it is printed first.
  int fail(const Error& error, nlohmann::json* document = nullptr) const;
  // "<tool>: error: <message>" and the --help pointer; returns 2.
  int usage_error(std::string_view message) const;

 private:
  std::string name_;
  CLI::App app_;
};

// --format/--from/--to NAME restricted to the registry's names.
CLI::Option* add_format_option(CLI::App& app, const std::string& flag, std::optional<std::string>& format,
                               const std::string& description);
// The registry's formats as --help lines: "  name  kind, summary (.ext ...)".
std::string formats_help();

// The options of every tool that opens a checkpoint.
struct ReaderOptions {
  std::optional<std::string> format;
  std::string shapes_file;
  bool v2_as_bfloat16 = false;
  std::vector<std::string> allowed_globals;  // --allow-global MODULE.NAME
  bool stub_unknown = false;                 // --stub-unknown
  ShapeTable shapes;  // loaded by open_options()

  // Loads the shapes file, if any, once; the result points into `shapes`.
  Result<OpenOptions> open_options();
  // open_checkpoint with these options.
  Result<std::unique_ptr<CheckpointReader>> open(const std::string& path);

 private:
  bool shapes_loaded_ = false;
};
// `format_flag` is "--format" or "--from".
void add_reader_options(CLI::App& app, ReaderOptions& options, const std::string& format_flag);

// ---- views (spec/casting.md) ----

// What ckpt-convert (and ckpt-diff, on A) presents of a checkpoint.
struct ViewOptions {
  std::vector<std::string> include, exclude;
  std::vector<std::string> renames;  // OLD=NEW, parsed by apply_views
  std::optional<DType> cast_to;
};
// --include GLOB, --exclude GLOB and --rename OLD=NEW, each repeatable.
void add_view_options(CLI::App& app, ViewOptions& views);
// Filtered, then cast, then renamed: patterns see the source's names. A
// malformed rename rule is E104.
Result<std::unique_ptr<CheckpointReader>> apply_views(std::unique_ptr<CheckpointReader> reader, ViewOptions views);
// --jobs and --memory-budget, for the tools that work on several tensors at
// once (ckpt-convert, ckpt-inspect --stats, ckpt-diff).
struct ParallelFlags {
  unsigned jobs = available_cores();
  std::string memory_budget = "256MiB";
  // The flags as run_tasks takes them (memory_budget was checked while parsing).
  ParallelOptions options() const;
};
void add_parallel_options(CLI::App& app, ParallelFlags& flags);

// A run of one tensor's elements: the unit that --stats and ckpt-diff read
// in parallel. Ranges are cut the same way for every --jobs, so merged
// results are too.
struct ElementRange {
  std::size_t tensor = 0;  // an index chosen by the caller
  std::uint64_t first = 0;
  std::uint64_t count = 0;
};
inline constexpr std::uint64_t kRangeElements = std::uint64_t{1} << 22;
// What reading one range holds in buffers (ValueReader's chunk, raw and as doubles).
inline constexpr std::uint64_t kRangeBufferBytes = std::uint64_t{1} << 20;
// Appends the ranges of a tensor of `elements`: ranges of kRangeElements
// when `split`, else one (sources read from the start only, like deflated
// members, would be read again for every range).
void append_ranges(std::vector<ElementRange>& ranges, std::size_t tensor, std::uint64_t elements, bool split);
// Whether the tensor's bytes lie in a plain file (so a range is a cheap window).
Result<bool> is_file_window(const CheckpointReader& reader, const TensorInfo& tensor);
// The bytes of `range` of `tensor`.
Result<std::unique_ptr<ByteSource>> open_range(const CheckpointReader& reader, const TensorInfo& tensor,
                                               const ElementRange& range);

// ---- --json ----

inline constexpr int kJsonSchemaVersion = 1;

// {"schema", "tool", "path", "format", "layout", "tensors": [], "issues": [], "error": null}
nlohmann::json envelope(std::string_view tool, std::string_view path);
// Fills "format" and "layout" of `document` (or of a sub-object) from a reader.
void describe_checkpoint(nlohmann::json& document, const CheckpointReader& reader);
// {"name", "dtype", "format_dtype", "shape", "bytes"}; dtype and shape null when unknown.
nlohmann::json tensor_json(std::string_view name, const VariableMeta* meta, std::uint64_t bytes,
                           std::string_view format);
nlohmann::json issue_json(const Issue& issue);
// {"code", "name", "message", "file", "variable"}
nlohmann::json error_json(const Error& error);
// Prints the document on stdout; names that are not UTF-8 get U+FFFD.
void print_json(const nlohmann::json& document);

// ---- text ----

// A Python repr() (pickle::python_repr) for the terminal: its own escapes
// kept as they are, what is not printable UTF-8 (a lone surrogate, a bidi
// control) as \xNN, as printable() does.
std::string printable_repr(std::string_view repr);

// "kBFloat16 (BF16)": the canonical name and the file's own where the format has one.
std::string dtype_text(DType dtype, std::string_view format);
// The format whose dtype names label a tensor of `format`: numpy's ("npy",
// "<i2") for a numpy array inside a pickle (TensorInfo::numpy_array).
std::string_view label_format(std::string_view format, bool numpy_array);

}  // namespace ckpt::cli
