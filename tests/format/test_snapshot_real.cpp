// The real OneFlow checkpoints in tests/data/oneflow-real/.
#include "ckpt/format/snapshot.hpp"

#include <doctest/doctest.h>

#include <cstring>

#include "ckpt/format/meta.hpp"
#include "test_support.hpp"

using ckpt::ErrorCode;
using ckpt::Layout;

namespace {

std::filesystem::path real(std::string_view name) { return ckpt::testing::fixtures_root() / "oneflow-real" / name; }

float first_float(std::span<const std::byte> bytes) {
  float value = 0;
  std::memcpy(&value, bytes.data(), sizeof value);
  return value;
}

}  // namespace

TEST_CASE("mobilenetv3 (E1, OneFlow 0.4) is valid with 210 variables") {
  auto path = real("models_mobilenetv3_legacy_eager");
  auto report = ckpt::validate_snapshot(path);
  CHECK(report.valid());
  CHECK(report.issues.empty());
  CHECK(report.layout == "L1/E1");
  CHECK(report.variables.size() == 210);

  auto snapshot = ckpt::Snapshot::open(path);
  REQUIRE(snapshot.ok());
  CHECK(snapshot->layout() == Layout::kSnapshot);
  REQUIRE(snapshot->variables().size() == 210);
  std::uint64_t total = 0;
  for (const auto& v : snapshot->variables()) {
    REQUIRE(v.meta.has_value());
    CHECK(v.meta->dtype() == ckpt::DType::kFloat);
    total += v.byte_size;
  }
  CHECK(total == 10'219'872);
  CHECK(std::is_sorted(snapshot->variables().begin(), snapshot->variables().end(),
                       [](const auto& a, const auto& b) { return a.name < b.name; }));

  const auto* weight = snapshot->find("classifier.3.weight");
  REQUIRE(weight != nullptr);
  CHECK(weight->meta->shape() == ckpt::Shape{1000, 1024});
  CHECK(weight->byte_size == 4'096'000);
  CHECK(ckpt::meta_to_text(*snapshot->find("features.0.0.weight")->meta) ==
        ckpt::testing::read_file(path / "features.0.0.weight" / "meta"));
}

TEST_CASE("the three read modes give the same bytes") {
  auto snapshot = ckpt::Snapshot::open(real("models_mobilenetv3_legacy_eager"));
  REQUIRE(snapshot.ok());
  const std::string name = "classifier.3.bias";
  const auto* info = snapshot->find(name);
  REQUIRE(info != nullptr);

  std::vector<std::byte> buffer(info->byte_size);
  REQUIRE(snapshot->read(name, buffer).ok());
  CHECK(first_float(buffer) == doctest::Approx(-0.4402038f));  // out begins 64 62 e1 be

  auto mapped = snapshot->map(name);
  REQUIRE(mapped.ok());
  CHECK(std::equal(buffer.begin(), buffer.end(), mapped->bytes().begin(), mapped->bytes().end()));

  std::vector<std::byte> chunked;
  std::size_t calls = 0;
  REQUIRE(snapshot
              ->read_chunks(name, 333,
                            [&](std::span<const std::byte> piece) -> ckpt::Status {
                              CHECK(piece.size() <= 333);
                              chunked.insert(chunked.end(), piece.begin(), piece.end());
                              ++calls;
                              return {};
                            })
              .ok());
  CHECK(chunked == buffer);
  CHECK(calls == (info->byte_size + 332) / 333);

  std::vector<std::byte> wrong(info->byte_size + 1);
  CHECK(snapshot->read(name, wrong).error().code() == ErrorCode::kBufferSizeMismatch);
  auto missing = snapshot->read("no.such.variable", buffer);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == ErrorCode::kUnknownVariable);
  CHECK(missing.error().variable() == "no.such.variable");
}

TEST_CASE("the lazy MLP (L0, no meta) is readable, with a warning per variable") {
  auto path = real("doc_lazy_legacy_mlp_models_1");
  auto report = ckpt::validate_snapshot(path);
  CHECK(report.valid());
  CHECK(report.layout == "L0");
  CHECK(report.variables.size() == 5);
  CHECK(report.count(ckpt::Severity::kWarning) == 5);
  for (const auto& issue : report.issues) CHECK(issue.code == ErrorCode::kMetaMissing);

  auto snapshot = ckpt::Snapshot::open(path);
  REQUIRE(snapshot.ok());
  CHECK(snapshot->layout() == Layout::kLazy);
  const auto* step = snapshot->find("System-Train-TrainStep-train_job");
  REQUIRE(step != nullptr);
  CHECK_FALSE(step->meta.has_value());
  CHECK(step->byte_size == 8);
  std::int64_t value = 0;
  REQUIRE(snapshot->read(step->name, std::as_writable_bytes(std::span(&value, 1))).ok());
  CHECK(value == 30000);
  CHECK(snapshot->find("Dense_5-weight")->byte_size == 1'605'632);
}

TEST_CASE("the DCN pickle directory (P1) reads its 42 tensors under their state_dict keys") {
  auto path = real("models_dcn_frappe_pickledir_proto3");
  auto report = ckpt::validate_snapshot(path);
  CHECK(report.valid());
  CHECK(report.issues.empty());
  CHECK(report.layout == "P1");
  CHECK(report.variables.size() == 42);

  auto snapshot = ckpt::Snapshot::open(path);
  REQUIRE_MESSAGE(snapshot.ok(), snapshot.error().describe());
  CHECK(snapshot->layout() == Layout::kPickleDir);
  REQUIRE(snapshot->variables().size() == 42);
  const auto* user = snapshot->find("embedding_dict.user.weight");
  REQUIRE(user != nullptr);
  CHECK(user->meta->shape() == ckpt::Shape{957, 10});
  CHECK(snapshot->data_path(user->name) == path / "tensor_1" / "out");
  std::vector<std::byte> buffer(user->byte_size);
  REQUIRE(snapshot->read(user->name, buffer).ok());
  CHECK(first_float(buffer) == doctest::Approx(-0.21128613f));  // tensor_1/out begins 64 5b 58 be
  CHECK(snapshot->find("dnn.linears.0.weight")->meta->shape() == ckpt::Shape{400, 100});
  CHECK(snapshot->find("out.bias")->byte_size == 4);
  CHECK(snapshot->find("tensor_1") == nullptr);
}

TEST_CASE("the emulated 0.5 Linear snapshot reads back its known values") {
  auto snapshot = ckpt::Snapshot::open(ckpt::testing::fixtures_root() / "oneflow-emulated" / "A_legacy_v0.5_linear");
  REQUIRE(snapshot.ok());
  std::vector<float> bias(3);
  REQUIRE(snapshot->read("bias", std::as_writable_bytes(std::span(bias))).ok());
  CHECK(bias == std::vector<float>{0.5f, -1.0f, 2.0f});
  CHECK(snapshot->find("weight")->meta->shape() == ckpt::Shape{3, 2});
}
