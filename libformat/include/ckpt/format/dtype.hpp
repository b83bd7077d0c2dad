// OneFlow's DataType enum and what each type means to the formats we convert
// to. The numbers are OneFlow's (data_type.proto) and never change. After
// them come types OneFlow does not have (FP8), numbered by ckpt: the OneFlow
// formats refuse them (is_oneflow_dtype), the others carry them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ckpt {

enum class DType : std::int32_t {
  kInvalidDataType = 0,
  kChar = 1,
  kFloat = 2,
  kDouble = 3,
  kInt8 = 4,
  kInt32 = 5,
  kInt64 = 6,
  kUInt8 = 7,
  kOFRecord = 8,
  kFloat16 = 9,
  kTensorBuffer = 10,
  kBFloat16 = 11,
  kBool = 12,
  kUInt16 = 13,
  kUInt32 = 14,
  kUInt64 = 15,
  kUInt128 = 16,
  kInt16 = 17,
  kInt128 = 18,
  kComplex32 = 19,
  kComplex64 = 20,
  kComplex128 = 21,
  // Not OneFlow's: the OCP 8-bit floats (safetensors F8_E4M3/F8_E5M2/F8_E8M0,
  // torch float8_e4m3fn/float8_e5m2/float8_e8m0fnu).
  kFloat8E4M3 = 22,  // 1 sign, 4 exponent, 3 mantissa bits; no infinity, S.1111.111 is NaN
  kFloat8E5M2 = 23,  // 1 sign, 5 exponent, 2 mantissa bits; IEEE-like infinities and NaNs
  kFloat8E8M0 = 24,  // 8 exponent bits, no sign: 2^(e-127); 0xFF is NaN
};

struct DTypeInfo {
  DType dtype;
  std::string_view name;          // OneFlow's enum name, "kFloat"
  std::size_t size;               // bytes per element; 0 when not fixed-size
  std::string_view numpy_descr;   // little-endian numpy descr, "<f4"; empty if numpy has none
  std::string_view safetensors;   // safetensors dtype, "F32"; empty if none
  // Scalar width to swap when converting byte order; complex types swap each half.
  std::size_t swap_unit;
};

// Every OneFlow type, in enum order.
std::span<const DTypeInfo> all_dtypes();

const DTypeInfo& dtype_info(DType dtype);
inline std::string_view dtype_name(DType dtype) { return dtype_info(dtype).name; }
inline std::size_t dtype_size(DType dtype) { return dtype_info(dtype).size; }

// Whether OneFlow's DataType enum has `dtype` (the FP8 types are ckpt's).
inline bool is_oneflow_dtype(DType dtype) { return dtype <= DType::kComplex128; }

std::optional<DType> dtype_from_number(std::int64_t number);
std::optional<DType> dtype_from_name(std::string_view name);  // "kFloat"
std::optional<DType> dtype_from_numpy(std::string_view descr);  // "<f4", "|b1"

// Any common spelling of a type, for command lines and shape tables, case
// aside: OneFlow's ("kBFloat16"), torch's ("torch.bfloat16", "half", "long"),
// numpy's ("float32", "<f4", "|b1"), safetensors' ("BF16", "F32") and the
// short ones ("bf16", "fp16", "f32", "i64", "u8"). Without a byte-order mark
// a number after i/u/f is a width in bits ("i8" is int8, as in safetensors),
// except the numpy byte counts that cannot be bits ("f4", "i2", "u1");
// with one ("<i8") it is numpy's byte count (int64).
std::optional<DType> parse_dtype(std::string_view spelling);

inline std::string_view format_as(DType dtype) { return dtype_name(dtype); }

}  // namespace ckpt
