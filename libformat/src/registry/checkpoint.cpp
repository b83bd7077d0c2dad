#include "ckpt/format/checkpoint.hpp"

#include <algorithm>
#include <array>
#include <span>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "registry/formats.hpp"

namespace ckpt {
namespace {

// Detection order: the first handler that recognises a path wins.
// One line per format, so adding one is adding a line.
std::span<const detail::FormatHandler* const> handlers() {
  static const std::array kHandlers = {
      &detail::oneflow_format(),
      &detail::oneflow_pickle_format(),
      &detail::npy_format(),
      &detail::npz_format(),
      &detail::safetensors_format(),
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

Status CheckpointWriter::set_object(const pickle::Value& /*object*/) { return {}; }

Status CheckpointWriter::set_nesting(std::vector<std::string> /*prefixes*/) {
  return Error(ErrorCode::kInvalidArgument, "this format stores flat names; only torch and oneflow-pickle nest them");
}

std::vector<std::string_view> checkpoint_formats() {
  std::vector<std::string_view> names;
  for (const auto* handler : handlers()) names.push_back(handler->name);
  return names;
}

Result<std::string> detect_format(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound, "no such file or directory").in_file(path.string());
  }
  for (const auto* handler : handlers()) {
    if (handler->detect(path)) return std::string(handler->name);
  }
  return Error(ErrorCode::kNotACheckpoint,
               fmt::format("not a checkpoint of any known format ({})", fmt::join(checkpoint_formats(), ", ")))
      .in_file(path.string());
}

Result<std::unique_ptr<CheckpointReader>> open_checkpoint(const std::filesystem::path& path,
                                                          const OpenOptions& options) {
  std::string format;
  if (options.format) {
    format = *options.format;
  } else {
    CKPT_ASSIGN_OR_RETURN(format, detect_format(path));
  }
  CKPT_ASSIGN_OR_RETURN(const auto* handler, handler_named(format));
  return handler->open(path, options);
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

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    Status status = inner_->add(name, meta, data);
    if (!status.ok() && !refused_before_writing(status.error().code()) && broken_variable_.empty()) {
      broken_variable_ = name;
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
  Status set_nesting(std::vector<std::string> prefixes) override { return inner_->set_nesting(std::move(prefixes)); }

 private:
  std::unique_ptr<CheckpointWriter> inner_;
  std::string broken_variable_;
};

}  // namespace

Result<std::unique_ptr<CheckpointWriter>> create_checkpoint(const std::filesystem::path& path,
                                                            std::string_view format, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(const auto* handler, handler_named(format));
  if (!options.is_checkpoint) {
    // Overwrite replaces a directory only if it opens as a checkpoint of a known format.
    options.is_checkpoint = [](const std::filesystem::path& directory) -> Status {
      CKPT_TRY(open_checkpoint(directory));
      return {};
    };
  }
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

ValidationReport validate_through_reader(const std::filesystem::path& path, const OpenOptions& options,
                                         const FormatHandler::OpenFn& open) {
  auto reader = open(path, options);
  if (!reader.ok()) return unreadable_report(path, reader.error());
  ValidationReport report;
  report.path = path;
  for (const TensorInfo& tensor : (*reader)->tensors()) {
    report.variables.push_back(VariableInfo{tensor.name, tensor.meta, tensor.meta.byte_size()});
  }
  return report;
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

}  // namespace

ValidationReport validate_checkpoint(const std::filesystem::path& path, std::string_view format,
                                     const OpenOptions& options) {
  auto handler = handler_named(format);
  ValidationReport report = !handler.ok()                       ? detail::unreadable_report(path, handler.error())
                            : (*handler)->validate != nullptr ? (*handler)->validate(path, options)
                                                              : detail::validate_through_reader(path, options, (*handler)->open);
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
    if (!dtype_value.is_string()) return bad("dtype must be a OneFlow name such as \"kFloat\"");
    auto dtype = dtype_from_name(dtype_value.get<std::string>());
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
