#include "ckpt/format/writer.hpp"

#include <doctest/doctest.h>

#include <random>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/meta.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;

namespace {

struct Tensor {
  std::string name;
  ckpt::VariableMeta meta;
  std::vector<std::byte> bytes;
};

// Seeded random tensors over every fixed-size OneFlow dtype, with 0-d, empty
// and odd shapes.
std::vector<Tensor> random_tensors(std::uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  std::vector<ckpt::DType> dtypes;
  for (const auto& info : ckpt::all_dtypes()) {
    if (info.size != 0 && ckpt::is_oneflow_dtype(info.dtype)) dtypes.push_back(info.dtype);
  }
  std::vector<Tensor> tensors;
  for (int i = 0; i < count; ++i) {
    ckpt::DType dtype = dtypes[rng() % dtypes.size()];
    ckpt::Shape shape(rng() % 5);
    for (auto& dim : shape) dim = static_cast<std::int64_t>(rng() % 7 == 0 ? 0 : 1 + rng() % 9);
    auto meta = ckpt::VariableMeta::make(dtype, shape);
    REQUIRE(meta.ok());
    std::string name = "layer" + std::to_string(i) + (i % 3 == 0 ? ".weight" : "-bias_\xc3\xa9");
    tensors.push_back({name, *meta, ckpt::testing::random_bytes(meta->byte_size(), rng())});
  }
  return tensors;
}

}  // namespace

TEST_CASE("seeded random write -> read round trips through every source and read mode") {
  for (std::uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    CAPTURE(seed);
    ckpt::testing::TempDir dir;
    auto tensors = random_tensors(seed, 12);
    auto writer = ckpt::SnapshotWriter::create(dir / "snap");
    REQUIRE(writer.ok());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      switch (i % 3) {
        case 0: REQUIRE(writer->add(t.name, t.meta, t.bytes).ok()); break;
        case 1: {
          auto path = dir / ("src" + std::to_string(i));
          ckpt::testing::write_file(path, t.bytes);
          auto file = ckpt::FileSource::open(path);
          REQUIRE(file.ok());
          REQUIRE(writer->add(t.name, t.meta, *file).ok());
          break;
        }
        default: {
          ckpt::CallbackSource pull(t.bytes.size(), [&](std::uint64_t offset, std::span<std::byte> out) -> ckpt::Status {
            std::copy_n(t.bytes.begin() + static_cast<std::ptrdiff_t>(offset), out.size(), out.begin());
            return {};
          });
          REQUIRE(writer->add(t.name, t.meta, pull).ok());
        }
      }
    }
    REQUIRE(writer->commit().ok());

    auto report = ckpt::validate_snapshot(dir / "snap");
    CHECK(report.valid());
    CHECK(report.issues.empty());
    auto snapshot = ckpt::Snapshot::open(dir / "snap");
    REQUIRE(snapshot.ok());
    REQUIRE(snapshot->variables().size() == tensors.size());
    for (const Tensor& t : tensors) {
      CAPTURE(t.name);
      const auto* info = snapshot->find(t.name);
      REQUIRE(info != nullptr);
      CHECK(*info->meta == t.meta);
      CHECK(ckpt::testing::read_file(dir / "snap" / t.name / "meta") == ckpt::meta_to_text(t.meta));
      std::vector<std::byte> read(t.bytes.size());
      REQUIRE(snapshot->read(t.name, read).ok());
      CHECK(read == t.bytes);
      auto mapped = snapshot->map(t.name);
      REQUIRE(mapped.ok());
      CHECK(std::equal(t.bytes.begin(), t.bytes.end(), mapped->bytes().begin(), mapped->bytes().end()));
    }
    CHECK(ckpt::testing::read_file(dir / "snap" / "snapshot_done").empty());
  }
}

