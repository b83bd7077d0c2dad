#include "ckpt/format/dtype.hpp"

#include <doctest/doctest.h>

using ckpt::DType;

TEST_CASE("the table has all 22 OneFlow numbers with their element sizes, then the 3 FP8 types") {
  auto table = ckpt::all_dtypes();
  REQUIRE(table.size() == 25);
  for (DType fp8 : {DType::kFloat8E4M3, DType::kFloat8E5M2, DType::kFloat8E8M0}) {
    CHECK(ckpt::dtype_size(fp8) == 1);
    CHECK_FALSE(ckpt::is_oneflow_dtype(fp8));
  }
  CHECK(ckpt::dtype_info(DType::kFloat8E4M3).safetensors == "F8_E4M3");
  CHECK(ckpt::dtype_info(DType::kFloat8E5M2).safetensors == "F8_E5M2");
  CHECK(ckpt::dtype_info(DType::kFloat8E8M0).safetensors == "F8_E8M0");
  CHECK(ckpt::is_oneflow_dtype(DType::kComplex128));
  CHECK(ckpt::dtype_size(DType::kFloat) == 4);
  CHECK(ckpt::dtype_size(DType::kDouble) == 8);
  CHECK(ckpt::dtype_size(DType::kFloat16) == 2);
  CHECK(ckpt::dtype_size(DType::kBFloat16) == 2);
  CHECK(ckpt::dtype_size(DType::kBool) == 1);
  CHECK(ckpt::dtype_size(DType::kInt128) == 16);
  CHECK(ckpt::dtype_size(DType::kComplex32) == 4);
  CHECK(ckpt::dtype_size(DType::kComplex128) == 16);
  // Not fixed-size: never guessed.
  CHECK(ckpt::dtype_size(DType::kInvalidDataType) == 0);
  CHECK(ckpt::dtype_size(DType::kOFRecord) == 0);
  CHECK(ckpt::dtype_size(DType::kTensorBuffer) == 0);
}

TEST_CASE("lookups by number, name and numpy descr") {
  CHECK(ckpt::dtype_from_number(2) == DType::kFloat);
  CHECK(ckpt::dtype_from_number(21) == DType::kComplex128);
  CHECK(ckpt::dtype_from_number(22) == DType::kFloat8E4M3);
  CHECK_FALSE(ckpt::dtype_from_number(25).has_value());
  CHECK_FALSE(ckpt::dtype_from_number(-1).has_value());
  CHECK(ckpt::dtype_from_name("kInt64") == DType::kInt64);
  CHECK_FALSE(ckpt::dtype_from_name("kMaxDataType").has_value());
  CHECK(ckpt::dtype_from_numpy("<f4") == DType::kFloat);
  CHECK(ckpt::dtype_from_numpy("|b1") == DType::kBool);
  CHECK(ckpt::dtype_from_numpy("|i1") == DType::kInt8);  // not kChar
  CHECK(ckpt::dtype_from_numpy("<c16") == DType::kComplex128);
  CHECK_FALSE(ckpt::dtype_from_numpy("|O").has_value());
  for (const auto& info : ckpt::all_dtypes()) {
    CHECK(ckpt::dtype_from_name(info.name) == info.dtype);
  }
}

TEST_CASE("parse_dtype: every common spelling, case aside") {
  using ckpt::DType;
  using ckpt::parse_dtype;
  for (const char* name : {"bf16", "bfloat16", "BF16", "torch.bfloat16", "kBFloat16", "BFloat16"}) {
    CHECK_MESSAGE(parse_dtype(name) == DType::kBFloat16, name);
  }
  for (const char* name : {"f32", "float32", "F32", "<f4", "fp32", "torch.float", "kFloat", "float", "np.float32"}) {
    CHECK_MESSAGE(parse_dtype(name) == DType::kFloat, name);
  }
  for (const char* name : {"fp16", "half", "f16", "float16", "<f2", "F16", "kFloat16"}) {
    CHECK_MESSAGE(parse_dtype(name) == DType::kFloat16, name);
  }
  // Without a byte-order mark a number after i/u is bits; with one, numpy's bytes.
  CHECK(parse_dtype("i8") == DType::kInt8);
  CHECK(parse_dtype("<i8") == DType::kInt64);
  CHECK(parse_dtype(">i8") == DType::kInt64);
  CHECK(parse_dtype("u8") == DType::kUInt8);
  CHECK(parse_dtype("|b1") == DType::kBool);
  CHECK(parse_dtype("torch.long") == DType::kInt64);
  CHECK(parse_dtype("f64") == DType::kDouble);
  CHECK(parse_dtype("<f8") == DType::kDouble);
  CHECK_FALSE(parse_dtype("float8").has_value());
  CHECK_FALSE(parse_dtype("").has_value());
  CHECK_FALSE(parse_dtype("kInvalidDataType").has_value());
  CHECK_FALSE(parse_dtype("<V2").has_value());
}
