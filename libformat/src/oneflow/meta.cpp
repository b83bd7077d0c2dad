#include "ckpt/format/meta.hpp"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "variable_meta_info.pb.h"

namespace ckpt {
namespace {

namespace pb = google::protobuf;

// Collects the parser's complaints instead of letting libprotobuf log them.
class CollectingErrors final : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors.push_back(fmt::format("line {}, column {}: {}", line + 1, column + 1, message));
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    warnings.push_back(fmt::format("line {}, column {}: {}", line + 1, column + 1, message));
  }
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

struct Analysis {
  std::vector<Error> errors;
  std::vector<Error> warnings;
  std::optional<VariableMeta> meta;
};

Error count_overflow(const Shape& shape) {
  return Error(ErrorCode::kMetaCountOverflow,
               fmt::format("element count of shape {} does not fit in 64 bits", shape_to_string(shape)));
}

// Every problem of the dims: one error per negative dim, or an overflow.
std::vector<Error> shape_problems(const Shape& shape) {
  std::vector<Error> problems;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      problems.emplace_back(ErrorCode::kMetaNegativeDim,
                            fmt::format("dim {} of shape {} is {}, expected >= 0", i, shape_to_string(shape), shape[i]));
    }
  }
  if (problems.empty() && !element_count(shape).ok()) problems.push_back(count_overflow(shape));
  return problems;
}

std::optional<Error> dtype_problem(DType dtype) {
  if (dtype_size(dtype) == 0) {
    return Error(ErrorCode::kMetaUnsupportedDataType,
                 fmt::format("data_type {} ({}) has no fixed element size and cannot be stored in `out`",
                             dtype_name(dtype), static_cast<int>(dtype)));
  }
  return std::nullopt;
}

Analysis analyse(std::string_view text) {
  Analysis result;
  if (text.size() > kMaxMetaBytes) {
    result.errors.emplace_back(ErrorCode::kMetaTooLarge,
                               fmt::format("meta is {} bytes, the limit is {}", text.size(), kMaxMetaBytes));
    return result;
  }
  proto::VariableMetaInfo message;
  CollectingErrors collector;
  pb::TextFormat::Parser parser;
  parser.AllowPartialMessage(true);  // a scalar may omit `shape`, as Python's parser allows
  parser.AllowUnknownField(true);    // reported as a warning below
  parser.RecordErrorsTo(&collector);
  bool parsed = parser.ParseFromString(std::string(text), &message);
  for (const auto& warning : collector.warnings) {
    result.warnings.emplace_back(ErrorCode::kMetaUnknownField, warning);
  }
  if (!parsed) {
    std::string detail = collector.errors.empty() ? "unparseable text" : collector.errors.front();
    // A closed proto2 enum rejects unknown numbers and names during parsing.
    bool bad_enum = detail.find("nknown enumeration value") != std::string::npos;
    result.errors.emplace_back(bad_enum ? ErrorCode::kMetaUnknownDataType : ErrorCode::kMetaSyntax,
                               bad_enum ? fmt::format("data_type is not a OneFlow DataType: {}", detail) : detail);
    return result;
  }
  Shape shape(message.shape().dim().begin(), message.shape().dim().end());
  for (auto& problem : shape_problems(shape)) result.errors.push_back(std::move(problem));
  if (!message.has_data_type()) {
    result.errors.emplace_back(ErrorCode::kMetaNoDataType, "no data_type field");
  } else if (auto problem = dtype_problem(static_cast<DType>(message.data_type()))) {
    result.errors.push_back(std::move(*problem));
  }
  if (result.errors.empty()) {
    auto meta = VariableMeta::make(static_cast<DType>(message.data_type()), std::move(shape));
    if (meta.ok()) {
      result.meta = std::move(meta).value();
    } else {
      result.errors.push_back(std::move(meta).error());
    }
  }
  return result;
}

}  // namespace

std::string shape_to_string(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Result<std::uint64_t> element_count(const Shape& shape) {
  std::uint64_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return Error(ErrorCode::kMetaNegativeDim,
                   fmt::format("dim {} of shape {} is {}, expected >= 0", i, shape_to_string(shape), shape[i]));
    }
  }
  for (std::int64_t dim : shape) {
    if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(dim), &count)) return count_overflow(shape);
  }
  return count;
}

Result<VariableMeta> VariableMeta::make(DType dtype, Shape shape) {
  if (!dtype_from_number(static_cast<std::int64_t>(dtype))) {
    return Error(ErrorCode::kMetaUnknownDataType,
                 fmt::format("data_type {} is not a OneFlow DataType", static_cast<int>(dtype)));
  }
  if (auto problem = dtype_problem(dtype)) return std::move(*problem);
  CKPT_ASSIGN_OR_RETURN(std::uint64_t count, ckpt::element_count(shape));
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, dtype_size(dtype), &bytes)) {
    return Error(ErrorCode::kMetaCountOverflow,
                 fmt::format("byte size of shape {} x {} bytes ({}) does not fit in 64 bits", shape_to_string(shape),
                             dtype_size(dtype), dtype_name(dtype)));
  }
  return VariableMeta(dtype, std::move(shape), count, bytes);
}

Result<VariableMeta> VariableMeta::parse(std::string_view text, std::vector<Error>* warnings) {
  Analysis analysis = analyse(text);
  if (!analysis.errors.empty()) return std::move(analysis.errors.front());
  if (warnings != nullptr) {
    for (auto& warning : analysis.warnings) warnings->push_back(std::move(warning));
  }
  return std::move(*analysis.meta);
}

std::vector<Error> VariableMeta::check(std::string_view text) {
  Analysis analysis = analyse(text);
  std::vector<Error> problems = std::move(analysis.errors);
  for (auto& warning : analysis.warnings) problems.push_back(std::move(warning));
  return problems;
}

std::string VariableMeta::to_text() const {
  proto::VariableMetaInfo message;
  auto* shape = message.mutable_shape();  // present even for a scalar: "shape {\n}\n"
  for (std::int64_t dim : shape_) shape->add_dim(dim);
  if (is_oneflow_dtype(dtype_)) message.set_data_type(static_cast<proto::DataType>(dtype_));
  std::string text;
  pb::TextFormat::PrintToString(message, &text);
  // ckpt's own types have no OneFlow enum value: named all the same (OneFlow writers refuse them).
  if (!is_oneflow_dtype(dtype_)) text += fmt::format("data_type: {}\n", dtype_name(dtype_));
  return text;
}

}  // namespace ckpt
