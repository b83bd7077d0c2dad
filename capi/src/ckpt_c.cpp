// The C API over libformat. Every entry point runs its body through
// `boundary`, which turns an Error, or any C++ exception, into a status and
// a message; nothing is thrown across the C boundary.
#include "ckpt.h"

#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/convert/convert.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/validation.hpp"
#include "ckpt/format/views.hpp"
#include "tensor_bytes.hpp"

struct ckpt_reader {
  ~ckpt_reader() {
    // Views first: each reads through the layers below it.
    reader.reset();
    while (!below.empty()) below.pop_back();
  }
  std::unique_ptr<ckpt::CheckpointReader> reader;  // the top: what the API presents
  std::string last_error;
  std::vector<std::unique_ptr<ckpt::CheckpointReader>> below;  // readers under views, bottom first
  // The object's non-tensor leaves and their repr(), made on first use.
  struct Leaf {
    ckpt::pickle::ObjectLeaf leaf;
    std::optional<std::string> repr;
  };
  mutable std::optional<std::vector<Leaf>> leaves;
};

struct ckpt_writer {
  std::unique_ptr<ckpt::CheckpointWriter> writer;
  std::string last_error;
};

struct ckpt_view {
  std::unique_ptr<ckpt::capi::TensorBytes> bytes;
};

struct ckpt_report {
  std::string format;
  std::vector<ckpt::Issue> issues;
};

namespace {

thread_local std::string t_last_error;
thread_local ckpt_status t_last_code = CKPT_OK;

ckpt_status fail(std::string* handle_error, ckpt_status code, const std::string& message) noexcept {
  t_last_code = code;
  try {
    t_last_error = message;
    if (handle_error != nullptr) *handle_error = message;
  } catch (...) {
    // Out of memory while keeping the message: the code still tells.
    t_last_error.clear();
  }
  return code;
}

template <class Body>
ckpt_status boundary(std::string* handle_error, Body&& body) noexcept {
  try {
    ckpt::Status status = body();
    if (status.ok()) return CKPT_OK;
    return fail(handle_error, static_cast<ckpt_status>(status.error().code()), status.error().describe());
  } catch (const std::bad_alloc&) {
    return fail(handle_error, CKPT_ERR_NO_MEMORY, "out of memory");
  } catch (const std::exception& error) {
    return fail(handle_error, CKPT_ERR_INTERNAL, fmt::format("internal error: {}", error.what()));
  } catch (...) {
    return fail(handle_error, CKPT_ERR_INTERNAL, "internal error");
  }
}

ckpt::Status require(const void* pointer, std::string_view what) {
  if (pointer != nullptr) return {};
  return ckpt::Error(ckpt::ErrorCode::kInvalidArgument, fmt::format("{} must not be NULL", what));
}

void describe(const ckpt::TensorInfo& tensor, ckpt_tensor_info* info) {
  info->name = tensor.name.c_str();
  info->dtype = static_cast<int32_t>(tensor.meta.dtype());
  info->ndim = tensor.meta.shape().size();
  info->shape = tensor.meta.shape().data();
  info->nbytes = tensor.meta.byte_size();
}

ckpt::Result<const ckpt::TensorInfo*> find_tensor(const ckpt_reader& reader, const char* name) {
  const ckpt::TensorInfo* tensor = reader.reader->find(name);
  if (tensor == nullptr) {
    return ckpt::Error(ckpt::ErrorCode::kUnknownVariable, "no tensor of that name")
        .in_variable(name)
        .in_file(reader.reader->path().string());
  }
  return tensor;
}

ckpt::WriteOptions write_options(unsigned flags) {
  ckpt::WriteOptions options;
  options.overwrite = (flags & CKPT_OVERWRITE) != 0;
  return options;
}

// The reader under a view being tried: forwards to the top reader without
// owning it, so a failed view leaves the handle as it was.
class BorrowedReader final : public ckpt::CheckpointReader {
 public:
  explicit BorrowedReader(const ckpt::CheckpointReader& inner) : inner_(inner) {}
  std::string_view format_name() const override { return inner_.format_name(); }
  const std::filesystem::path& path() const override { return inner_.path(); }
  const std::vector<ckpt::TensorInfo>& tensors() const override { return inner_.tensors(); }
  ckpt::Result<std::unique_ptr<ckpt::ByteSource>> open(std::string_view name) const override {
    return inner_.open(name);
  }
  const ckpt::pickle::Value* object() const override { return inner_.object(); }

