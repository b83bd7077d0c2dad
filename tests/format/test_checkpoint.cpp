#include "ckpt/format/checkpoint.hpp"

#include <doctest/doctest.h>

#include <algorithm>

#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;

namespace {

fs::path real(std::string_view name) { return ckpt::testing::fixtures_root() / "oneflow-real" / name; }

constexpr std::string_view kLazyShapes = R"({
  "Dense_5-bias": {"dtype": "kFloat", "shape": [512]},
  "Dense_5-weight": {"dtype": "kFloat", "shape": [512, 784]},
  "Dense_6-bias": {"dtype": "kFloat", "shape": [10]},
  "Dense_6-weight": {"dtype": "kFloat", "shape": [10, 512]},
  "System-Train-TrainStep-train_job": {"dtype": "kInt64", "shape": [1]}
})";

}  // namespace

TEST_CASE("a OneFlow snapshot opens through the generic interface") {
  CHECK(ckpt::detect_format(real("models_mobilenetv3_legacy_eager")).value() == "oneflow");
  auto reader = ckpt::open_checkpoint(real("models_mobilenetv3_legacy_eager"));
  REQUIRE(reader.ok());
  CHECK((*reader)->format_name() == "oneflow");
  CHECK((*reader)->tensors().size() == 210);
  const auto* bias = (*reader)->find("classifier.3.bias");
  REQUIRE(bias != nullptr);
  auto source = (*reader)->open(bias->name);
  REQUIRE(source.ok());
  CHECK((*source)->size() == bias->meta.byte_size());
  CHECK((*reader)->open("nope").error().code() == ErrorCode::kUnknownVariable);
}

TEST_CASE("an L0 snapshot needs a shape table, and the table must match the bytes") {
  auto path = real("doc_lazy_legacy_mlp_models_1");
  auto without = ckpt::open_checkpoint(path);
  REQUIRE_FALSE(without.ok());
  CHECK(without.error().code() == ErrorCode::kMetaMissing);
  CHECK(without.error().describe().find("shape table") != std::string::npos);

  auto table = ckpt::parse_shape_table(kLazyShapes);
  REQUIRE(table.ok());
  ckpt::OpenOptions options;
  options.shapes = &*table;
  auto with = ckpt::open_checkpoint(path, options);
  REQUIRE(with.ok());
  CHECK((*with)->find("Dense_5-weight")->meta.shape() == ckpt::Shape{512, 784});

  auto wrong = ckpt::parse_shape_table(R"({"Dense_5-bias": {"dtype": "kDouble", "shape": [512]}})");
  REQUIRE(wrong.ok());
  options.shapes = &*wrong;
  auto mismatch = ckpt::open_checkpoint(path, options);
  REQUIRE_FALSE(mismatch.ok());
  CHECK(mismatch.error().code() == ErrorCode::kDataSizeMismatch);
  CHECK(mismatch.error().variable() == "Dense_5-bias");
}

TEST_CASE("shape tables are checked") {
  CHECK(ckpt::parse_shape_table("{").error().code() == ErrorCode::kInvalidArgument);
  CHECK(ckpt::parse_shape_table("[]").error().code() == ErrorCode::kInvalidArgument);
  auto bad_dtype = ckpt::parse_shape_table(R"({"w": {"dtype": "float32", "shape": [1]}})");
  CHECK(bad_dtype.error().variable() == "w");
  CHECK(ckpt::parse_shape_table(R"({"w": {"dtype": "kFloat", "shape": [1.5]}})").error().code() ==
        ErrorCode::kInvalidArgument);
  CHECK(ckpt::parse_shape_table(R"({"w": {"dtype": "kFloat", "shape": [-1]}})").error().code() ==
        ErrorCode::kMetaNegativeDim);
}

TEST_CASE("writers come from the same registry") {
  ckpt::testing::TempDir dir;
  auto writer = ckpt::create_checkpoint(dir / "out", "oneflow");
  REQUIRE(writer.ok());
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt32, {2});
  REQUIRE(meta.ok());
  std::vector<std::int32_t> values = {7, -7};
  REQUIRE((*writer)->add("v", *meta, ckpt::MemorySource(std::as_bytes(std::span(values)))).ok());
  REQUIRE((*writer)->commit().ok());
  auto reader = ckpt::open_checkpoint(dir / "out");
  REQUIRE(reader.ok());
  auto source = (*reader)->open("v");
  REQUIRE(source.ok());
  std::vector<std::int32_t> back(2);
  REQUIRE((*source)->read_at(0, std::as_writable_bytes(std::span(back))).ok());
  CHECK(back == values);

  CHECK(ckpt::create_checkpoint(dir / "x", "hdf5").error().code() == ErrorCode::kInvalidArgument);
  ckpt::testing::write_file(dir / "file.txt", "hello");
  CHECK(ckpt::detect_format(dir / "file.txt").error().code() == ErrorCode::kNotACheckpoint);
  CHECK(ckpt::detect_format(dir / "missing").error().code() == ErrorCode::kNotFound);
}

TEST_CASE("a writer whose add failed while writing refuses to commit, in every format") {
  for (std::string_view format : ckpt::checkpoint_formats()) {
    CAPTURE(format);
    ckpt::testing::TempDir dir;
    auto writer = ckpt::create_checkpoint(dir / "out", format);
    REQUIRE(writer.ok());
    auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, {4});
    REQUIRE(meta.ok());
    std::vector<std::byte> bytes(16);
    REQUIRE((*writer)->add("good", *meta, ckpt::MemorySource(bytes)).ok());
    // Refused up front (data of the wrong size): the writer goes on.
    std::vector<std::byte> short_bytes(12);
    CHECK((*writer)->add("short", *meta, ckpt::MemorySource(short_bytes)).error().code() ==
          ErrorCode::kBufferSizeMismatch);
    // A source that breaks after its first piece, as a failing disk would:
    // 12 MiB take more than one read through any writer.
    auto large = ckpt::VariableMeta::make(ckpt::DType::kFloat, {3 << 20});
    REQUIRE(large.ok());
    int reads = 0;
    ckpt::CallbackSource broken(large->byte_size(), [&](std::uint64_t, std::span<std::byte> out) -> ckpt::Status {
      if (reads++ > 0) return ckpt::Error(ErrorCode::kIo, "source failed");
      std::fill(out.begin(), out.end(), std::byte{0});
      return {};
    });
    CHECK_FALSE((*writer)->add("broken", *large, broken).ok());
    (void)(*writer)->add("after", *meta, ckpt::MemorySource(bytes));  // succeeding or not, it cannot repair
    auto committed = (*writer)->commit();
    REQUIRE_FALSE(committed.ok());
    CHECK(committed.error().code() == ErrorCode::kInvalidArgument);
    CHECK(committed.error().variable() == "broken");
    CHECK_FALSE(fs::exists(dir / "out"));
  }
}
