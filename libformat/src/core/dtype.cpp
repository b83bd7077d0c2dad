#include "ckpt/format/dtype.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <utility>

namespace ckpt {
namespace {

// Indexed by the enum number. Sizes follow OneFlow's GetSizeOfDataType;
// kOFRecord and kTensorBuffer are C++ objects, not element bytes.
constexpr std::array<DTypeInfo, 25> kTable = {{
    {DType::kInvalidDataType, "kInvalidDataType", 0, "", "", 0},
    {DType::kChar, "kChar", 1, "|i1", "I8", 1},
    {DType::kFloat, "kFloat", 4, "<f4", "F32", 4},
    {DType::kDouble, "kDouble", 8, "<f8", "F64", 8},
    {DType::kInt8, "kInt8", 1, "|i1", "I8", 1},
    {DType::kInt32, "kInt32", 4, "<i4", "I32", 4},
    {DType::kInt64, "kInt64", 8, "<i8", "I64", 8},
    {DType::kUInt8, "kUInt8", 1, "|u1", "U8", 1},
    {DType::kOFRecord, "kOFRecord", 0, "", "", 0},
    {DType::kFloat16, "kFloat16", 2, "<f2", "F16", 2},
    {DType::kTensorBuffer, "kTensorBuffer", 0, "", "", 0},
    {DType::kBFloat16, "kBFloat16", 2, "", "BF16", 2},
    {DType::kBool, "kBool", 1, "|b1", "BOOL", 1},
    {DType::kUInt16, "kUInt16", 2, "<u2", "U16", 2},
    {DType::kUInt32, "kUInt32", 4, "<u4", "U32", 4},
    {DType::kUInt64, "kUInt64", 8, "<u8", "U64", 8},
    {DType::kUInt128, "kUInt128", 16, "", "", 16},
    {DType::kInt16, "kInt16", 2, "<i2", "I16", 2},
    {DType::kInt128, "kInt128", 16, "", "", 16},
    {DType::kComplex32, "kComplex32", 4, "", "", 2},
    {DType::kComplex64, "kComplex64", 8, "<c8", "C64", 4},
    {DType::kComplex128, "kComplex128", 16, "<c16", "", 8},
    // numpy has no FP8 descr it can load (ml_dtypes writes '<V1'/'<f1').
    {DType::kFloat8E4M3, "kFloat8E4M3", 1, "", "F8_E4M3", 1},
    {DType::kFloat8E5M2, "kFloat8E5M2", 1, "", "F8_E5M2", 1},
    {DType::kFloat8E8M0, "kFloat8E8M0", 1, "", "F8_E8M0", 1},
}};

constexpr bool table_in_enum_order() {
  for (std::size_t i = 0; i < kTable.size(); ++i) {
    if (static_cast<std::size_t>(kTable[i].dtype) != i) return false;
  }
  return true;
}
static_assert(table_in_enum_order(), "kTable must be indexed by the DType number");

}  // namespace

std::span<const DTypeInfo> all_dtypes() { return kTable; }

const DTypeInfo& dtype_info(DType dtype) {
  auto index = static_cast<std::size_t>(dtype);
  return index < kTable.size() ? kTable[index] : kTable[0];
}

std::optional<DType> dtype_from_number(std::int64_t number) {
  if (number < 0 || number >= static_cast<std::int64_t>(kTable.size())) return std::nullopt;
  return kTable[static_cast<std::size_t>(number)].dtype;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& info : kTable) {
    if (info.name == name) return info.dtype;
  }
  return std::nullopt;
}

std::optional<DType> dtype_from_numpy(std::string_view descr) {
  // numpy writes one-byte types with '|'; '<' and '=' are accepted too.
  // kInt8 wins over kChar for i1: both are int8 to numpy.
  if (descr.size() >= 2 && (descr[0] == '<' || descr[0] == '|' || descr[0] == '=')) descr.remove_prefix(1);
  for (const auto& info : kTable) {
    if (info.dtype == DType::kChar || info.numpy_descr.empty()) continue;
    if (info.numpy_descr.substr(1) == descr) return info.dtype;
  }
  return std::nullopt;
}

