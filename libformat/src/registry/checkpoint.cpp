#include "ckpt/format/checkpoint.hpp"

#include <algorithm>
#include <array>
#include <mutex>
#include <new>
#include <span>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/atomic_output.hpp"
#include "registry/formats.hpp"

namespace ckpt {
namespace {

// Detection order: the first handler that recognises a path wins.
// One line per format, so adding one is adding a line.
std::span<const detail::FormatHandler* const> handlers() {
  static const std::array kHandlers = {
      &detail::safetensors_sharded_format(),  // before oneflow: a directory with an index is a set
      &detail::oneflow_format(),
      &detail::oneflow_pickle_format(),
      &detail::npy_format(),
      &detail::npz_format(),
      &detail::safetensors_format(),
      &detail::oneflow_single_file_format(),
      &detail::torch_format(),
  };
  return kHandlers;
}

Result<const detail::FormatHandler*> handler_named(std::string_view name) {
  for (const auto* handler : handlers()) {
    if (handler->name == name) return handler;
  }
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("unknown format '{}'; known: {}", name, fmt::join(checkpoint_formats(), ", ")));
}

}  // namespace

const TensorInfo* CheckpointReader::find(std::string_view name) const {
  const auto& all = tensors();
  auto it = std::lower_bound(all.begin(), all.end(), name,
                             [](const TensorInfo& info, std::string_view key) { return info.name < key; });
  return it != all.end() && it->name == name ? &*it : nullptr;
}

const TextMetadata& CheckpointReader::metadata() const {
  static const TextMetadata kNone;
  return kNone;
}

const std::vector<UnsupportedTensor>& CheckpointReader::unsupported() const {
  static const std::vector<UnsupportedTensor> kNone;
  return kNone;
}

Status CheckpointWriter::plan(std::span<const TensorInfo> /*tensors*/) { return {}; }

Status CheckpointWriter::set_object(const pickle::Value& /*object*/) { return {}; }

Status CheckpointWriter::set_metadata(const TextMetadata& /*entries*/) {
  return Error(ErrorCode::kInvalidArgument, "this format has no place for metadata; only safetensors stores it");
}

Status CheckpointWriter::set_nesting(std::vector<std::string> /*prefixes*/) {
  return Error(ErrorCode::kInvalidArgument, "this format stores flat names; only torch and oneflow-pickle nest them");
}

std::vector<std::string_view> checkpoint_formats() {
  std::vector<std::string_view> names;
  for (const auto* handler : handlers()) names.push_back(handler->name);
  return names;
}

std::string_view format_kind_name(FormatKind kind) { return kind == FormatKind::kFile ? "file" : "directory"; }

std::vector<FormatDescription> registered_formats() {
  std::vector<FormatDescription> formats;
  for (const auto* handler : handlers()) {
    formats.push_back({handler->name, handler->summary, handler->extensions, handler->kind});
  }
  return formats;
}

std::string_view dtype_name_in_format(std::string_view format, DType dtype) {
  auto handler = handler_named(format);
  if (!handler.ok() || (*handler)->dtype_label == nullptr) return {};
  return (*handler)->dtype_label(dtype);
}

Result<std::string> format_for_destination(const std::filesystem::path& requested,
                                           const std::optional<std::string>& explicit_to) {
  namespace fs = std::filesystem;
  const fs::path destination = without_trailing_separator(requested);
  const detail::FormatHandler* chosen = nullptr;
  if (explicit_to) {
    CKPT_ASSIGN_OR_RETURN(chosen, handler_named(*explicit_to));
  }
  const std::string extension = destination.extension().string();
  for (const auto* handler : handlers()) {
    if (chosen != nullptr) break;
    for (std::string_view known : handler->extensions) {
      if (known == extension) chosen = handler;
    }
  }
  std::error_code ec;
  const bool exists = fs::symlink_status(destination, ec).type() != fs::file_type::not_found && !ec;
  if (chosen == nullptr && exists) {
    if (auto held = detect_format(destination); held.ok()) return *held;
  }
  if (chosen == nullptr && !extension.empty()) {
    std::vector<std::string_view> claimed;
    for (const auto* handler : handlers()) claimed.insert(claimed.end(), handler->extensions.begin(), handler->extensions.end());
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("no format has the extension '{}' (known: {}); name the destination format", extension,
                             fmt::join(claimed, " ")))
        .in_file(requested.string());
  }
  if (chosen == nullptr) {
    // A bare name is a new OneFlow snapshot, the project's home format.
    CKPT_ASSIGN_OR_RETURN(chosen, handler_named("oneflow"));
  }
  if (chosen->kind == FormatKind::kFile && fs::is_directory(destination, ec)) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("is a directory, and a {} checkpoint is a single file", chosen->name))
        .in_file(requested.string());
  }
  return std::string(chosen->name);
}

