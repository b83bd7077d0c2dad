// Opening costs O(tensors) (issue 15): ten times the tensors open in at
// most 20 times the time (linear would be 10, quadratic 100) in every format stored
// one tensor per file or in one header. Ratios of times taken in one run,
// never absolute times: the machine may be busy.
#include "ckpt/format/checkpoint.hpp"

#include "ckpt/format/meta.hpp"
#include "ckpt/format/npy.hpp"
#include "ckpt/format/snapshot.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <string>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "test_support.hpp"

namespace {

using ckpt::testing::TempDir;
namespace fs = std::filesystem;

// Sizes 10× apart: linear opening gives a ratio near 10, quadratic near
// 100. A single-file format is cheap to write, so it is timed at sizes
// where a small open (about a millisecond) is no longer dominated by
// fixed costs and caches; directories stay at 1,000 and 10,000 (22,000
// files a run) so that CI, with and without sanitizers, keeps its time. The
// 100k-tensor figures are in BENCHMARKS.md (bench/many_tensors_bench).
constexpr std::size_t kSmallFile = 10'000;
constexpr std::size_t kSmallDirectory = 1'000;
constexpr std::size_t kSizeFactor = 10;
constexpr double kMaxRatio = 20.0;

std::string tensor_name(std::size_t index) { return fmt::format("w{:07}", index); }

std::string scalar_bytes(std::size_t index) {
  const auto value = static_cast<float>(index);
  std::string bytes(sizeof value, '\0');
  std::memcpy(bytes.data(), &value, sizeof value);
  return bytes;
}

// `count` float32 scalars, tensor i holding the value i. The directories are
// written file by file, as the writers lay them out but without their
// file-system sync, which on a shared machine takes minutes for 100k files.
void write_scalars(const fs::path& path, std::string_view format, std::size_t count) {
  const auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, {}).value();
  if (format == "npy") {
    const std::string header = ckpt::make_npy_header(meta).value();
    fs::create_directory(path);
    for (std::size_t i = 0; i < count; ++i) {
      ckpt::testing::write_file(path / (tensor_name(i) + ".npy"), header + scalar_bytes(i));
    }
  } else if (format == "oneflow") {
    const std::string meta_text = ckpt::meta_to_text(meta);
    fs::create_directory(path);
    for (std::size_t i = 0; i < count; ++i) {
      fs::create_directory(path / tensor_name(i));
      ckpt::testing::write_file(path / tensor_name(i) / ckpt::kMetaFile, meta_text);
      ckpt::testing::write_file(path / tensor_name(i) / ckpt::kDataFile, scalar_bytes(i));
    }
    ckpt::testing::write_file(path / ckpt::kDoneFile, "");
  } else {
    auto writer = ckpt::create_checkpoint(path, format);
    REQUIRE(writer.ok());
    for (std::size_t i = 0; i < count; ++i) {
      const std::string bytes = scalar_bytes(i);
      ckpt::MemorySource data(ckpt::as_bytes(bytes));
      REQUIRE((*writer)->add(tensor_name(i), meta, data).ok());
    }
    REQUIRE((*writer)->commit().ok());
  }
}

float value_of(const ckpt::CheckpointReader& reader, std::size_t index) {
  auto bytes = ckpt::testing::read_all(reader, tensor_name(index));
  REQUIRE(bytes.size() == sizeof(float));
  float value = 0;
  std::memcpy(&value, bytes.data(), sizeof(float));
  return value;
}

// Checks what one open of `path` reads.
void check_values(const fs::path& path, std::size_t count) {
  auto reader = ckpt::open_checkpoint(path);
  REQUIRE(reader.ok());
  REQUIRE((*reader)->tensors().size() == count);
  CHECK(value_of(**reader, 0) == 0.0f);
  CHECK(value_of(**reader, count - 1) == static_cast<float>(count - 1));
}

double open_seconds(const fs::path& path) {
  auto start = std::chrono::steady_clock::now();
  auto reader = ckpt::open_checkpoint(path);
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(reader.ok());
  return elapsed.count();
}

void check_scaling(std::string_view format, std::string_view suffix, std::size_t small_count) {
  const std::size_t large_count = small_count * kSizeFactor;
  TempDir dir;
  const fs::path small = dir / fmt::format("small{}", suffix);
  const fs::path large = dir / fmt::format("large{}", suffix);
  write_scalars(small, format, small_count);
  write_scalars(large, format, large_count);
  check_values(small, small_count);
  check_values(large, large_count);
  // Best of five, the two sizes alternating, so a busy spell of the
  // machine slows both rather than one.
  double small_seconds = 1e30;
  double large_seconds = 1e30;
  for (int round = 0; round < 5; ++round) {
    small_seconds = std::min(small_seconds, open_seconds(small));
    large_seconds = std::min(large_seconds, open_seconds(large));
  }
  const double ratio = large_seconds / small_seconds;
  INFO(format, ": ", small_count, " tensors open in ", small_seconds, " s, ", large_count, " in ", large_seconds, " s");
  CHECK(ratio < kMaxRatio);
}

}  // namespace

TEST_CASE("a safetensors file of 100k tensors opens in linear time") {
  check_scaling("safetensors", ".safetensors", kSmallFile);
}

TEST_CASE("an npy directory of 10k arrays opens in linear time") { check_scaling("npy", "", kSmallDirectory); }

TEST_CASE("a OneFlow snapshot of 10k variables opens in linear time") { check_scaling("oneflow", "", kSmallDirectory); }