 private:
  const ckpt::CheckpointReader& inner_;
};

// Puts the view that `make_view` builds over the reader's top on top.
template <class MakeView>
ckpt::Status push_view(ckpt_reader& reader, MakeView&& make_view) {
  CKPT_ASSIGN_OR_RETURN(auto view, make_view(std::make_unique<BorrowedReader>(*reader.reader)));
  reader.below.push_back(std::move(reader.reader));
  reader.reader = std::move(view);
  return {};
}

ckpt::Result<std::vector<std::string>> string_list(const char* const* items, size_t count, std::string_view what) {
  if (count > 0) CKPT_TRY(require(items, what));
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    CKPT_TRY(require(items[i], fmt::format("{}[{}]", what, i)));
    out.emplace_back(items[i]);
  }
  return out;
}

// ckpt_open_with's options as the library's; NULL is the defaults.
ckpt::Result<ckpt::OpenOptions> open_options_from(const ckpt_open_options* given) {
  ckpt::OpenOptions options;
  if (given == nullptr) return options;
  if (given->format != nullptr) options.format = given->format;
  CKPT_ASSIGN_OR_RETURN(options.pickle_policy.allowed_globals,
                        string_list(given->allowed_globals, given->allowed_global_count, "allowed_globals"));
  options.pickle_policy.stub_unknown = given->stub_unknown != 0;
  return options;
}

// repr() of a leaf for the C API: up to 64 KiB.
constexpr std::size_t kLeafReprBytes = 64u << 10;

const std::vector<ckpt_reader::Leaf>& leaves_of(const ckpt_reader& reader) {
  if (!reader.leaves) {
    std::vector<ckpt_reader::Leaf> leaves;
    if (const ckpt::pickle::Value* object = reader.reader->object()) {
      for (auto& leaf : ckpt::pickle::object_leaves(*object)) {
        auto repr = ckpt::pickle::python_repr(*leaf.node, kLeafReprBytes);
        leaves.push_back({std::move(leaf), std::move(repr)});
      }
    }
    reader.leaves = std::move(leaves);
  }
  return *reader.leaves;
}

}  // namespace

extern "C" {

const char* ckpt_last_error(void) { return t_last_error.c_str(); }
ckpt_status ckpt_last_error_code(void) { return t_last_code; }

const char* ckpt_error_name(ckpt_status code) {
  switch (code) {
    case CKPT_OK: return "ok";
    case CKPT_ERR_NO_MEMORY: return "no_memory";
    case CKPT_ERR_INTERNAL: return "internal";
    default: break;
  }
  // code_name returns string literals, so the view is NUL-terminated.
  return ckpt::code_name(static_cast<ckpt::ErrorCode>(code)).data();
}

const char* ckpt_dtype_name(int32_t dtype) {
  auto known = ckpt::dtype_from_number(dtype);
  return known ? ckpt::dtype_name(*known).data() : nullptr;
}

size_t ckpt_dtype_size(int32_t dtype) {
  auto known = ckpt::dtype_from_number(dtype);
  return known ? ckpt::dtype_size(*known) : 0;
}

ckpt_status ckpt_open(const char* path, const char* format, ckpt_reader** reader) {
  ckpt_open_options options{};
  options.format = format;
  return ckpt_open_with(path, &options, reader);
}

ckpt_status ckpt_open_with(const char* path, const ckpt_open_options* open_options, ckpt_reader** reader) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    *reader = nullptr;
    CKPT_TRY(require(path, "path"));
    CKPT_ASSIGN_OR_RETURN(ckpt::OpenOptions options, open_options_from(open_options));
    CKPT_ASSIGN_OR_RETURN(auto opened, ckpt::open_checkpoint(path, options));
    *reader = new ckpt_reader{std::move(opened), {}, {}, {}};
    return {};
  });
}

void ckpt_close(ckpt_reader* reader) { delete reader; }

const char* ckpt_reader_error(const ckpt_reader* reader) { return reader != nullptr ? reader->last_error.c_str() : ""; }

