// Broken snapshots, one defect each, built from a good one; each must be
// reported with its exact code by the validator and stop the reader.
#include "ckpt/format/validate.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <set>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using ckpt::Severity;
using ckpt::testing::write_file;

namespace {

// weight [2, 3] kFloat, step [] kInt64.
void write_good_snapshot(const fs::path& root) {
  auto writer = ckpt::SnapshotWriter::create(root);
  REQUIRE(writer.ok());
  auto weight = ckpt::VariableMeta::make(ckpt::DType::kFloat, {2, 3});
  auto step = ckpt::VariableMeta::make(ckpt::DType::kInt64, {});
  REQUIRE((weight.ok() && step.ok()));
  REQUIRE(writer->add("weight", *weight, ckpt::testing::random_bytes(24, 1)).ok());
  REQUIRE(writer->add("step", *step, ckpt::testing::random_bytes(8, 2)).ok());
  REQUIRE(writer->commit().ok());
}

struct Defect {
  std::string_view what;
  std::function<void(const fs::path& root, const fs::path& outside)> apply;
  ErrorCode code;
  Severity severity;
  std::string_view variable;  // the variable the issue must name, if any
};

const std::vector<Defect>& defects() {
  static const std::vector<Defect> all = {
      {"truncated out", [](auto& r, auto&) { fs::resize_file(r / "weight/out", 20); },
       ErrorCode::kDataSizeMismatch, Severity::kError, "weight"},
      {"extra bytes in out", [](auto& r, auto&) { fs::resize_file(r / "step/out", 9); },
       ErrorCode::kDataSizeMismatch, Severity::kError, "step"},
      {"unknown dtype number", [](auto& r, auto&) { write_file(r / "weight/meta", "shape { dim: 6 }\ndata_type: 42\n"); },
       ErrorCode::kMetaUnknownDataType, Severity::kError, "weight"},
      {"unknown dtype name", [](auto& r, auto&) { write_file(r / "weight/meta", "shape { dim: 6 }\ndata_type: kF32\n"); },
       ErrorCode::kMetaUnknownDataType, Severity::kError, "weight"},
      {"dtype without fixed size",
       [](auto& r, auto&) { write_file(r / "weight/meta", "shape { dim: 6 }\ndata_type: kTensorBuffer\n"); },
       ErrorCode::kMetaUnsupportedDataType, Severity::kError, "weight"},
      {"negative dim", [](auto& r, auto&) { write_file(r / "weight/meta", "shape { dim: -6 }\ndata_type: kFloat\n"); },
       ErrorCode::kMetaNegativeDim, Severity::kError, "weight"},
      {"overflowing dims",
       [](auto& r, auto&) {
         write_file(r / "weight/meta", "shape { dim: 9223372036854775807 dim: 3 }\ndata_type: kFloat\n");
       },
       ErrorCode::kMetaCountOverflow, Severity::kError, "weight"},
      {"garbage meta", [](auto& r, auto&) { write_file(r / "weight/meta", "\x7f" "ELF\x02\x01\x01 binary junk {{"); },
       ErrorCode::kMetaSyntax, Severity::kError, "weight"},
      {"meta without data_type", [](auto& r, auto&) { write_file(r / "weight/meta", "shape { dim: 6 }\n"); },
       ErrorCode::kMetaNoDataType, Severity::kError, "weight"},
      {"huge meta", [](auto& r, auto&) { write_file(r / "weight/meta", std::string(1 << 20, '#')); },
       ErrorCode::kMetaTooLarge, Severity::kError, "weight"},
      {"meta missing beside others", [](auto& r, auto&) { fs::remove(r / "step/meta"); },
       ErrorCode::kMetaMissing, Severity::kError, "step"},
      {"meta is a directory", [](auto& r, auto&) { fs::remove(r / "step/meta"); fs::create_directory(r / "step/meta"); },
       ErrorCode::kDataNotFile, Severity::kError, "step"},
      {"unknown field in meta",
       [](auto& r, auto&) { write_file(r / "step/meta", "shape {\n}\ndata_type: kInt64\nsbp: 1\n"); },
       ErrorCode::kMetaUnknownField, Severity::kWarning, "step"},
      {"missing snapshot_done", [](auto& r, auto&) { fs::remove(r / "snapshot_done"); },
       ErrorCode::kMissingSnapshotDone, Severity::kError, ""},
      {"snapshot_done not empty", [](auto& r, auto&) { write_file(r / "snapshot_done", "done"); },
       ErrorCode::kSnapshotDoneNotEmpty, Severity::kWarning, ""},
      {"snapshot_done is a directory",
       [](auto& r, auto&) { fs::remove(r / "snapshot_done"); fs::create_directory(r / "snapshot_done"); },
       ErrorCode::kSnapshotDoneNotFile, Severity::kError, ""},
      {"name with a newline", [](auto& r, auto&) { fs::rename(r / "step", r / "st\nep"); },
       ErrorCode::kUnsafeName, Severity::kError, "st\nep"},
      {"name with a control character", [](auto& r, auto&) { fs::rename(r / "step", r / "st\x01" "ep"); },
       ErrorCode::kUnsafeName, Severity::kError, "st\x01" "ep"},
      {"out links outside",
       [](auto& r, auto& outside) {
         write_file(outside / "secret", std::string(8, 'x'));
         fs::remove(r / "step/out");
         fs::create_symlink(outside / "secret", r / "step/out");
       },
       ErrorCode::kEscapingSymlink, Severity::kError, "step"},
      {"out links outside through ..",
       [](auto& r, auto& outside) {
         write_file(outside / "secret", std::string(8, 'x'));
         fs::remove(r / "step/out");
         fs::create_symlink(fs::relative(outside / "secret", r / "step"), r / "step/out");
       },
       ErrorCode::kEscapingSymlink, Severity::kError, "step"},
      {"meta links outside",
       [](auto& r, auto& outside) {
         write_file(outside / "meta", "shape {\n}\ndata_type: kInt64\n");
         fs::remove(r / "step/meta");
         fs::create_symlink(outside / "meta", r / "step/meta");
       },
       ErrorCode::kEscapingSymlink, Severity::kError, "step"},
      {"variable directory links outside",
       [](auto& r, auto& outside) {
         fs::rename(r / "step", outside / "step");
         fs::create_symlink(outside / "step", r / "step");
       },
       ErrorCode::kEscapingSymlink, Severity::kError, "step"},
      {"out is a directory", [](auto& r, auto&) { fs::remove(r / "step/out"); fs::create_directory(r / "step/out"); },
       ErrorCode::kDataNotFile, Severity::kError, "step"},
      {"variable directory without out", [](auto& r, auto&) { fs::create_directory(r / "stray"); },
       ErrorCode::kMissingData, Severity::kWarning, "stray"},
      {"stray file at the top", [](auto& r, auto&) { write_file(r / "notes.txt", "hi"); },
       ErrorCode::kUnexpectedEntry, Severity::kWarning, ""},
      {"stray file in a variable", [](auto& r, auto&) { write_file(r / "step/out.bak", "hi"); },
       ErrorCode::kUnexpectedEntry, Severity::kWarning, "step"},
      {"leftover staging directory",
       [](auto& r, auto&) { fs::create_directory(r / ".x.ckpt-tmp-1-0-0"); },
       ErrorCode::kUnexpectedEntry, Severity::kWarning, ""},
  };
  return all;
}

}  // namespace

