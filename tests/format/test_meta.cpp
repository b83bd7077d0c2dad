#include "ckpt/format/meta.hpp"

#include <doctest/doctest.h>

#include <limits>

using ckpt::DType;
using ckpt::ErrorCode;
using ckpt::VariableMeta;

namespace {

VariableMeta make(DType dtype, ckpt::Shape shape) {
  auto meta = VariableMeta::make(dtype, std::move(shape));
  REQUIRE(meta.ok());
  return *meta;
}

ErrorCode parse_error(std::string_view text) {
  auto meta = ckpt::parse_meta(text);
  REQUIRE_FALSE(meta.ok());
  return meta.error().code();
}

}  // namespace

TEST_CASE("meta text is byte-identical to OneFlow's") {
  struct Case {
    DType dtype;
    ckpt::Shape shape;
    std::string_view text;
  };
  const Case cases[] = {
      {DType::kFloat, {128, 784}, "shape {\n  dim: 128\n  dim: 784\n}\ndata_type: kFloat\n"},
      {DType::kInt64, {}, "shape {\n}\ndata_type: kInt64\n"},
      {DType::kFloat, {0}, "shape {\n  dim: 0\n}\ndata_type: kFloat\n"},
      {DType::kFloat, {16, 3, 3, 3}, "shape {\n  dim: 16\n  dim: 3\n  dim: 3\n  dim: 3\n}\ndata_type: kFloat\n"},
      {DType::kUInt8, {4294967296, 2}, "shape {\n  dim: 4294967296\n  dim: 2\n}\ndata_type: kUInt8\n"},
      {DType::kBool, {1, 0, 7}, "shape {\n  dim: 1\n  dim: 0\n  dim: 7\n}\ndata_type: kBool\n"},
      {DType::kComplex128, {2}, "shape {\n  dim: 2\n}\ndata_type: kComplex128\n"},
      {DType::kBFloat16, {3}, "shape {\n  dim: 3\n}\ndata_type: kBFloat16\n"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    VariableMeta meta = make(c.dtype, c.shape);
    CHECK(ckpt::meta_to_text(meta) == c.text);
    auto back = ckpt::parse_meta(ckpt::meta_to_text(meta));
    REQUIRE(back.ok());
    CHECK(*back == meta);
  }
}

TEST_CASE("every fixed-size dtype prints its enum name and round-trips") {
  for (const auto& info : ckpt::all_dtypes()) {
    if (info.size == 0) continue;
    VariableMeta meta = make(info.dtype, {2, 3});
    CHECK(meta.byte_size() == 6 * info.size);
    CHECK(ckpt::meta_to_text(meta) == "shape {\n  dim: 2\n  dim: 3\n}\ndata_type: " + std::string(info.name) + "\n");
  }
}

TEST_CASE("parsing is as tolerant as OneFlow's Python reader") {
  auto one_line = ckpt::parse_meta("shape { dim: 3 dim: 4 } data_type: kDouble");
  REQUIRE(one_line.ok());
  CHECK(one_line->shape() == ckpt::Shape{3, 4});
  CHECK(one_line->dtype() == DType::kDouble);

  auto by_number = ckpt::parse_meta("data_type: 2\nshape: { dim: 5 }\n");  // field order free, enum by number
  REQUIRE(by_number.ok());
  CHECK(by_number->dtype() == DType::kFloat);
  CHECK(by_number->element_count() == 5);

  auto angle = ckpt::parse_meta("# written by hand\nshape < dim: 1 >  # trailing comment\n data_type:kInt8");
  REQUIRE(angle.ok());
  CHECK(angle->byte_size() == 1);

  auto no_shape = ckpt::parse_meta("data_type: kInt64\n");  // a scalar
  REQUIRE(no_shape.ok());
  CHECK(no_shape->shape().empty());
  CHECK(no_shape->byte_size() == 8);

  ckpt::FailFast problems;
  auto unknown_field = ckpt::parse_meta("shape { dim: 2 }\nquant_info: 4\ndata_type: kFloat\n", problems);
  REQUIRE(unknown_field.has_value());
  CHECK(unknown_field->byte_size() == 8);
  CHECK_FALSE(problems.failed());
  REQUIRE(problems.warnings().size() == 1);
  CHECK(problems.warnings()[0].code() == ErrorCode::kMetaUnknownField);
  CHECK(problems.warnings()[0].message().find("quant_info") != std::string::npos);
}

// Unknown fields nested `x{x{...}}`: libprotobuf skips them recursively, so
// deep nesting used to overflow the stack (SIGSEGV) inside TextFormat.
std::string nested_unknown_fields(std::size_t depth, char open, char close) {
  std::string text = "data_type: kFloat\n";
  for (std::size_t i = 0; i < depth; ++i) (text += 'x') += open;
  text.append(depth, close);
  return text;
}

TEST_CASE("deeply nested unknown fields are a syntax error, not a stack overflow") {
  for (auto brackets : {std::pair{'{', '}'}, std::pair{'<', '>'}}) {
    const char open = brackets.first, close = brackets.second;  // clang can't capture bindings
    CAPTURE(open);
    // Within the 64 KiB cap: the nesting limit refuses it.
    std::string within_cap = nested_unknown_fields(21'000, open, close);
    REQUIRE(within_cap.size() <= ckpt::kMaxMetaBytes);
    auto meta = ckpt::parse_meta(within_cap);
    REQUIRE_FALSE(meta.ok());
    CHECK(meta.error().code() == ErrorCode::kMetaSyntax);
    CHECK(meta.error().message().find("nested deeper than") != std::string::npos);
    ckpt::CollectAll collected;
    CHECK_FALSE(ckpt::parse_meta(within_cap, collected).has_value());
    REQUIRE_FALSE(collected.issues().empty());
    CHECK(collected.issues().front().code == ErrorCode::kMetaSyntax);
    // 100k deep is over the size cap: refused before parsing.
    CHECK(parse_error(nested_unknown_fields(100'000, open, close)) == ErrorCode::kMetaTooLarge);
  }
  // Braces inside strings and comments do not count; shallow unknown messages still parse.
  ckpt::CollectAll warnings;
  auto shallow = ckpt::parse_meta("shape { dim: 2 }\nx { y { z: \"{{{{\" } } # {{{{\ndata_type: kFloat\n", warnings);
  REQUIRE(shallow.has_value());
  CHECK(shallow->byte_size() == 8);
}

TEST_CASE("each kind of bad meta has its own code") {
  CHECK(parse_error("shape { dim: x }\ndata_type: kFloat\n") == ErrorCode::kMetaSyntax);
  CHECK(parse_error("\x89PNG\r\n\x1a\n garbage") == ErrorCode::kMetaSyntax);
  CHECK(parse_error("shape { dim: 2 }\ndata_type: kFloat\ndata_type: kFloat\n") == ErrorCode::kMetaSyntax);
  CHECK(parse_error("shape { dim: 2 }\ndata_type: kFloat128\n") == ErrorCode::kMetaUnknownDataType);
  CHECK(parse_error("shape { dim: 2 }\ndata_type: 99\n") == ErrorCode::kMetaUnknownDataType);
  CHECK(parse_error("shape { dim: 2 }\n") == ErrorCode::kMetaNoDataType);
  CHECK(parse_error("shape { dim: -1 }\ndata_type: kFloat\n") == ErrorCode::kMetaNegativeDim);
  CHECK(parse_error("shape { dim: 4294967296 dim: 4294967296 }\ndata_type: kFloat\n") == ErrorCode::kMetaCountOverflow);
  // The element count fits, the byte count does not.
  CHECK(parse_error("shape { dim: 4611686018427387904 }\ndata_type: kFloat\n") == ErrorCode::kMetaCountOverflow);
  CHECK(parse_error("shape { dim: 2 }\ndata_type: kOFRecord\n") == ErrorCode::kMetaUnsupportedDataType);
  CHECK(parse_error("shape { dim: 2 }\ndata_type: kTensorBuffer\n") == ErrorCode::kMetaUnsupportedDataType);
  CHECK(parse_error("shape { dim: 2 }\ndata_type: kInvalidDataType\n") == ErrorCode::kMetaUnsupportedDataType);
  CHECK(parse_error(std::string(ckpt::kMaxMetaBytes + 1, ' ')) == ErrorCode::kMetaTooLarge);
}

TEST_CASE("a collecting sink gets every problem, not only the first") {
  ckpt::CollectAll problems;
  CHECK_FALSE(ckpt::parse_meta("shape { dim: -3 dim: 4 dim: -1 }\nextra: 1\n", problems).has_value());
  std::vector<ErrorCode> codes;
  std::vector<ckpt::Severity> severities;
  for (const auto& issue : problems.issues()) {
    codes.push_back(issue.code);
    severities.push_back(issue.severity);
  }
  CHECK(codes == std::vector<ErrorCode>{ErrorCode::kMetaNegativeDim, ErrorCode::kMetaNegativeDim,
                                        ErrorCode::kMetaNoDataType, ErrorCode::kMetaUnknownField});
  CHECK(severities.back() == ckpt::Severity::kWarning);
  CHECK(problems.issues()[0].message.find("dim 0") != std::string::npos);
  CHECK(problems.issues()[1].message.find("dim 2") != std::string::npos);

  ckpt::CollectAll clean;
  CHECK(ckpt::parse_meta("shape {\n  dim: 1\n}\ndata_type: kFloat\n", clean).has_value());
  CHECK(clean.issues().empty());

  // Fail-fast: the same text stops at its first error.
  ckpt::FailFast first;
  CHECK_FALSE(ckpt::parse_meta("shape { dim: -3 dim: 4 dim: -1 }\nextra: 1\n", first).has_value());
  CHECK(first.status().error().message().find("dim 0") != std::string::npos);
  CHECK(first.warnings().empty());
}

TEST_CASE("make() refuses what parse() refuses") {
  CHECK(VariableMeta::make(DType::kFloat, {-2}).error().code() == ErrorCode::kMetaNegativeDim);
  CHECK(VariableMeta::make(DType::kOFRecord, {2}).error().code() == ErrorCode::kMetaUnsupportedDataType);
  CHECK(VariableMeta::make(static_cast<DType>(40), {2}).error().code() == ErrorCode::kMetaUnknownDataType);
  auto max = std::numeric_limits<std::int64_t>::max();
  CHECK(VariableMeta::make(DType::kInt8, {max, 3}).error().code() == ErrorCode::kMetaCountOverflow);
  CHECK(make(DType::kInt8, {max}).byte_size() == static_cast<std::uint64_t>(max));
}