const char* ckpt_reader_format(const ckpt_reader* reader) {
  // Format names are string literals of the handlers.
  return reader != nullptr ? reader->reader->format_name().data() : "";
}

size_t ckpt_tensor_count(const ckpt_reader* reader) { return reader != nullptr ? reader->reader->tensors().size() : 0; }

ckpt_status ckpt_tensor_at(const ckpt_reader* reader, size_t index, ckpt_tensor_info* info) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    CKPT_TRY(require(info, "info"));
    const auto& tensors = reader->reader->tensors();
    if (index >= tensors.size()) {
      return ckpt::Error(ckpt::ErrorCode::kInvalidArgument,
                         fmt::format("index {} is out of range: the checkpoint has {} tensors", index, tensors.size()));
    }
    describe(tensors[index], info);
    return {};
  });
}

ckpt_status ckpt_tensor_find(const ckpt_reader* reader, const char* name, ckpt_tensor_info* info) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    CKPT_TRY(require(name, "name"));
    CKPT_TRY(require(info, "info"));
    CKPT_ASSIGN_OR_RETURN(const auto* tensor, find_tensor(*reader, name));
    describe(*tensor, info);
    return {};
  });
}

ckpt_status ckpt_read(ckpt_reader* reader, const char* name, void* buffer, uint64_t buffer_size) {
  return boundary(reader != nullptr ? &reader->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    CKPT_TRY(require(name, "name"));
    CKPT_ASSIGN_OR_RETURN(const auto* tensor, find_tensor(*reader, name));
    if (buffer_size != tensor->meta.byte_size()) {
      return ckpt::Error(ckpt::ErrorCode::kBufferSizeMismatch,
                         fmt::format("the buffer has {} bytes, the tensor {}", buffer_size, tensor->meta.byte_size()))
          .in_variable(name);
    }
    if (buffer_size > 0) CKPT_TRY(require(buffer, "buffer"));
    CKPT_ASSIGN_OR_RETURN(auto source, reader->reader->open(name));
    auto status = source->read_at(0, {static_cast<std::byte*>(buffer), static_cast<std::size_t>(buffer_size)});
    if (!status.ok()) return std::move(std::move(status).error().in_variable(name));
    return {};
  });
}

ckpt_status ckpt_reader_cast(ckpt_reader* reader, int32_t dtype) {
  return boundary(reader != nullptr ? &reader->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    auto target = ckpt::dtype_from_number(dtype);
    if (!target) return ckpt::Error(ckpt::ErrorCode::kInvalidArgument, fmt::format("unknown data type {}", dtype));
    return push_view(*reader, [&](auto below) { return ckpt::cast_view(std::move(below), *target); });
  });
}

ckpt_status ckpt_reader_filter(ckpt_reader* reader, const char* const* include, size_t include_count,
                               const char* const* exclude, size_t exclude_count) {
  return boundary(reader != nullptr ? &reader->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    CKPT_ASSIGN_OR_RETURN(auto included, string_list(include, include_count, "include"));
    CKPT_ASSIGN_OR_RETURN(auto excluded, string_list(exclude, exclude_count, "exclude"));
    return push_view(*reader, [&](auto below) {
      return ckpt::filter_view(std::move(below), std::move(included), std::move(excluded));
    });
  });
}

size_t ckpt_object_leaf_count(const ckpt_reader* reader) {
  if (reader == nullptr) return 0;
  try {
    return leaves_of(*reader).size();
  } catch (...) {
    fail(nullptr, CKPT_ERR_NO_MEMORY, "out of memory");
    return 0;
  }
}

