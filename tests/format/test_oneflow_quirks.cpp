// What OneFlow itself writes beyond its format: a bfloat16 variable whose
// `out` holds float32 values (OneFlow 0.9, E480), read rounded to bfloat16.
#include "ckpt/format/snapshot.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cstring>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/validate.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using ckpt::testing::write_file;

namespace {

std::vector<std::byte> float_bytes(const std::vector<float>& values) {
  std::vector<std::byte> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// An E1 snapshot with one variable "w": meta kBFloat16 [count], `out` as given.
void write_bf16_snapshot(const fs::path& root, int count, const std::vector<std::byte>& out) {
  fs::create_directories(root / "w");
  write_file(root / "w" / "meta", "shape {\n  dim: " + std::to_string(count) + "\n}\ndata_type: kBFloat16\n");
  write_file(root / "w" / "out", out);
  write_file(root / "snapshot_done", "");
}

bool has_code(const ckpt::ValidationReport& report, ErrorCode code, ckpt::Severity severity) {
  for (const auto& issue : report.issues) {
    if (issue.code == code && issue.severity == severity && issue.variable == "w") return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a kBFloat16 out of float32 values reads as bfloat16, rounded to nearest even, with E480") {
  ckpt::testing::TempDir dir;
  // 1 + 2^-8 is a tie: even rounds down to 1.0; 1 + 3*2^-8 rounds up to 1 + 2^-6;
  // -2.5 is exact; the largest float rounds to bf16 Inf; NaN stays NaN.
  std::vector<float> values = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -2.5f, 0x1.fffffep127f,
                               std::bit_cast<float>(0x7fc00001u)};
  std::vector<std::uint16_t> expected = {0x3f80, 0x3f82, 0xc020, 0x7f80, 0x7fc0};
  write_bf16_snapshot(dir.path(), 5, float_bytes(values));

  auto report = ckpt::validate_snapshot(dir.path());
  CHECK(report.valid());
  CHECK(has_code(report, ErrorCode::kBf16StoredAsFloat32, ckpt::Severity::kWarning));
  CHECK_FALSE(has_code(report, ErrorCode::kDataSizeMismatch, ckpt::Severity::kError));

  auto reader = ckpt::open_checkpoint(dir.path());
  REQUIRE(reader.ok());
  const ckpt::TensorInfo* info = (*reader)->find("w");
  REQUIRE(info != nullptr);
  CHECK(info->meta.dtype() == ckpt::DType::kBFloat16);
  auto bytes = ckpt::testing::read_all(**reader, "w");
  REQUIRE(bytes.size() == 10);
  std::vector<std::uint16_t> got(5);
  std::memcpy(got.data(), bytes.data(), 10);
  CHECK(got == expected);

  // A read that starts and ends inside elements gives the same bytes.
  auto source = (*reader)->open("w");
  REQUIRE(source.ok());
  std::vector<std::byte> middle(5);
  REQUIRE((*source)->read_at(3, middle).ok());
  CHECK(std::equal(middle.begin(), middle.end(), bytes.begin() + 3));
  std::vector<std::byte> past(2);
  CHECK((*source)->read_at(9, past).error().code() == ErrorCode::kInvalidArgument);

  auto snapshot = ckpt::Snapshot::open(dir.path());
  REQUIRE(snapshot.ok());
  std::vector<std::byte> whole(10);
  REQUIRE(snapshot->read("w", whole).ok());
  CHECK(whole == bytes);
}

TEST_CASE("a kBFloat16 out of any other wrong size is still E401") {
  for (std::size_t size : {6u, 12u, 24u}) {
    ckpt::testing::TempDir dir;
    write_bf16_snapshot(dir.path(), 4, ckpt::testing::random_bytes(size, 3));
    auto report = ckpt::validate_snapshot(dir.path());
    CHECK(has_code(report, ErrorCode::kDataSizeMismatch, ckpt::Severity::kError));
    CHECK_FALSE(has_code(report, ErrorCode::kBf16StoredAsFloat32, ckpt::Severity::kWarning));
    CHECK(ckpt::open_checkpoint(dir.path()).error().code() == ErrorCode::kDataSizeMismatch);
  }
}
