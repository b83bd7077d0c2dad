// What overwrite (--force) may replace (spec/writing.md, "Replacing"): a
// file or a checkpoint, never a user's directory, a link, or the source.
#include "ckpt/format/atomic_output.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/writer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using namespace ckpt::testing;  // TempDir, read_file, write_file, read_all

namespace {

ckpt::WriteOptions replacing(std::vector<fs::path> sources = {}) {
  ckpt::WriteOptions options;
  options.overwrite = true;
  options.sources = std::move(sources);
  return options;
}

// One uint8 tensor "w" holding `value`, written as `format` to `path`.
ckpt::Status save(const fs::path& path, std::string_view format, std::uint8_t value,
                  ckpt::WriteOptions options = replacing()) {
  CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::create_checkpoint(path, format, std::move(options)));
  CKPT_ASSIGN_OR_RETURN(auto meta, ckpt::VariableMeta::make(ckpt::DType::kUInt8, {1}));
  std::byte byte{value};
  CKPT_TRY(writer->add("w", meta, ckpt::MemorySource({&byte, 1})));
  return writer->commit();
}

std::uint8_t value_in(const fs::path& path) {
  auto reader = ckpt::open_checkpoint(path);
  REQUIRE(reader.ok());
  return std::to_integer<std::uint8_t>(ckpt::testing::read_all(**reader, "w").at(0));
}

std::vector<std::string> siblings_with(const fs::path& directory, std::string_view marker) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (entry.path().filename().string().find(marker) != std::string::npos) found.push_back(entry.path().string());
  }
  return found;
}

}  // namespace

TEST_CASE("a user's directory is never replaced; the refusal names what is inside") {
  TempDir tmp;
  const fs::path home = tmp / "home";
  fs::create_directories(home / "projects");
  write_file(home / "notes.txt", "my notes");
  write_file(home / "thesis.tex", "chapter 1");
  for (std::string_view format : ckpt::checkpoint_formats()) {
    CAPTURE(format);
    auto status = save(home, format, 1);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ErrorCode::kReplaceNotCheckpoint);
    CHECK(status.error().message().find("3 entries: \"notes.txt\", \"projects/\", \"thesis.tex\"") != std::string::npos);
    CHECK(read_file(home / "notes.txt") == "my notes");
    CHECK(read_file(home / "thesis.tex") == "chapter 1");
    CHECK(fs::is_directory(home / "projects"));
    CHECK(siblings_with(tmp.path(), ".ckpt-tmp-").empty());
  }
  // Writing a snapshot directly (libtrain's way) refuses it too.
  auto direct = ckpt::SnapshotWriter::create(home, replacing());
  REQUIRE_FALSE(direct.ok());
  CHECK(direct.error().code() == ErrorCode::kReplaceNotCheckpoint);
  CHECK(read_file(home / "notes.txt") == "my notes");
}

TEST_CASE("a checkpoint among a user's files is not replaced with them") {
  TempDir tmp;
  for (std::string_view format : {"npy", "oneflow"}) {
    CAPTURE(format);
    const fs::path folder = tmp / std::string(format);
    REQUIRE(save(folder, format, 1, {}).ok());  // a real checkpoint...
    write_file(folder / "notes.txt", "my notes");  // ...with a user's file beside its own
    auto status = save(folder, format, 2);
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ErrorCode::kReplaceNotCheckpoint);
    CHECK(read_file(folder / "notes.txt") == "my notes");
    CHECK(value_in(folder) == 1);
  }
  const fs::path snapshot = tmp / "oneflow";
  auto direct = ckpt::SnapshotWriter::create(snapshot, replacing());
  REQUIRE_FALSE(direct.ok());
  CHECK(direct.error().code() == ErrorCode::kReplaceNotCheckpoint);
}

TEST_CASE("the source, a directory holding it, or a path inside it is never the destination") {
  TempDir tmp;
  const fs::path source = tmp / "p" / "sub" / "src.npz";
  fs::create_directories(source.parent_path());
  REQUIRE(save(source, "npz", 7).ok());
  const std::string before = read_file(source);
  for (const fs::path& destination : {tmp / "p", tmp / "p" / "sub", source, tmp / "p" / "sub" / ".." / "sub"}) {
    CAPTURE(destination);
    auto status = save(destination, "npy", 1, replacing({source}));
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ErrorCode::kReplaceOverlapsSource);
    CHECK(read_file(source) == before);
  }
  // A directory source: nothing may be written inside it, even without --force.
  const fs::path snapshot = tmp / "snapshot";
  REQUIRE(save(snapshot, "oneflow", 3).ok());
  ckpt::WriteOptions plain;
  plain.sources = {snapshot};
  auto inside = save(snapshot / "w" / "copy.safetensors", "safetensors", 1, plain);
  REQUIRE_FALSE(inside.ok());
  CHECK(inside.error().code() == ErrorCode::kReplaceOverlapsSource);
  auto itself = save(snapshot, "oneflow", 4, replacing({snapshot}));
  REQUIRE_FALSE(itself.ok());
  CHECK(itself.error().code() == ErrorCode::kReplaceOverlapsSource);
  CHECK(value_in(snapshot) == 3);
  // A sibling is fine.
  REQUIRE(save(tmp / "p" / "sub" / "out", "npy", 5, replacing({source})).ok());
  CHECK(value_in(tmp / "p" / "sub" / "out") == 5);
}