ckpt_status ckpt_object_leaf_at(const ckpt_reader* reader, size_t index, ckpt_object_leaf* leaf) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    CKPT_TRY(require(leaf, "leaf"));
    const auto& leaves = leaves_of(*reader);
    if (index >= leaves.size()) {
      return ckpt::Error(ckpt::ErrorCode::kInvalidArgument,
                         fmt::format("index {} is out of range: the object has {} non-tensor values", index,
                                     leaves.size()));
    }
    const auto& [found, repr] = leaves[index];
    *leaf = ckpt_object_leaf{};
    leaf->path = found.path.c_str();
    leaf->type = found.type.c_str();
    leaf->repr = repr ? repr->c_str() : nullptr;
    // A numpy scalar reads as the Python value it holds.
    const ckpt::pickle::Value* value = found.node;
    if (value->kind == ckpt::pickle::Kind::kNumpyScalar && value->decoded != nullptr) value = value->decoded;
    switch (value->kind) {
      case ckpt::pickle::Kind::kNone: leaf->kind = CKPT_VALUE_NONE; break;
      case ckpt::pickle::Kind::kBool:
        leaf->kind = CKPT_VALUE_BOOL;
        leaf->int_value = value->boolean ? 1 : 0;
        break;
      case ckpt::pickle::Kind::kInt:
        leaf->kind = CKPT_VALUE_INT;
        leaf->int_value = value->integer;
        break;
      case ckpt::pickle::Kind::kFloat:
        leaf->kind = CKPT_VALUE_FLOAT;
        leaf->float_value = value->real;
        break;
      case ckpt::pickle::Kind::kString:
      case ckpt::pickle::Kind::kBytes:
        leaf->kind = value->kind == ckpt::pickle::Kind::kString ? CKPT_VALUE_STR : CKPT_VALUE_BYTES;
        leaf->text = value->text.c_str();
        leaf->text_size = value->text.size();
        break;
      default: leaf->kind = CKPT_VALUE_OTHER; break;
    }
    return {};
  });
}

ckpt_status ckpt_reader_rename(ckpt_reader* reader, const char* const* rules, size_t rule_count) {
  return boundary(reader != nullptr ? &reader->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    CKPT_ASSIGN_OR_RETURN(auto texts, string_list(rules, rule_count, "rules"));
    std::vector<ckpt::RenameRule> parsed;
    for (const auto& text : texts) {
      CKPT_ASSIGN_OR_RETURN(auto rule, ckpt::parse_rename_rule(text));
      parsed.push_back(std::move(rule));
    }
    return push_view(*reader, [&](auto below) { return ckpt::rename_view(std::move(below), std::move(parsed)); });
  });
}

ckpt_status ckpt_map(ckpt_reader* reader, const char* name, ckpt_view** view) {
  return boundary(reader != nullptr ? &reader->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(view, "view"));
    *view = nullptr;
    CKPT_TRY(require(reader, "reader"));
    CKPT_TRY(require(name, "name"));
    CKPT_ASSIGN_OR_RETURN(auto source, reader->reader->open(name));
    CKPT_ASSIGN_OR_RETURN(auto bytes, ckpt::capi::TensorBytes::load(*source));
    *view = new ckpt_view{std::move(bytes)};
    return {};
  });
}

const void* ckpt_view_data(const ckpt_view* view) { return view != nullptr ? view->bytes->data() : nullptr; }
uint64_t ckpt_view_size(const ckpt_view* view) { return view != nullptr ? view->bytes->size() : 0; }
int ckpt_view_is_mapped(const ckpt_view* view) { return view != nullptr && view->bytes->mapped() ? 1 : 0; }
void ckpt_view_free(ckpt_view* view) { delete view; }

ckpt_status ckpt_validate_format(const char* path, const char* format, ckpt_report** report) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(report, "report"));
    *report = nullptr;
    CKPT_TRY(require(path, "path"));
    ckpt::OpenOptions options;
    if (format != nullptr) options.format = format;
    // The registry's validation, as ckpt-validate runs it: the format's own
    // validator, then staging leftovers beside the path.
    ckpt::ValidationReport validated = ckpt::validate_checkpoint(path, options);
    auto result = std::make_unique<ckpt_report>();
    result->format = std::move(validated.format);
    result->issues = std::move(validated.issues);
    *report = result.release();
    return {};
  });
}

ckpt_status ckpt_validate(const char* path, ckpt_report** report) { return ckpt_validate_format(path, nullptr, report); }

int ckpt_report_valid(const ckpt_report* report) {
  if (report == nullptr) return 0;
  for (const auto& issue : report->issues) {
    if (issue.severity == ckpt::Severity::kError) return 0;
  }
  return 1;
}

