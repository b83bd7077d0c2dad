// npy directories and npz archives through the checkpoint registry:
// detection, readers' sources, the inflating source's restarts and CRC.
#include "ckpt/format/checkpoint.hpp"

#include <cstring>

#include <algorithm>

#include <doctest/doctest.h>

#include "ckpt/format/npz.hpp"
#include "ckpt/format/zip.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;

namespace {

// Values i for i in [0, count), as int32 little-endian bytes.
std::string arange_i32(std::int32_t count) {
  std::string out(static_cast<std::size_t>(count) * 4, '\0');
  for (std::int32_t i = 0; i < count; ++i) std::memcpy(out.data() + 4 * i, &i, 4);
  return out;
}

void write_checkpoint(const fs::path& path, std::string_view format, const std::string& values, bool compress = false) {
  ckpt::WriteOptions options;
  options.compress = compress;
  auto writer = ckpt::create_checkpoint(path, format, options);
  REQUIRE(writer.ok());
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt32, {static_cast<std::int64_t>(values.size() / 4)});
  REQUIRE((*writer)->add("x", *meta, ckpt::MemorySource(ckpt::as_bytes(values))).ok());
  REQUIRE((*writer)->commit().ok());
}

std::string read_piece(const ckpt::ByteSource& source, std::uint64_t offset, std::size_t length) {
  std::string piece(length, '\0');
  auto status = source.read_at(offset, std::as_writable_bytes(std::span(piece)));
  REQUIRE_MESSAGE(status.ok(), status.error().describe());
  return piece;
}

}  // namespace

TEST_CASE("the registry detects oneflow, npy and npz, and nothing else") {
  ckpt::testing::TempDir dir;
  const std::string values = arange_i32(10);
  for (std::string_view format : {"oneflow", "npy", "npz"}) {
    fs::path path = dir / (std::string(format) + (format == "npz" ? ".npz" : ""));
    write_checkpoint(path, format, values);
    CHECK(ckpt::detect_format(path).value() == format);
    auto reader = ckpt::open_checkpoint(path);
    REQUIRE(reader.ok());
    CHECK((*reader)->format_name() == format);
    CHECK(read_piece(*(*reader)->open("x").value(), 0, values.size()) == values);
    CHECK(ckpt::validate_checkpoint(path, format).valid());
  }
  auto formats = ckpt::checkpoint_formats();
  for (std::string_view format : {"oneflow", "npy", "npz"}) {
    CHECK(std::find(formats.begin(), formats.end(), format) != formats.end());
  }

  // An npz under another name is still npz; a zip of other members (a PyTorch
  // file) is torch, not npz; an empty zip is npz only by its name.
  fs::copy_file(dir / "npz.npz", dir / "renamed.bin");
  CHECK(ckpt::detect_format(dir / "renamed.bin").value() == "npz");
  ckpt::MemorySink torch_like;
  ckpt::ZipWriter zip(torch_like);
  REQUIRE(zip.add("archive/data.pkl", ckpt::ZipMethod::kStored, [](ckpt::ByteSink& sink) {
                return sink.write(ckpt::as_bytes("\x80\x02}q\x00."));
              }).ok());
  REQUIRE(zip.finish().ok());
  ckpt::testing::write_file(dir / "model.pt", torch_like.bytes());
  CHECK(ckpt::detect_format(dir / "model.pt").value() == "torch");
  ckpt::MemorySink empty;
  REQUIRE(ckpt::ZipWriter(empty).finish().ok());
  ckpt::testing::write_file(dir / "empty.npz", empty.bytes());
  ckpt::testing::write_file(dir / "empty.zip", empty.bytes());
  CHECK(ckpt::detect_format(dir / "empty.npz").value() == "npz");
  // Recognised as a zip, and said so.
  CHECK(ckpt::detect_format(dir / "empty.zip").error().code() == ErrorCode::kRecognisedNotCheckpoint);
  CHECK(ckpt::detect_format(dir / "empty.zip").error().message().find("a zip archive with neither") != std::string::npos);

  fs::create_directory(dir / "plain");
  ckpt::testing::write_file(dir / "plain" / "notes.txt", "hello");
  CHECK(ckpt::detect_format(dir / "plain").error().code() == ErrorCode::kNotACheckpoint);
  CHECK(ckpt::validate_checkpoint(dir / "plain", "hdf5").issues.at(0).code == ErrorCode::kInvalidArgument);
}