Result<std::string> detect_format(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound, "no such file or directory").in_file(path.string());
  }
  // Detectors read a directory by path. Holding it (ReadDirectory) keeps a
  // replacing save from deleting it under them; if a save swapped it
  // meanwhile, the path now holds a complete checkpoint: look again.
  constexpr int kAttempts = 3;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    std::shared_ptr<const ReadDirectory> held;
    if (std::filesystem::is_directory(path, ec)) {
      auto opened = ReadDirectory::open(path);
      if (opened.ok()) held = std::move(opened).value();
    }
    for (const auto* handler : handlers()) {
      if (handler->detect(path)) return std::string(handler->name);
    }
    if (!held || held->still_at(path)) break;
  }
  return detail::diagnose_unrecognised(path, fmt::format("{}", fmt::join(checkpoint_formats(), ", ")));
}

// Allocations sized by the input that fail are the input's problem: an
// error naming the path, never std::bad_alloc escaping to an abort.
namespace {
Error out_of_memory(const std::filesystem::path& path) {
  return Error(ErrorCode::kOutOfMemory, "out of memory while reading; nothing was written").in_file(path.string());
}
}  // namespace

Result<std::unique_ptr<CheckpointReader>> open_checkpoint(const std::filesystem::path& path,
                                                          const OpenOptions& options) {
  try {
    std::string format;
    if (options.format) {
      format = *options.format;
    } else {
      CKPT_ASSIGN_OR_RETURN(format, detect_format(path));
    }
    CKPT_ASSIGN_OR_RETURN(const auto* handler, handler_named(format));
    return handler->open(path, options);
  } catch (const std::bad_alloc&) {
    return out_of_memory(path);
  }
}

namespace {

// Failures that refuse a request before anything of it is written: the
// writer can go on after them.
bool refused_before_writing(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnsafeName:
    case ErrorCode::kDuplicateName:
    case ErrorCode::kBufferSizeMismatch:
    case ErrorCode::kNpyUnsupportedDtype:
    case ErrorCode::kSafetensorsUnknownDtype:
    case ErrorCode::kSafetensorsHeaderUtf8:  // a name safetensors cannot hold
    case ErrorCode::kMetaUnsupportedDataType:  // a type OneFlow does not have
    case ErrorCode::kZipUnsafeName:  // a name npz readers refuse
    case ErrorCode::kUnstorableName:
    case ErrorCode::kOverFormatLimit:
      return true;
    default:
      return false;
  }
}

// Every writer from the registry: once an add has failed while writing, the
// output may hold part of a tensor, so commit() refuses to publish it.
class GuardedWriter final : public CheckpointWriter {
 public:
  explicit GuardedWriter(std::unique_ptr<CheckpointWriter> inner) : inner_(std::move(inner)) {}

  Status plan(std::span<const TensorInfo> tensors) override { return inner_->plan(tensors); }
  bool concurrent_adds() const override { return inner_->concurrent_adds(); }
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    Status status = inner_->add(name, meta, data);
    if (!status.ok() && !refused_before_writing(status.error().code())) {
      std::lock_guard lock(mutex_);  // adds may run at once (concurrent_adds)
      if (broken_variable_.empty()) broken_variable_ = name;
    }
    return status;
  }
  Status commit() override {
    if (!broken_variable_.empty()) {
      return Error(ErrorCode::kInvalidArgument, "not committed: writing this variable failed, the output is incomplete")
          .in_variable(broken_variable_);
    }
    return inner_->commit();
  }
  Status set_object(const pickle::Value& object) override { return inner_->set_object(object); }
  bool keeps_object() const override { return inner_->keeps_object(); }
  Status set_nesting(std::vector<std::string> prefixes) override { return inner_->set_nesting(std::move(prefixes)); }
  bool stores_metadata() const override { return inner_->stores_metadata(); }
  Status set_metadata(const TextMetadata& entries) override { return inner_->set_metadata(entries); }

 private:
  std::unique_ptr<CheckpointWriter> inner_;
  std::mutex mutex_;
  std::string broken_variable_;
};

}  // namespace

