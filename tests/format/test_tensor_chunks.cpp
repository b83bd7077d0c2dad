// Reading boxes of a tensor stored as chunks (spec/collective.md): values
// against the whole tensor, the reads made (one per contiguous run), the
// tiling check, and the whole tensor read through chunked_source in ranges
// that cut rows and elements.
#include "ckpt/format/tensor_chunks.hpp"

#include <cstring>
#include <numeric>

#include <doctest/doctest.h>

namespace {

using ckpt::Shape;
using ckpt::TensorBox;

// Counts the reads made of it.
class CountingSource final : public ckpt::ByteSource {
 public:
  explicit CountingSource(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {}
  std::uint64_t size() const override { return bytes_.size(); }
  ckpt::Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    ++reads;
    REQUIRE(offset + out.size() <= bytes_.size());
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return {};
  }
  const std::string& name() const override { return name_; }
  mutable int reads = 0;

 private:
  std::vector<std::byte> bytes_;
  std::string name_ = "<chunks>";
};

const Shape kShape = {5, 4, 6};

std::int32_t value_at(const Shape& at) { return static_cast<std::int32_t>((at[0] * 4 + at[1]) * 6 + at[2]); }

// The box's values, C order over it.
std::vector<std::int32_t> values_of(const TensorBox& box) {
  std::vector<std::int32_t> out;
  for (auto i = box.offset[0]; i < box.offset[0] + box.shape[0]; ++i) {
    for (auto j = box.offset[1]; j < box.offset[1] + box.shape[1]; ++j) {
      for (auto k = box.offset[2]; k < box.offset[2] + box.shape[2]; ++k) out.push_back(value_at({i, j, k}));
    }
  }
  return out;
}

// Every chunk's bytes one after another in one source, with a gap of 12 bytes before each.
struct Stored {
  std::shared_ptr<CountingSource> file;
  std::vector<ckpt::StoredChunk> chunks;
};

Stored store(const std::vector<TensorBox>& boxes) {
  std::vector<std::byte> bytes;
  std::vector<std::uint64_t> starts;
  for (const auto& box : boxes) {
    bytes.resize(bytes.size() + 12);
    starts.push_back(bytes.size());
    const auto values = values_of(box);
    const auto* raw = reinterpret_cast<const std::byte*>(values.data());
    bytes.insert(bytes.end(), raw, raw + values.size() * 4);
  }
  Stored stored{std::make_shared<CountingSource>(std::move(bytes)), {}};
  for (std::size_t i = 0; i < boxes.size(); ++i) stored.chunks.push_back({boxes[i], stored.file, starts[i]});
  return stored;
}

std::vector<std::int32_t> read(const Stored& stored, const TensorBox& want) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(want.shape[0] * want.shape[1] * want.shape[2]));
  auto status = ckpt::read_box(stored.chunks, kShape, 4, want, std::as_writable_bytes(std::span(out)), "t");
  REQUIRE_MESSAGE(status.ok(), status.error().describe());
  return out;
}

// Rows 0-1 and 2-4, the second split in columns 0-2 and 3-5.
const std::vector<TensorBox> kIrregular = {
    {{0, 0, 0}, {2, 4, 6}}, {{2, 0, 0}, {3, 4, 3}}, {{2, 0, 3}, {3, 4, 3}}};

}  // namespace

TEST_CASE("any box reads equal from irregular chunks") {
  const Stored stored = store(kIrregular);
  for (std::int64_t i0 = 0; i0 < 5; ++i0) {
    for (std::int64_t j0 = 0; j0 < 4; j0 += 3) {
      for (std::int64_t k0 = 0; k0 < 6; k0 += 2) {
        const TensorBox box{{i0, j0, k0}, {5 - i0, 4 - j0, 6 - k0 - (k0 == 4 ? 1 : 0)}};
        CHECK(read(stored, box) == values_of(box));
      }
    }
  }
}

TEST_CASE("one read per contiguous run") {
  const Stored stored = store(kIrregular);
  // Rows 1-3 whole: rows 1 of chunk 0 is one run; rows 2-3 in chunks 1 and 2
  // are 2 x 4 runs of 3 elements each.
  stored.file->reads = 0;
  CHECK(read(stored, {{1, 0, 0}, {3, 4, 6}}) == values_of({{1, 0, 0}, {3, 4, 6}}));
  CHECK(stored.file->reads == 1 + 2 * 4 * 2);
  // Rows 0-1 in full lie in one chunk whole: a single read.
  stored.file->reads = 0;
  CHECK(read(stored, {{0, 0, 0}, {2, 4, 6}}) == values_of({{0, 0, 0}, {2, 4, 6}}));
  CHECK(stored.file->reads == 1);
  // Columns 3-5 of rows 2-4 are chunk 2 whole: one read, nothing of chunk 1.
  stored.file->reads = 0;
  CHECK(read(stored, {{2, 0, 3}, {3, 4, 3}}) == values_of({{2, 0, 3}, {3, 4, 3}}));
  CHECK(stored.file->reads == 1);
}

TEST_CASE("tiling: gaps, overlaps, boxes outside") {
  CHECK(ckpt::tiling_problem(kShape, kIrregular).empty());
  std::vector<TensorBox> gap = {kIrregular[0], kIrregular[1]};
  CHECK(ckpt::tiling_problem(kShape, gap).find("84 of the 120") != std::string::npos);
  std::vector<TensorBox> overlap = kIrregular;
  overlap[2].offset[2] = 2;
  overlap[2].shape[2] = 4;
  CHECK(ckpt::tiling_problem(kShape, overlap).find("overlaps") != std::string::npos);
  std::vector<TensorBox> outside = kIrregular;
  outside[0].shape[0] = 6;
  CHECK(ckpt::tiling_problem(kShape, outside).find("outside") != std::string::npos);
  const Stored stored = store(kIrregular);
  std::vector<std::int32_t> out(8);
  auto refused = ckpt::read_box(stored.chunks, kShape, 4, {{4, 3, 4}, {2, 1, 4}}, std::as_writable_bytes(std::span(out)), "t");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == ckpt::ErrorCode::kCollectivePieces);
}

TEST_CASE("the whole tensor through chunked_source, in ranges cutting elements and rows") {
  const Stored stored = store(kIrregular);
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt32, kShape);
  REQUIRE(meta.ok());
  auto source = ckpt::chunked_source(stored.chunks, *meta, "t");
  const auto whole = values_of({{0, 0, 0}, kShape});
  const auto* expected = reinterpret_cast<const std::byte*>(whole.data());
  for (std::size_t step : {1u, 3u, 7u, 24u, 100u, 480u}) {
    std::vector<std::byte> got(480);
    for (std::size_t at = 0; at < got.size(); at += step) {
      auto part = std::span(got).subspan(at, std::min(step, got.size() - at));
      REQUIRE(source->read_at(at, part).ok());
    }
    CHECK(std::memcmp(got.data(), expected, got.size()) == 0);
  }
}