TEST_CASE("npy and stored npz members are file slices: the kernel copies them") {
  ckpt::testing::TempDir dir;
  const std::string values = arange_i32(1000);
  write_checkpoint(dir / "a", "npy", values);
  write_checkpoint(dir / "s.npz", "npz", values);
  for (fs::path path : {dir / "a", dir / "s.npz"}) {
    auto reader = ckpt::open_checkpoint(path);
    REQUIRE(reader.ok());
    auto data = (*reader)->open("x");
    REQUIRE(data.ok());
    CHECK((*data)->file_descriptor() >= 0);
    // The data starts after the 128-byte .npy header (and, in a zip, a local header).
    CHECK((*data)->file_offset() >= 128);
    auto sink = ckpt::FileSink::create(dir / "copy");
    REQUIRE(sink.ok());
    REQUIRE(sink->write_from(**data, 0, (*data)->size()).ok());
    REQUIRE(sink->finish().ok());
    CHECK(ckpt::testing::read_file(dir / "copy") == values);
    fs::remove(dir / "copy");
  }
}

TEST_CASE("a deflated member inflates forward, restarts for an earlier offset, and checks its CRC at the end") {
  ckpt::testing::TempDir dir;
  const std::string values = arange_i32(300000);  // 1.2 MB: several inflate chunks
  write_checkpoint(dir / "d.npz", "npz", values, /*compress=*/true);
  auto reader = ckpt::open_checkpoint(dir / "d.npz");
  REQUIRE(reader.ok());
  auto data = (*reader)->open("x");
  REQUIRE(data.ok());
  CHECK((*data)->file_descriptor() == -1);
  for (std::uint64_t offset : {900000u, 17u, 1199990u, 0u, 600003u, 600001u}) {
    CHECK_MESSAGE(read_piece(**data, offset, 10) == values.substr(offset, 10), offset);
  }

  // A wrong CRC in the central directory is found when the member is read to its end.
  std::string archive = ckpt::testing::read_file(dir / "d.npz");
  std::size_t central = archive.find("PK\x01\x02");
  REQUIRE(central != std::string::npos);
  std::size_t crc_at = central + 16;
  archive[crc_at] = static_cast<char>(archive[crc_at] ^ 0x5a);
  ckpt::testing::write_file(dir / "bad.npz", archive);
  auto bad_reader = ckpt::open_checkpoint(dir / "bad.npz");
  REQUIRE(bad_reader.ok());  // headers read fine: the CRC needs all the data
  auto bad = (*bad_reader)->open("x");
  REQUIRE(bad.ok());
  CHECK(read_piece(**bad, 0, 16) == values.substr(0, 16));
  std::string rest(values.size() - 16, '\0');
  auto status = (*bad)->read_at(16, std::as_writable_bytes(std::span(rest)));
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == ErrorCode::kZipCrc);
  CHECK(ckpt::validate_npz(dir / "bad.npz").issues.at(0).code == ErrorCode::kZipCrc);
}

TEST_CASE("npy readers fail fast with the file and variable named; the writer checks before writing") {
  ckpt::testing::TempDir dir;
  write_checkpoint(dir / "a", "npy", arange_i32(4));
  std::string truncated = ckpt::testing::read_file(dir / "a" / "x.npy");
  ckpt::testing::write_file(dir / "a" / "y.npy", truncated.substr(0, truncated.size() - 1));
  auto reader = ckpt::open_checkpoint(dir / "a");
  REQUIRE_FALSE(reader.ok());
  CHECK(reader.error().code() == ErrorCode::kNpyTruncated);
  CHECK(reader.error().variable() == "y");
  CHECK(reader.error().file() == (dir / "a" / "y.npy").string());

  auto writer = ckpt::create_checkpoint(dir / "b", "npy");
  REQUIRE(writer.ok());
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt32, {3});
  std::string eight(8, 'x');
  auto wrong_size = (*writer)->add("v", *meta, ckpt::MemorySource(ckpt::as_bytes(eight)));
  REQUIRE_FALSE(wrong_size.ok());
  CHECK(wrong_size.error().code() == ErrorCode::kBufferSizeMismatch);
  CHECK(wrong_size.error().variable() == "v");
  CHECK((*writer)->add("../v", *meta, ckpt::MemorySource(ckpt::as_bytes(eight))).error().code() ==
        ErrorCode::kUnsafeName);
}