const char* ckpt_report_format(const ckpt_report* report) { return report != nullptr ? report->format.c_str() : ""; }
size_t ckpt_report_issue_count(const ckpt_report* report) { return report != nullptr ? report->issues.size() : 0; }

ckpt_status ckpt_report_issue(const ckpt_report* report, size_t index, ckpt_issue* issue) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(report, "report"));
    CKPT_TRY(require(issue, "issue"));
    if (index >= report->issues.size()) {
      return ckpt::Error(ckpt::ErrorCode::kInvalidArgument,
                         fmt::format("index {} is out of range: the report has {} issues", index, report->issues.size()));
    }
    const auto& found = report->issues[index];
    issue->code = static_cast<int>(found.code);
    issue->code_name = ckpt::code_name(found.code).data();
    issue->is_error = found.severity == ckpt::Severity::kError ? 1 : 0;
    issue->variable = found.variable.c_str();
    issue->message = found.message.c_str();
    return {};
  });
}

void ckpt_report_free(ckpt_report* report) { delete report; }

ckpt_status ckpt_create(const char* path, const char* format, unsigned flags, ckpt_writer** writer) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(writer, "writer"));
    *writer = nullptr;
    CKPT_TRY(require(path, "path"));
    CKPT_ASSIGN_OR_RETURN(auto created,
                          ckpt::create_checkpoint(path, format != nullptr ? format : "oneflow", write_options(flags)));
    *writer = new ckpt_writer{std::move(created), {}};
    return {};
  });
}

ckpt_status ckpt_writer_add(ckpt_writer* writer, const char* name, int32_t dtype, const int64_t* shape, size_t ndim,
                            const void* data, uint64_t size) {
  return boundary(writer != nullptr ? &writer->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(writer, "writer"));
    CKPT_TRY(require(name, "name"));
    if (ndim > 0) CKPT_TRY(require(shape, "shape"));
    if (size > 0) CKPT_TRY(require(data, "data"));
    auto known = ckpt::dtype_from_number(dtype);
    if (!known) {
      return ckpt::Error(ckpt::ErrorCode::kInvalidArgument, fmt::format("unknown dtype number {}", dtype))
          .in_variable(name);
    }
    auto meta = ckpt::VariableMeta::make(*known, ckpt::Shape(shape, shape + ndim));
    if (!meta.ok()) return std::move(std::move(meta).error().in_variable(name));
    ckpt::MemorySource source({static_cast<const std::byte*>(data), static_cast<std::size_t>(size)});
    return writer->writer->add(name, *meta, source);
  });
}

ckpt_status ckpt_writer_commit(ckpt_writer* writer) {
  return boundary(writer != nullptr ? &writer->last_error : nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(writer, "writer"));
    return writer->writer->commit();
  });
}

const char* ckpt_writer_error(const ckpt_writer* writer) { return writer != nullptr ? writer->last_error.c_str() : ""; }

void ckpt_writer_free(ckpt_writer* writer) { delete writer; }

ckpt_status ckpt_convert(const char* source, const char* destination, const char* format, unsigned flags) {
  ckpt_convert_options options{};
  options.format = format;
  options.flags = flags;
  return ckpt_convert_with(source, destination, &options);
}

ckpt_status ckpt_convert_with(const char* source, const char* destination, const ckpt_convert_options* options) {
  return boundary(nullptr, [&]() -> ckpt::Status {
    CKPT_TRY(require(source, "source"));
    CKPT_TRY(require(destination, "destination"));
    const ckpt_convert_options given = options != nullptr ? *options : ckpt_convert_options{};
    CKPT_ASSIGN_OR_RETURN(ckpt::OpenOptions open_options, open_options_from(given.source_options));
    CKPT_ASSIGN_OR_RETURN(auto reader, ckpt::open_checkpoint(source, open_options));
    ckpt::WriteOptions write = write_options(given.flags);
    write.sources = {source};
    CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::create_checkpoint(destination, given.format != nullptr ? given.format : "oneflow",
                                                               std::move(write)));
    ckpt::convert::ConvertOptions convert_options;
    convert_options.skip_unsupported = given.skip_unsupported != 0;
    convert_options.strict = given.strict != 0;
    CKPT_TRY(ckpt::convert::convert(*reader, *writer, convert_options));
    return {};
  });
}

}  // extern "C"
