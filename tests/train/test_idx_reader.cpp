#include "ckpt/train/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using ckpt::testing::TempDir;
using ckpt::train::load_idx_pair;
using ckpt::train::read_idx;

namespace {

std::string be32(std::uint32_t value) {
  return {static_cast<char>(value >> 24U), static_cast<char>(value >> 16U), static_cast<char>(value >> 8U),
          static_cast<char>(value)};
}

// An IDX file of unsigned bytes with `dims` and `values`.
std::string idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& values) {
  std::string bytes{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (const std::uint32_t dim : dims) bytes += be32(dim);
  bytes.append(values.begin(), values.end());
  return bytes;
}

void write_gzip(const fs::path& path, const std::string& content) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

std::vector<std::uint8_t> pixels(std::size_t count) {
  std::vector<std::uint8_t> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<std::uint8_t>(i * 37 % 256);
  return values;
}

// Three 2x2 images with labels 0, 9, 4, plain and gzipped.
struct SmallSet {
  TempDir dir;
  std::string images = idx_bytes({3, 2, 2}, pixels(12));
  std::string labels = idx_bytes({3}, {0, 9, 4});
};

ErrorCode read_error(const fs::path& path) {
  auto result = read_idx(path);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().file() == path.string());
  return result.error().code();
}

}  // namespace

TEST_CASE("plain and gzipped IDX files read the same") {
  SmallSet set;
  ckpt::testing::write_file(set.dir / "images", set.images);
  write_gzip(set.dir / "images.gz", set.images);
  auto plain = read_idx(set.dir / "images");
  auto gzipped = read_idx(set.dir / "images.gz");
  REQUIRE(plain.ok());
  REQUIRE(gzipped.ok());
  CHECK(plain->dims == std::vector<std::uint32_t>{3, 2, 2});
  CHECK(plain->values == pixels(12));
  CHECK(gzipped->dims == plain->dims);
  CHECK(gzipped->values == plain->values);
}

TEST_CASE("an image/label pair becomes floats in [0, 1] and int labels") {
  SmallSet set;
  write_gzip(set.dir / "train-images-idx3-ubyte.gz", set.images);
  ckpt::testing::write_file(set.dir / "train-labels-idx1-ubyte", set.labels);
  auto data = ckpt::train::load_mnist(set.dir.path(), ckpt::train::Split::kTrain);
  REQUIRE(data.ok());
  CHECK(data->size() == 3);
  CHECK(data->features == 4);
  CHECK(data->labels == std::vector<std::int32_t>{0, 9, 4});
  const auto raw = pixels(12);
  for (std::size_t i = 0; i < raw.size(); ++i) CHECK(data->images[i] == static_cast<float>(raw[i]) / 255.0f);
  CHECK(data->image(2)[0] == static_cast<float>(raw[8]) / 255.0f);
  CHECK(data->head(2).size() == 2);
  CHECK(data->head(2).images.size() == 8);
}

TEST_CASE("bad IDX headers are refused with the file named") {
  TempDir dir;
  ckpt::testing::write_file(dir / "magic", std::string("\x01\x00\x08\x01", 4) + be32(1) + "x");
  CHECK(read_error(dir / "magic") == ErrorCode::kIdxFormat);
  ckpt::testing::write_file(dir / "float", std::string("\x00\x00\x0d\x01", 4) + be32(1) + "abcd");
  CHECK(read_error(dir / "float") == ErrorCode::kIdxFormat);
  ckpt::testing::write_file(dir / "rank", std::string("\x00\x00\x08\x09", 4));
  CHECK(read_error(dir / "rank") == ErrorCode::kIdxFormat);
  ckpt::testing::write_file(dir / "short", std::string("\x00\x00", 2));
  CHECK(read_error(dir / "short") == ErrorCode::kIdxTruncated);
  ckpt::testing::write_file(dir / "huge", idx_bytes({0xffffffffU, 0xffffffffU, 0xffffffffU}, {}));
  CHECK(read_error(dir / "huge") == ErrorCode::kIdxFormat);
  CHECK(read_error(dir / "absent") == ErrorCode::kNotFound);
}

TEST_CASE("truncated and overlong data are refused, plain or gzipped") {
  SmallSet set;
  const std::string truncated = set.images.substr(0, set.images.size() - 1);
  ckpt::testing::write_file(set.dir / "truncated", truncated);
  CHECK(read_error(set.dir / "truncated") == ErrorCode::kIdxTruncated);
  write_gzip(set.dir / "truncated.gz", truncated);
  CHECK(read_error(set.dir / "truncated.gz") == ErrorCode::kIdxTruncated);

  // A gzip stream cut in the middle: zlib reports it, we name the file.
  write_gzip(set.dir / "whole.gz", set.images);
  const std::string compressed = ckpt::testing::read_file(set.dir / "whole.gz");
  ckpt::testing::write_file(set.dir / "cut.gz", compressed.substr(0, compressed.size() / 2));
  CHECK(read_error(set.dir / "cut.gz") == ErrorCode::kIdxTruncated);

  ckpt::testing::write_file(set.dir / "long", set.images + "z");
  CHECK(read_error(set.dir / "long") == ErrorCode::kIdxTrailingBytes);
}

TEST_CASE("image and label files must agree") {
  SmallSet set;
  ckpt::testing::write_file(set.dir / "images", set.images);
  ckpt::testing::write_file(set.dir / "two-labels", idx_bytes({2}, {1, 2}));
  ckpt::testing::write_file(set.dir / "bad-label", idx_bytes({3}, {1, 10, 2}));
  ckpt::testing::write_file(set.dir / "rank2-labels", idx_bytes({3, 1}, {1, 2, 3}));

  auto count = load_idx_pair(set.dir / "images", set.dir / "two-labels");
  REQUIRE_FALSE(count.ok());
  CHECK(count.error().code() == ErrorCode::kDatasetMismatch);
  CHECK(count.error().message().find("expected 3") != std::string::npos);

  auto label = load_idx_pair(set.dir / "images", set.dir / "bad-label");
  REQUIRE_FALSE(label.ok());
  CHECK(label.error().code() == ErrorCode::kDatasetMismatch);
  CHECK(label.error().message() == "label 1: expected below 10, found 10");

  auto rank = load_idx_pair(set.dir / "images", set.dir / "rank2-labels");
  REQUIRE_FALSE(rank.ok());
  CHECK(rank.error().code() == ErrorCode::kDatasetMismatch);

  auto swapped = load_idx_pair(set.dir / "two-labels", set.dir / "images");
  REQUIRE_FALSE(swapped.ok());
  CHECK(swapped.error().file() == (set.dir / "two-labels").string());
}

TEST_CASE("Debian's Fashion-MNIST test split reads as 10000 balanced 28x28 images") {
  auto data = ckpt::train::load_mnist(std::string(ckpt::train::kDefaultDataDir), ckpt::train::Split::kTest);
  REQUIRE_MESSAGE(data.ok(), "install dataset-fashion-mnist (scripts/install-deps.sh)");
  CHECK(data->size() == 10000);
  CHECK(data->features == 784);
  std::vector<int> per_class(10, 0);
  for (const std::int32_t label : data->labels) ++per_class[static_cast<std::size_t>(label)];
  for (const int count : per_class) CHECK(count == 1000);
  const auto [low, high] = std::minmax_element(data->images.begin(), data->images.end());
  CHECK(*low == 0.0f);
  CHECK(*high == 1.0f);
}
