#include "ckpt/format/meta.hpp"

#include <algorithm>

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

// VariableMetaInfo nests one message (`shape`); OneFlow never writes deeper.
// libprotobuf skips unknown fields recursively without a bound, so nesting
// is measured here before the text reaches it.
constexpr std::size_t kMaxMetaNesting = 32;

// The deepest `{`/`<` nesting outside strings and comments, and where it
// first passes `limit` (nullopt while it stays within).
std::optional<std::size_t> nesting_over(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  char quote = 0;  // inside a string opened by this character
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote != 0) {
      if (c == '\\') {
        ++i;
      } else if (c == quote || c == '\n') {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      i = std::min(text.find('\n', i), text.size());
    } else if (c == '{' || c == '<') {
      if (++depth > limit) return i;
    } else if ((c == '}' || c == '>') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<VariableMeta> parse_meta(std::string_view text, ProblemSink& problems) {
  if (text.size() > kMaxMetaBytes) {
    problems.error(Error(ErrorCode::kMetaTooLarge, fmt::format("meta is {} bytes, the limit is {}", text.size(), kMaxMetaBytes)));
    return std::nullopt;
  }
  if (auto at = nesting_over(text, kMaxMetaNesting)) {
    problems.error(Error(ErrorCode::kMetaSyntax,
                         fmt::format("messages nested deeper than {} levels (at byte {}); OneFlow writes one",
                                     kMaxMetaNesting, *at)));
    return std::nullopt;
  }
  proto::VariableMetaInfo message;
  CollectingErrors collector;
  pb::TextFormat::Parser parser;
  parser.AllowPartialMessage(true);  // a scalar may omit `shape`, as Python's parser allows
  parser.AllowUnknownField(true);    // reported as a warning below
  parser.RecordErrorsTo(&collector);
  parser.SetRecursionLimit(static_cast<int>(kMaxMetaNesting));
  bool parsed = parser.ParseFromString(std::string(text), &message);
  std::vector<Error> errors;
  std::optional<VariableMeta> meta;
  if (!parsed) {
    std::string detail = collector.errors.empty() ? "unparseable text" : collector.errors.front();
    // A closed proto2 enum rejects unknown numbers and names during parsing.
    bool bad_enum = detail.find("nknown enumeration value") != std::string::npos;
    errors.emplace_back(bad_enum ? ErrorCode::kMetaUnknownDataType : ErrorCode::kMetaSyntax,
                        bad_enum ? fmt::format("data_type is not a OneFlow DataType: {}", detail) : detail);
  } else {
    Shape shape(message.shape().dim().begin(), message.shape().dim().end());
    errors = shape_problems(shape);
    auto dtype = static_cast<DType>(message.data_type());
    if (!message.has_data_type()) {
      errors.emplace_back(ErrorCode::kMetaNoDataType, "no data_type field");
    } else if (auto storable = check_fixed_size(dtype); !storable.ok()) {
      errors.push_back(std::move(storable).error());
    } else if (errors.empty()) {
      auto made = VariableMeta::make(dtype, std::move(shape));
      if (made.ok()) {
        meta = std::move(made).value();
      } else {
        errors.push_back(std::move(made).error());
      }
    }
  }
  // Errors first, then the unknown fields, as the validator lists them.
  for (Error& error : errors) {
    if (!problems.error(std::move(error))) return std::nullopt;
  }
  for (const auto& warning : collector.warnings) {
    if (!problems.warning(Error(ErrorCode::kMetaUnknownField, warning))) return std::nullopt;
  }
  return meta;
}

Result<VariableMeta> parse_meta(std::string_view text) {
  FailFast problems;
  auto meta = parse_meta(text, problems);
  CKPT_TRY(problems.status());
  return std::move(*meta);
}

std::string meta_to_text(const VariableMeta& meta) {
  proto::VariableMetaInfo message;
  auto* shape = message.mutable_shape();  // present even for a scalar: "shape {\n}\n"
  for (std::int64_t dim : meta.shape()) shape->add_dim(dim);
  if (is_oneflow_dtype(meta.dtype())) message.set_data_type(static_cast<proto::DataType>(meta.dtype()));
  std::string text;
  pb::TextFormat::PrintToString(message, &text);
  // ckpt's own types have no OneFlow enum value: named all the same (OneFlow writers refuse them).
  if (!is_oneflow_dtype(meta.dtype())) text += fmt::format("data_type: {}\n", dtype_name(meta.dtype()));
  return text;
}

}  // namespace ckpt