// Overwrite replaces a directory only if it is a checkpoint of a known format
// and holds nothing else: a user's folder with one .npy among other files
// opens as an npy checkpoint, but its other files are not the checkpoint's.
Status replaceable_checkpoint(const std::filesystem::path& directory) {
  CKPT_ASSIGN_OR_RETURN(std::string format, detect_format(directory));
  CKPT_ASSIGN_OR_RETURN(const auto* handler, handler_named(format));
  const ValidationReport report = handler->validate(directory, {});
  for (const Issue& issue : report.issues) {
    if (issue.severity == Severity::kError || issue.code == ErrorCode::kUnexpectedEntry) {
      return Error(issue.code, fmt::format("as {}: {}", format, issue.message));
    }
  }
  return {};
}

Result<std::unique_ptr<CheckpointWriter>> create_checkpoint(const std::filesystem::path& path,
                                                            std::string_view format, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(const auto* handler, handler_named(format));
  if (!options.is_checkpoint) options.is_checkpoint = replaceable_checkpoint;
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointWriter> writer, handler->create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<GuardedWriter>(std::move(writer)));
}

namespace detail {

ValidationReport unreadable_report(const std::filesystem::path& path, const Error& problem) {
  ValidationReport report;
  report.path = path;
  report.issues.push_back(make_issue(problem, Severity::kError));
  return report;
}

void require_some_variable(ValidationReport& report, std::string_view what) {
  if (!report.variables.empty() || report.count(Severity::kError) > 0) return;
  report.issues.push_back(make_issue(
      Error(ErrorCode::kNotACheckpoint, fmt::format("no {}", what)).in_file(report.path.string()), Severity::kError));
}

}  // namespace detail

namespace {

// A save killed before its rename leaves its staging sibling
// ".<name>.ckpt-tmp-..." next to the destination, and a replaced generation a
// reader still held waits as ".<name>.ckpt-old-..."; readers never see
// either, the validator says they are there.
void report_staging_leftovers(const std::filesystem::path& checked, ValidationReport& report) {
  const std::filesystem::path path = without_trailing_separator(checked);
  const std::string staging = "." + path.filename().string() + std::string(kStagingMarker);
  const std::string retired = "." + path.filename().string() + std::string(kRetiredMarker);
  std::filesystem::path parent = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::error_code ec;
  for (std::filesystem::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const char* what = name.starts_with(staging) ? "leftover of an interrupted ckpt write to this path; safe to "
                                                   "delete when no writer is running"
                       : name.starts_with(retired) ? "a replaced generation of this path kept while a reader had it "
                                                     "open; the next replacing save removes it"
                                                   : nullptr;
    if (what == nullptr) continue;
    report.issues.push_back(
        make_issue(Error(ErrorCode::kUnexpectedEntry, what).in_file(it->path().string()), Severity::kWarning));
  }
}

// A bool byte other than 0 or 1 is undefined in numpy and torch (it may
// print as True and compare unequal to True): the first one is an error.
Status check_bool_bytes(const CheckpointReader& reader, const TensorInfo& tensor) {
  constexpr std::size_t kChunkBytes = 1 << 20;
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> data, reader.open(tensor.name));
  std::vector<std::byte> chunk(static_cast<std::size_t>(std::min<std::uint64_t>(kChunkBytes, data->size())));
  for (std::uint64_t offset = 0; offset < data->size();) {
    std::span<std::byte> piece(chunk.data(), static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), data->size() - offset)));
    CKPT_TRY(data->read_at(offset, piece));
    auto bad = std::find_if(piece.begin(), piece.end(), [](std::byte b) { return std::to_integer<unsigned>(b) > 1; });
    if (bad != piece.end()) {
      std::uint64_t at = offset + static_cast<std::uint64_t>(bad - piece.begin());
      return Error(ErrorCode::kInvalidBool, fmt::format("element {} is the byte 0x{:02x}; a bool is 0 or 1", at,
                                                        std::to_integer<unsigned>(*bad)))
          .in_variable(tensor.name)
          .in_file(data->name());
    }
    offset += piece.size();
  }
  return {};
}