TEST_CASE("the writer refuses names OneFlow cannot round-trip, and wrong sizes") {
  ckpt::testing::TempDir dir;
  auto writer = ckpt::SnapshotWriter::create(dir / "snap");
  REQUIRE(writer.ok());
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, {1});
  REQUIRE(meta.ok());
  std::vector<std::byte> four(4);
  for (std::string_view bad : {"", ".", "..", "a/b", "/abs", "tab\there", "snapshot_done", "pickled_data",
                               "model.mlir"}) {
    CAPTURE(bad);
    auto status = writer->add(bad, *meta, four);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ErrorCode::kUnsafeName);
  }
  CHECK(writer->add(std::string(256, 'n'), *meta, four).error().code() == ErrorCode::kUnsafeName);
  CHECK(writer->add(std::string_view("nul\0x", 5), *meta, four).error().code() == ErrorCode::kUnsafeName);
  CHECK(writer->add("short", *meta, std::vector<std::byte>(3)).error().code() == ErrorCode::kBufferSizeMismatch);
  REQUIRE(writer->add("ok", *meta, four).ok());
  auto twice = writer->add("ok", *meta, four);
  CHECK(twice.error().code() == ErrorCode::kDuplicateName);
  CHECK(twice.error().variable() == "ok");
  REQUIRE(writer->commit().ok());
  auto snapshot = ckpt::Snapshot::open(dir / "snap");
  REQUIRE(snapshot.ok());
  CHECK(snapshot->variables().size() == 1);
}

TEST_CASE("an existing destination is replaced only when asked, and never mixed") {
  ckpt::testing::TempDir dir;
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kUInt8, {3});
  REQUIRE(meta.ok());
  auto write = [&](std::string_view name, std::string_view bytes, bool overwrite) -> ckpt::Status {
    CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::SnapshotWriter::create(dir / "snap", {.overwrite = overwrite}));
    CKPT_TRY(writer.add(name, *meta, ckpt::as_bytes(bytes)));
    return writer.commit();
  };
  REQUIRE(write("old", "abc", false).ok());
  auto refused = write("new", "xyz", false);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == ErrorCode::kDestinationExists);
  CHECK(ckpt::testing::read_file(dir / "snap/old/out") == "abc");

  REQUIRE(write("new", "xyz", true).ok());
  CHECK_FALSE(fs::exists(dir / "snap/old"));  // replaced whole, not merged
  CHECK(ckpt::testing::read_file(dir / "snap/new/out") == "xyz");
  CHECK(std::distance(fs::directory_iterator(dir.path()), {}) == 1);  // no staging or old copy left
}

TEST_CASE("an uncommitted writer leaves nothing behind") {
  ckpt::testing::TempDir dir;
  {
    auto writer = ckpt::SnapshotWriter::create(dir / "snap");
    REQUIRE(writer.ok());
    auto meta = ckpt::VariableMeta::make(ckpt::DType::kUInt8, {1});
    REQUIRE(writer->add("x", *meta, ckpt::as_bytes("1")).ok());
  }
  CHECK(fs::is_empty(dir.path()));
}

TEST_CASE("after a variable failed half-written, commit refuses and nothing is published") {
  ckpt::testing::TempDir dir;
  auto writer = ckpt::SnapshotWriter::create(dir / "snap");
  REQUIRE(writer.ok());
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kUInt8, {4});
  REQUIRE(meta.ok());
  // Refused before anything is written: the writer stays usable.
  CHECK(writer->add("a/b", *meta, ckpt::as_bytes("1234")).error().code() == ErrorCode::kUnsafeName);
  // A source failing mid-copy leaves part of "broken" staged.
  auto failed = writer->add("broken", *meta, [](ckpt::ByteSink& sink) -> ckpt::Status {
    CKPT_TRY(sink.write(ckpt::as_bytes("12")));
    return ckpt::Error(ErrorCode::kIo, "source failed");
  });
  REQUIRE_FALSE(failed.ok());
  REQUIRE(writer->add("fine", *meta, ckpt::as_bytes("1234")).ok());  // a later success does not clear it
  auto committed = writer->commit();
  REQUIRE_FALSE(committed.ok());
  CHECK(committed.error().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(fs::exists(dir / "snap"));
}