namespace {

// Lower-case spellings beyond OneFlow's names and numpy's descrs.
constexpr std::array<std::pair<std::string_view, DType>, 66> kAliases = {{
    {"float32", DType::kFloat},      {"float", DType::kFloat},        {"f32", DType::kFloat},
    {"fp32", DType::kFloat},         {"f4", DType::kFloat},           {"single", DType::kFloat},
    {"float64", DType::kDouble},     {"double", DType::kDouble},      {"f64", DType::kDouble},
    {"fp64", DType::kDouble},        {"f8", DType::kDouble},          {"float16", DType::kFloat16},
    {"half", DType::kFloat16},       {"f16", DType::kFloat16},        {"fp16", DType::kFloat16},
    {"f2", DType::kFloat16},         {"bfloat16", DType::kBFloat16},  {"bf16", DType::kBFloat16},
    {"int8", DType::kInt8},          {"i8", DType::kInt8},            {"i1", DType::kInt8},
    {"uint8", DType::kUInt8},        {"u8", DType::kUInt8},           {"u1", DType::kUInt8},
    {"byte", DType::kUInt8},         {"int16", DType::kInt16},        {"i16", DType::kInt16},
    {"i2", DType::kInt16},           {"short", DType::kInt16},        {"int32", DType::kInt32},
    {"i32", DType::kInt32},          {"i4", DType::kInt32},           {"int", DType::kInt32},
    {"int64", DType::kInt64},        {"i64", DType::kInt64},          {"long", DType::kInt64},
    {"uint16", DType::kUInt16},      {"u16", DType::kUInt16},         {"u2", DType::kUInt16},
    {"uint32", DType::kUInt32},      {"u32", DType::kUInt32},         {"u4", DType::kUInt32},
    {"uint64", DType::kUInt64},      {"u64", DType::kUInt64},         {"bool", DType::kBool},
    {"b1", DType::kBool},            {"complex32", DType::kComplex32}, {"chalf", DType::kComplex32},
    {"complex64", DType::kComplex64}, {"cfloat", DType::kComplex64},  {"c64", DType::kComplex64},
    {"complex128", DType::kComplex128}, {"cdouble", DType::kComplex128}, {"c128", DType::kComplex128},
    {"f8_e4m3", DType::kFloat8E4M3}, {"float8_e4m3fn", DType::kFloat8E4M3}, {"e4m3", DType::kFloat8E4M3},
    {"fp8_e4m3", DType::kFloat8E4M3}, {"f8_e5m2", DType::kFloat8E5M2}, {"float8_e5m2", DType::kFloat8E5M2},
    {"e5m2", DType::kFloat8E5M2},   {"fp8_e5m2", DType::kFloat8E5M2}, {"f8_e8m0", DType::kFloat8E8M0},
    {"float8_e8m0fnu", DType::kFloat8E8M0}, {"e8m0", DType::kFloat8E8M0}, {"fp8_e8m0", DType::kFloat8E8M0},
}};

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

std::optional<DType> parse_dtype(std::string_view spelling) {
  std::string text = lower(spelling);
  std::string_view name = text;
  for (std::string_view prefix : {"torch.", "numpy.", "np.", "oneflow.", "flow."}) {
    if (name.starts_with(prefix)) {
      name.remove_prefix(prefix.size());
      break;
    }
  }
  if (name.size() >= 2 && (name[0] == '<' || name[0] == '>' || name[0] == '|' || name[0] == '=')) {
    // The byte order says nothing about the type.
    std::string little_endian(name);
    little_endian[0] = '<';
    return dtype_from_numpy(little_endian);
  }
  for (const auto& info : kTable) {
    if (info.dtype != DType::kInvalidDataType && lower(info.name) == name) return info.dtype;
  }
  for (const auto& [alias, dtype] : kAliases) {
    if (alias == name) return dtype;
  }
  return std::nullopt;
}

}  // namespace ckpt