TEST_CASE("the good snapshot has no issue") {
  ckpt::testing::TempDir dir;
  write_good_snapshot(dir / "ckpt");
  auto report = ckpt::validate_snapshot(dir / "ckpt");
  CHECK(report.valid());
  CHECK(report.issues.empty());
  CHECK(report.variables.size() == 2);
}

TEST_CASE("each defect is reported with its code, severity and variable") {
  for (const Defect& defect : defects()) {
    CAPTURE(defect.what);
    ckpt::testing::TempDir dir;
    fs::path root = dir / "ckpt";
    fs::path outside = dir / "outside";
    fs::create_directory(outside);
    write_good_snapshot(root);
    defect.apply(root, outside);

    auto report = ckpt::validate_snapshot(root);
    REQUIRE(report.issues.size() == 1);
    const ckpt::Issue& issue = report.issues[0];
    CHECK(issue.code == defect.code);
    CHECK(issue.severity == defect.severity);
    CHECK(issue.variable == defect.variable);
    CHECK(issue.message.find(root.string()) != std::string::npos);  // names the file
    CHECK(report.valid() == (defect.severity == Severity::kWarning));

    auto snapshot = ckpt::Snapshot::open(root);
    if (defect.severity == Severity::kError) {
      REQUIRE_FALSE(snapshot.ok());
      CHECK(snapshot.error().code() == defect.code);
      CHECK(snapshot.error().variable() == defect.variable);
    } else {
      CHECK(snapshot.ok());
    }
  }
}

