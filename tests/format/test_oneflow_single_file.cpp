// OneFlow 1.0 single files (S1): read, written byte for byte as OneFlow
// writes them, converted, and the numpy pieces of the pickle kept bounded.
#include "ckpt/format/checkpoint.hpp"

#include <doctest/doctest.h>

#include <cstring>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/pickle.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using namespace std::string_view_literals;

namespace {

fs::path fixture() { return ckpt::testing::fixtures_root() / "oneflow-emulated" / "C_single_file_v1.0_proto4"; }

std::vector<float> floats(const ckpt::CheckpointReader& reader, std::string_view name) {
  auto bytes = ckpt::testing::read_all(reader, name);
  std::vector<float> values(bytes.size() / 4);
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// The fixture with `from` replaced by `to` (same length), for defects.
fs::path patched(const ckpt::testing::TempDir& dir, std::string_view from, std::string_view to) {
  std::string bytes = ckpt::testing::read_file(fixture());
  auto at = bytes.find(from);
  REQUIRE(at != std::string::npos);
  bytes.replace(at, from.size(), to);
  fs::path path = dir / "patched";
  ckpt::testing::write_file(path, bytes);
  return path;
}

}  // namespace

TEST_CASE("OneFlow 1.0's single file reads as Linear(2, 3).state_dict()") {
  CHECK(ckpt::detect_format(fixture()).value() == "oneflow-single-file");
  auto reader = ckpt::open_checkpoint(fixture());
  REQUIRE(reader.ok());
  CHECK((*reader)->format_name() == "oneflow-single-file");
  CHECK(ckpt::testing::names_of(**reader) == std::vector<std::string>{"bias", "weight"});
  const ckpt::TensorInfo* weight = (*reader)->find("weight");
  REQUIRE(weight != nullptr);
  CHECK(weight->meta.dtype() == ckpt::DType::kFloat);
  CHECK(weight->meta.shape() == ckpt::Shape{3, 2});
  CHECK(floats(**reader, "weight") == std::vector<float>{0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f});
  CHECK(floats(**reader, "bias") == std::vector<float>{0.5f, -1.0f, 2.0f});
  REQUIRE((*reader)->object() != nullptr);
  CHECK((*reader)->object()->ordered);
}

TEST_CASE("the writer reproduces OneFlow's single file byte for byte, added or converted") {
  ckpt::testing::TempDir dir;
  auto reader = ckpt::open_checkpoint(fixture());
  REQUIRE(reader.ok());
  for (bool with_object : {false, true}) {
    fs::path out = dir / (with_object ? "converted" : "added");
    auto writer = ckpt::create_checkpoint(out, "oneflow-single-file");
    REQUIRE(writer.ok());
    if (with_object) REQUIRE((*writer)->set_object(*(*reader)->object()).ok());
    for (std::string_view name : {"weight", "bias"}) {
      auto source = (*reader)->open(name);
      REQUIRE(source.ok());
      REQUIRE((*writer)->add(name, (*reader)->find(name)->meta, **source).ok());
    }
    REQUIRE((*writer)->commit().ok());
    CHECK(ckpt::testing::read_file(out) == ckpt::testing::read_file(fixture()));
  }
}

TEST_CASE("every dtype numpy has round-trips through a single file; bfloat16 is refused before writing") {
  ckpt::testing::TempDir dir;
  fs::path out = dir / "all";
  auto writer = ckpt::create_checkpoint(out, "oneflow-single-file");
  REQUIRE(writer.ok());
  std::vector<std::pair<std::string, ckpt::VariableMeta>> added;
  int seed = 0;
  for (ckpt::DType dtype : {ckpt::DType::kFloat16, ckpt::DType::kDouble, ckpt::DType::kInt8, ckpt::DType::kInt32,
                            ckpt::DType::kInt64, ckpt::DType::kUInt8, ckpt::DType::kBool}) {
    auto meta = ckpt::VariableMeta::make(dtype, {2, 3}).value();
    std::string name(ckpt::dtype_name(dtype));
    auto bytes = ckpt::testing::random_bytes(meta.byte_size(), ++seed);
    if (dtype == ckpt::DType::kBool) {
      for (auto& b : bytes) b = static_cast<std::byte>(static_cast<unsigned>(b) & 1);
    }
    REQUIRE((*writer)->add(name, meta, ckpt::MemorySource(bytes)).ok());
    added.emplace_back(name, meta);
  }
  auto scalar = ckpt::VariableMeta::make(ckpt::DType::kInt64, {}).value();
  auto scalar_bytes = ckpt::testing::random_bytes(8, 99);
  REQUIRE((*writer)->add("scalar", scalar, ckpt::MemorySource(scalar_bytes)).ok());
  auto empty = ckpt::VariableMeta::make(ckpt::DType::kFloat, {0, 4}).value();
  REQUIRE((*writer)->add("empty", empty, ckpt::MemorySource({})).ok());
  auto bf16 = ckpt::VariableMeta::make(ckpt::DType::kBFloat16, {2}).value();
  auto bf16_bytes = ckpt::testing::random_bytes(4, 5);
  CHECK((*writer)->add("bf16", bf16, ckpt::MemorySource(bf16_bytes)).error().code() == ErrorCode::kInvalidArgument);
  REQUIRE((*writer)->commit().ok());

  auto reader = ckpt::open_checkpoint(out);
  REQUIRE(reader.ok());
  seed = 0;
  for (const auto& [name, meta] : added) {
    const ckpt::TensorInfo* info = (*reader)->find(name);
    REQUIRE_MESSAGE(info != nullptr, name);
    CHECK(info->meta == meta);
    auto bytes = ckpt::testing::random_bytes(meta.byte_size(), ++seed);
    if (meta.dtype() == ckpt::DType::kBool) {
      for (auto& b : bytes) b = static_cast<std::byte>(static_cast<unsigned>(b) & 1);
    }
    CHECK(ckpt::testing::read_all(**reader, name) == bytes);
  }
  CHECK((*reader)->find("scalar")->meta == scalar);
  CHECK((*reader)->find("empty")->meta == empty);
  CHECK(ckpt::testing::read_all(**reader, "empty").empty());
}

TEST_CASE("single-file defects are refused with their code") {
  ckpt::testing::TempDir dir;
  // The array's dtype says f8 where OneFlow's dtype says kFloat, and 24 bytes hold 3 doubles, not 6.
  CHECK(ckpt::open_checkpoint(patched(dir, "\x8c\x02" "f4", "\x8c\x02" "f8")).error().code() ==
        ErrorCode::kDataSizeMismatch);
  // A big-endian array: numpy's '>' byte order has no OneFlow meaning.
  CHECK(ckpt::open_checkpoint(patched(dir, "\x8c\x01<", "\x8c\x01>")).error().code() == ErrorCode::kPickleStructure);
  // A flow dtype that disagrees with the array (kDouble = 3 for a float32 array).
  CHECK(ckpt::open_checkpoint(patched(dir, "\x81\x94K\x02", "\x81\x94K\x03")).error().code() ==
        ErrorCode::kPickleStructure);
  // Fortran order is not what tensor.numpy() gives.
  CHECK(ckpt::open_checkpoint(patched(dir, "b\x89" "C\x18", "b\x88" "C\x18")).error().code() ==
        ErrorCode::kPickleStructure);
  // _reconstruct of any class but numpy.ndarray is a forbidden call.
  CHECK(ckpt::open_checkpoint(patched(dir, "ndarray", "ndarrax")).error().code() == ErrorCode::kPickleForbiddenGlobal);
  CHECK(ckpt::open_checkpoint(patched(dir, "\x93\x94K\x00\x85"sv, "\x93\x94\x88\x88\x85"sv)).error().code() ==
        ErrorCode::kPickleForbiddenCall);
  // The numpy pieces are on the OneFlow allow-list only: a torch file may not name them.
  std::string_view global = "\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93.";
  auto bytes = std::as_bytes(std::span(global.data(), global.size()));
  CHECK(ckpt::pickle::read(bytes, {ckpt::pickle::Flavor::kOneflow}).ok());
  CHECK(ckpt::pickle::read(bytes, {ckpt::pickle::Flavor::kTorch}).error().code() == ErrorCode::kPickleForbiddenGlobal);
}