TEST_CASE("a valid checkpoint, a single file and an empty directory are replaced") {
  TempDir tmp;
  for (std::string_view format : ckpt::checkpoint_formats()) {
    CAPTURE(format);
    const fs::path path = tmp / std::string(format);
    REQUIRE(save(path, format, 1).ok());
    REQUIRE(save(path, format, 2).ok());
    CHECK(value_in(path) == 2);
  }
  // A checkpoint of another format is a checkpoint too.
  REQUIRE(save(tmp / "oneflow", "npy", 9).ok());
  CHECK(value_in(tmp / "oneflow") == 9);
  write_file(tmp / "plain.bin", "anything");
  REQUIRE(save(tmp / "plain.bin", "safetensors", 4).ok());
  CHECK(value_in(tmp / "plain.bin") == 4);
  fs::create_directory(tmp / "empty");
  REQUIRE(save(tmp / "empty", "oneflow", 6).ok());
  CHECK(value_in(tmp / "empty") == 6);
}

TEST_CASE("a symbolic link or a FIFO at the destination is not replaced") {
  TempDir tmp;
  REQUIRE(save(tmp / "real", "oneflow", 1).ok());
  fs::create_directory_symlink(tmp / "real", tmp / "link");
  auto link = save(tmp / "link", "oneflow", 2);
  REQUIRE_FALSE(link.ok());
  CHECK(link.error().code() == ErrorCode::kReplaceSpecialFile);
  CHECK(link.error().message().find("symbolic link") != std::string::npos);
  CHECK(fs::is_symlink(tmp / "link"));
  CHECK(value_in(tmp / "real") == 1);
  REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  auto fifo = save(tmp / "fifo", "torch", 2);
  REQUIRE_FALSE(fifo.ok());
  CHECK(fifo.error().code() == ErrorCode::kReplaceSpecialFile);
}

TEST_CASE("a directory swapped in after the check is checked again before the rename") {
  TempDir tmp;
  const fs::path path = tmp / "ckpt";
  REQUIRE(save(path, "oneflow", 1).ok());
  auto writer = ckpt::create_checkpoint(path, "oneflow", replacing());
  REQUIRE(writer.ok());
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kUInt8, {1});
  std::byte byte{2};
  REQUIRE((*writer)->add("w", *meta, ckpt::MemorySource({&byte, 1})).ok());
  fs::rename(path, tmp / "moved");
  fs::create_directory(path);
  write_file(path / "diary.txt", "private");
  auto status = (*writer)->commit();
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code() == ErrorCode::kReplaceNotCheckpoint);
  CHECK(read_file(path / "diary.txt") == "private");
}

TEST_CASE("a replaced snapshot stays readable by a reader that opened it, and goes when it is done") {
  TempDir tmp;
  for (std::string_view format : {"oneflow", "npy"}) {
    CAPTURE(format);
    const fs::path path = tmp / std::string(format);
    REQUIRE(save(path, format, 1).ok());
    {
      auto reader = ckpt::open_checkpoint(path);
      REQUIRE(reader.ok());
      REQUIRE(save(path, format, 2).ok());
      CHECK(value_in(path) == 2);
      // The old generation was moved aside, not deleted: this reader reads it to the end.
      CHECK(std::to_integer<int>(ckpt::testing::read_all(**reader, "w").at(0)) == 1);
      const auto retired = siblings_with(tmp.path(), ckpt::kRetiredMarker);
      REQUIRE(retired.size() == 1);
      auto report = ckpt::validate_checkpoint(path, format);
      CHECK(report.count(ckpt::Severity::kError) == 0);
      bool reported = false;
      for (const auto& issue : report.issues) reported = reported || issue.message.find(retired[0]) != std::string::npos;
      CHECK(reported);
    }
    // The next replacing save removes what no reader holds any more.
    REQUIRE(save(path, format, 3).ok());
    CHECK(siblings_with(tmp.path(), ckpt::kRetiredMarker).empty());
    CHECK(value_in(path) == 3);
  }
}