TEST_CASE("the validator collects every problem, the reader stops at the first") {
  ckpt::testing::TempDir dir;
  fs::path root = dir / "ckpt";
  write_good_snapshot(root);
  fs::resize_file(root / "weight/out", 4);
  write_file(root / "step/meta", "shape { dim: -1 dim: -2 }\ndata_type: kInt64\n");
  fs::remove(root / "snapshot_done");
  write_file(root / "README", "x");

  auto report = ckpt::validate_snapshot(root);
  std::multiset<ErrorCode> codes;
  for (const auto& issue : report.issues) codes.insert(issue.code);
  CHECK(codes == std::multiset<ErrorCode>{ErrorCode::kDataSizeMismatch, ErrorCode::kMetaNegativeDim,
                                          ErrorCode::kMetaNegativeDim, ErrorCode::kMissingSnapshotDone,
                                          ErrorCode::kUnexpectedEntry});
  CHECK_FALSE(report.valid());
  CHECK(ckpt::Snapshot::open(root).error().code() == ErrorCode::kMetaNegativeDim);  // "step" sorts first
}

TEST_CASE("what is not a checkpoint at all") {
  ckpt::testing::TempDir dir;
  fs::create_directory(dir / "empty");
  auto empty = ckpt::validate_snapshot(dir / "empty");
  REQUIRE(empty.issues.size() == 1);
  CHECK(empty.issues[0].code == ErrorCode::kNotACheckpoint);
  CHECK(empty.layout.empty());

  write_file(dir / "marker_only" / "snapshot_done", "");
  auto marker_only = ckpt::validate_snapshot(dir / "marker_only");
  REQUIRE(marker_only.issues.size() == 1);
  CHECK(marker_only.issues[0].code == ErrorCode::kEmptySnapshot);
  CHECK(marker_only.valid());

  write_file(dir / "file", "x");
  CHECK(ckpt::validate_snapshot(dir / "file").issues.at(0).code == ErrorCode::kNotADirectory);
  CHECK(ckpt::validate_snapshot(dir / "missing").issues.at(0).code == ErrorCode::kNotFound);
  CHECK(ckpt::Snapshot::open(dir / "missing").error().code() == ErrorCode::kNotFound);
}

TEST_CASE("a graph export (G1) needs no snapshot_done") {
  ckpt::testing::TempDir dir;
  fs::path root = dir / "graph";
  write_good_snapshot(root);
  fs::remove(root / "snapshot_done");
  write_file(root / "model.mlir", "module {}\n");
  auto report = ckpt::validate_snapshot(root);
  CHECK(report.layout == "G1");
  CHECK(report.issues.empty());
  auto snapshot = ckpt::Snapshot::open(root);
  REQUIRE(snapshot.ok());
  CHECK(snapshot->layout() == ckpt::Layout::kGraph);
}