void check_bool_tensors(const std::filesystem::path& path, std::string_view format, const OpenOptions& options,
                        ValidationReport& report) {
  bool has_bool = std::any_of(report.variables.begin(), report.variables.end(),
                              [](const VariableInfo& v) { return v.meta && v.meta->dtype() == DType::kBool; });
  if (!has_bool || report.count(Severity::kError) > 0) return;
  OpenOptions with_format = options;
  with_format.format = std::string(format);
  auto reader = open_checkpoint(path, with_format);
  if (!reader.ok()) {
    report.issues.push_back(make_issue(reader.error(), Severity::kError));
    return;
  }
  for (const TensorInfo& tensor : (*reader)->tensors()) {
    if (tensor.meta.dtype() != DType::kBool) continue;
    if (auto status = check_bool_bytes(**reader, tensor); !status.ok()) {
      report.issues.push_back(make_issue(status.error(), Severity::kError));
    }
  }
}

}  // namespace

ValidationReport validate_checkpoint(const std::filesystem::path& path, std::string_view format,
                                     const OpenOptions& options) {
  try {
    auto handler = handler_named(format);
    // A file the format does not recognise: what the bytes are says more than
    // that format's rules (a OneFlow checkpoint is a directory).
    std::error_code ec;
    if (handler.ok() && std::filesystem::is_regular_file(path, ec) && !(*handler)->detect(path)) {
      auto detected = detect_format(path);
      if (!detected.ok() && detected.error().code() != ErrorCode::kNotACheckpoint) {
        ValidationReport report = detail::unreadable_report(path, detected.error());
        report_staging_leftovers(path, report);
        return report;
      }
    }
    ValidationReport report =
        handler.ok() ? (*handler)->validate(path, options) : detail::unreadable_report(path, handler.error());
    if (handler.ok()) report.format = (*handler)->name;
    check_bool_tensors(path, format, options, report);
    report_staging_leftovers(path, report);
    return report;
  } catch (const std::bad_alloc&) {
    return detail::unreadable_report(path, out_of_memory(path));
  }
}

ValidationReport validate_checkpoint(const std::filesystem::path& path, const OpenOptions& options) {
  if (options.format) return validate_checkpoint(path, *options.format, options);
  auto detected = detect_format(path);
  if (detected.ok()) return validate_checkpoint(path, *detected, options);
  ValidationReport report = detail::unreadable_report(path, detected.error());
  report_staging_leftovers(path, report);
  return report;
}

Result<ShapeTable> parse_shape_table(std::string_view json_text, std::string_view file_name) {
  auto fail = [&](std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)).in_file(file_name); };
  nlohmann::json document = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) return fail("not valid JSON");
  if (!document.is_object()) return fail("expected an object {\"name\": {\"dtype\": ..., \"shape\": [...]}}");
  ShapeTable table;
  for (auto item = document.begin(); item != document.end(); ++item) {
    const std::string& name = item.key();
    const nlohmann::json& entry = item.value();
    auto bad = [&](std::string_view why) { return std::move(fail(std::string(why)).in_variable(name)); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape")) {
      return bad("expected {\"dtype\": \"kFloat\", \"shape\": [...]}");
    }
    const auto& dtype_value = entry["dtype"];
    if (!dtype_value.is_string()) return bad("dtype must be a name such as \"float32\", \"bf16\" or \"kFloat\"");
    auto dtype = parse_dtype(dtype_value.get<std::string>());
    if (!dtype) return bad(fmt::format("unknown dtype '{}'", dtype_value.get<std::string>()));
    const auto& shape_value = entry["shape"];
    if (!shape_value.is_array()) return bad("shape must be a list of integers");
    Shape shape;
    for (const auto& dim : shape_value) {
      if (!dim.is_number_integer()) return bad("shape must be a list of integers");
      shape.push_back(dim.get<std::int64_t>());
    }
    auto meta = VariableMeta::make(*dtype, std::move(shape));
    if (!meta.ok()) return std::move(std::move(meta).error().in_variable(name).in_file(file_name));
    table.emplace(name, std::move(meta).value());
  }
  return table;
}

}  // namespace ckpt
