// Writers refuse up front what their readers would refuse (spec/writing.md,
// "What a writer refuses"), and stay usable: the audit's cases, one by one.
#include "ckpt/format/checkpoint.hpp"

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;

namespace {

ckpt::Status add_bytes(ckpt::CheckpointWriter& writer, std::string_view name, const ckpt::Shape& shape) {
  CKPT_ASSIGN_OR_RETURN(auto meta, ckpt::VariableMeta::make(ckpt::DType::kUInt8, shape));
  std::vector<std::byte> bytes(meta.byte_size(), std::byte{5});
  return writer.add(name, meta, ckpt::MemorySource(bytes));
}

ErrorCode refusal(const ckpt::Status& status) {
  REQUIRE_FALSE(status.ok());
  return status.error().code();
}

}  // namespace

TEST_CASE("a name that is not UTF-8 or empty never reaches a pickle; the writer goes on") {
  ckpt::testing::TempDir tmp;
  for (std::string_view format : {"torch", "oneflow-pickle"}) {
    CAPTURE(format);
    const fs::path path = tmp / std::string(format);
    auto writer = ckpt::create_checkpoint(path, format);
    REQUIRE(writer.ok());
    CHECK(refusal(add_bytes(**writer, "\xff\xfe", {2})) == ErrorCode::kUnstorableName);
    CHECK(refusal(add_bytes(**writer, "", {2})) == ErrorCode::kUnstorableName);
    REQUIRE(add_bytes(**writer, "kept", {2}).ok());
    REQUIRE((*writer)->commit().ok());
    auto reader = ckpt::open_checkpoint(path);
    REQUIRE(reader.ok());
    CHECK(ckpt::testing::names_of(**reader) == std::vector<std::string>{"kept"});
    auto nested = ckpt::create_checkpoint(tmp / (std::string(format) + "-nested"), format);
    REQUIRE(nested.ok());
    CHECK(refusal((*nested)->set_nesting({"model\xc3"})) == ErrorCode::kUnstorableName);
  }
  auto npz = ckpt::create_checkpoint(tmp / "a.npz", "npz");
  REQUIRE(npz.ok());
  CHECK(refusal(add_bytes(**npz, "\xff\xfe", {2})) == ErrorCode::kUnstorableName);
  CHECK(refusal(add_bytes(**npz, "a\\b", {2})) == ErrorCode::kZipUnsafeName);  // the npz reader's rule
  REQUIRE(add_bytes(**npz, "kept", {2}).ok());
  REQUIRE((*npz)->commit().ok());
  CHECK(ckpt::open_checkpoint(tmp / "a.npz").ok());
}

TEST_CASE("a rank-10,000 tensor: no meta over 64 KiB, no npy header numpy refuses") {
  ckpt::testing::TempDir tmp;
  const ckpt::Shape huge_rank(10000, 1);
  for (std::string_view format : {"oneflow", "oneflow-pickle", "npy", "npz"}) {
    CAPTURE(format);
    auto writer = ckpt::create_checkpoint(tmp / std::string(format), format);
    REQUIRE(writer.ok());
    auto refused = add_bytes(**writer, "deep", huge_rank);
    CHECK(refusal(refused) == ErrorCode::kOverFormatLimit);
    REQUIRE(add_bytes(**writer, "flat", {3}).ok());
    REQUIRE((*writer)->commit().ok());
    CHECK(ckpt::open_checkpoint(tmp / std::string(format), {.format = std::string(format)}).ok());
  }
  // Formats without such limits store it, and read it back.
  for (std::string_view format : {"torch", "safetensors"}) {
    CAPTURE(format);
    auto writer = ckpt::create_checkpoint(tmp / std::string(format), format);
    REQUIRE(writer.ok());
    REQUIRE(add_bytes(**writer, "deep", huge_rank).ok());
    REQUIRE((*writer)->commit().ok());
    auto reader = ckpt::open_checkpoint(tmp / std::string(format), {.format = std::string(format)});
    REQUIRE(reader.ok());
    CHECK((*reader)->find("deep")->meta.shape().size() == 10000);
  }
}

TEST_CASE("an npy directory with nothing in it is not published") {
  ckpt::testing::TempDir tmp;
  auto writer = ckpt::create_checkpoint(tmp / "empty", "npy");
  REQUIRE(writer.ok());
  CHECK(refusal((*writer)->commit()) == ErrorCode::kNotACheckpoint);
  CHECK_FALSE(fs::exists(tmp / "empty"));
}
