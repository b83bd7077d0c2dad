#include "ckpt/format/byte_io.hpp"

#include <doctest/doctest.h>

#include <cstring>

#include "ckpt/format/atomic_output.hpp"
#include "test_support.hpp"

using ckpt::ErrorCode;
using ckpt::testing::TempDir;

namespace {

std::vector<std::byte> read_all(const ckpt::ByteSource& source) {
  std::vector<std::byte> bytes(source.size());
  REQUIRE(source.read_at(0, bytes).ok());
  return bytes;
}

}  // namespace

TEST_CASE("file, memory and callback sources give the same bytes and the same errors") {
  TempDir dir;
  auto content = ckpt::testing::random_bytes(100'000, 7);
  ckpt::testing::write_file(dir / "data", content);

  auto file = ckpt::FileSource::open(dir / "data");
  REQUIRE(file.ok());
  ckpt::MemorySource memory(content);
  ckpt::CallbackSource callback(content.size(), [&](std::uint64_t offset, std::span<std::byte> out) -> ckpt::Status {
    std::copy_n(content.begin() + static_cast<std::ptrdiff_t>(offset), out.size(), out.begin());
    return {};
  });
  const ckpt::ByteSource* sources[] = {&*file, &memory, &callback};
  for (const auto* source : sources) {
    CAPTURE(source->name());
    CHECK(source->size() == content.size());
    CHECK(read_all(*source) == content);
    std::vector<std::byte> middle(10);
    REQUIRE(source->read_at(99'990, middle).ok());
    CHECK(std::equal(middle.begin(), middle.end(), content.end() - 10));
    // Past the end: an error naming the source, never a short read.
    std::vector<std::byte> past(11);
    auto status = source->read_at(99'990, past);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ErrorCode::kDataSizeMismatch);
    CHECK(status.error().file() == source->name());
    // An offset near 2^64 must not wrap around.
    CHECK_FALSE(source->read_at(~std::uint64_t{0} - 2, middle).ok());
  }
}

TEST_CASE("opening a missing file or a directory fails with a code and the path") {
  TempDir dir;
  auto missing = ckpt::FileSource::open(dir / "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == ErrorCode::kNotFound);
  CHECK(missing.error().describe().find((dir / "nope").string()) != std::string::npos);
  auto directory = ckpt::FileSource::open(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().code() == ErrorCode::kDataNotFile);
}

TEST_CASE("sinks copy from any source, files through the kernel") {
  TempDir dir;
  auto content = ckpt::testing::random_bytes(3'000'000, 11);
  ckpt::testing::write_file(dir / "in", content);
  auto file = ckpt::FileSource::open(dir / "in");
  REQUIRE(file.ok());
  ckpt::MemorySource memory(content);

  for (const ckpt::ByteSource* source : {static_cast<const ckpt::ByteSource*>(&*file),
                                         static_cast<const ckpt::ByteSource*>(&memory)}) {
    auto path = dir / ("out-" + std::to_string(source->file_descriptor() >= 0));
    auto sink = ckpt::FileSink::create(path);
    REQUIRE(sink.ok());
    REQUIRE(sink->write_from(*source, 1000, 2'000'000).ok());
    REQUIRE(sink->finish().ok());
    CHECK(sink->written() == 2'000'000);
    auto written = ckpt::testing::read_file(path);
    REQUIRE(written.size() == 2'000'000);
    CHECK(std::memcmp(written.data(), content.data() + 1000, written.size()) == 0);
  }
  ckpt::MemorySink memory_sink;
  REQUIRE(memory_sink.write_from(*file, 5, 17).ok());
  CHECK(memory_sink.bytes() == std::vector<std::byte>(content.begin() + 5, content.begin() + 22));
  CHECK(memory_sink.write_from(*file, 2'999'999, 2).error().code() == ErrorCode::kDataSizeMismatch);
}

TEST_CASE("a file sink never replaces an existing file") {
  TempDir dir;
  ckpt::testing::write_file(dir / "taken", "keep");
  auto sink = ckpt::FileSink::create(dir / "taken");
  REQUIRE_FALSE(sink.ok());
  CHECK(ckpt::testing::read_file(dir / "taken") == "keep");
}

TEST_CASE("atomic file: nothing at the destination before commit, all of it after") {
  TempDir dir;
  auto path = dir / "out.bin";
  {
    auto file = ckpt::AtomicFile::create(path);
    REQUIRE(file.ok());
    REQUIRE(file->write(ckpt::as_bytes("hello")).ok());
    CHECK_FALSE(std::filesystem::exists(path));
    REQUIRE(file->commit().ok());
  }
  CHECK(ckpt::testing::read_file(path) == "hello");
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 1);  // no staging leftover

  auto refused = ckpt::AtomicFile::create(path);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == ErrorCode::kDestinationExists);

  {
    auto abandoned = ckpt::AtomicFile::create(path, {.overwrite = true});
    REQUIRE(abandoned.ok());
    REQUIRE(abandoned->write(ckpt::as_bytes("partial")).ok());
  }  // destroyed without commit
  CHECK(ckpt::testing::read_file(path) == "hello");
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 1);

  auto replace = ckpt::AtomicFile::create(path, {.overwrite = true});
  REQUIRE(replace.ok());
  REQUIRE(replace->write(ckpt::as_bytes("world!")).ok());
  REQUIRE(replace->commit().ok());
  CHECK(ckpt::testing::read_file(path) == "world!");
}

TEST_CASE("a slice reads its window and keeps the kernel copy at the right offset") {
  TempDir dir;
  auto content = ckpt::testing::random_bytes(10'000, 3);
  ckpt::testing::write_file(dir / "data", content);
  auto file = ckpt::FileSource::open(dir / "data");
  REQUIRE(file.ok());
  auto slice = ckpt::SliceSource::make(*file, 128, 5'000);
  REQUIRE(slice.ok());
  CHECK(slice->size() == 5'000);
  CHECK(slice->file_offset() == 128);
  CHECK(read_all(*slice) == std::vector<std::byte>(content.begin() + 128, content.begin() + 5'128));
  auto nested = ckpt::SliceSource::make(*slice, 72, 100);
  REQUIRE(nested.ok());
  CHECK(nested->file_offset() == 200);

  auto sink = ckpt::FileSink::create(dir / "copy");
  REQUIRE(sink.ok());
  REQUIRE(sink->write_from(*nested, 0, 100).ok());
  REQUIRE(sink->finish().ok());
  auto copied = ckpt::testing::read_file(dir / "copy");
  CHECK(std::memcmp(copied.data(), content.data() + 200, 100) == 0);

  CHECK(ckpt::SliceSource::make(*file, 9'000, 1'001).error().code() == ErrorCode::kDataSizeMismatch);
  std::vector<std::byte> past(1);
  CHECK_FALSE(nested->read_at(100, past).ok());
}

TEST_CASE("a destination written with a trailing slash names the same entry") {
  TempDir dir;
  CHECK(ckpt::without_trailing_separator("out/") == "out");
  CHECK(ckpt::without_trailing_separator("a/b//") == "a/b");
  CHECK(ckpt::without_trailing_separator("/") == "/");
  auto directory = ckpt::AtomicDirectory::create((dir / "out").string() + "/");
  REQUIRE(directory.ok());
  REQUIRE(directory->commit().ok());
  CHECK(std::filesystem::is_directory(dir / "out"));
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 1);
  CHECK(ckpt::AtomicFile::create((dir / "out").string() + "/").error().code() == ErrorCode::kDestinationExists);
}
