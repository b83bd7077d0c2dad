// The pickle formats through the generic registry: "torch" and
// "oneflow-pickle" detection, objects carried between them, nesting.
#include "ckpt/format/checkpoint.hpp"

#include <algorithm>
#include <span>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "ckpt/format/pickle.hpp"
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
namespace pickle = ckpt::pickle;
using ckpt::ErrorCode;
using ckpt::testing::names_of;
using ckpt::testing::read_all;

namespace {

fs::path frappe() { return ckpt::testing::fixtures_root() / "oneflow-real" / "models_dcn_frappe_pickledir_proto3"; }

std::unique_ptr<ckpt::CheckpointReader> open(const fs::path& path) {
  auto reader = ckpt::open_checkpoint(path);
  REQUIRE_MESSAGE(reader.ok(), reader.error().describe());
  return std::move(reader).value();
}


// Copies every tensor and, where the source has one, its object.
void convert(const ckpt::CheckpointReader& reader, const fs::path& destination, std::string_view format) {
  auto writer = ckpt::create_checkpoint(destination, format);
  REQUIRE(writer.ok());
  for (const auto& tensor : reader.tensors()) {
    auto source = reader.open(tensor.name);
    REQUIRE(source.ok());
    REQUIRE((*writer)->add(tensor.name, tensor.meta, **source).ok());
  }
  if (reader.object() != nullptr) REQUIRE((*writer)->set_object(*reader.object()).ok());
  auto committed = (*writer)->commit();
  REQUIRE_MESSAGE(committed.ok(), committed.error().describe());
}

void check_same_tensors(const ckpt::CheckpointReader& a, const ckpt::CheckpointReader& b) {
  REQUIRE(names_of(a) == names_of(b));
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& name = a.tensors()[i].name;
    CAPTURE(name);
    CHECK(a.tensors()[i].meta == b.tensors()[i].meta);
    CHECK(read_all(a, name) == read_all(b, name));
  }
}

ckpt::VariableMeta floats(ckpt::Shape shape) {
  return ckpt::VariableMeta::make(ckpt::DType::kFloat, std::move(shape)).value();
}

// The tutorial's {"model": state_dict, "optimizer": opt.state_dict(), "epoch": 3}
// with placeholder tensor leaves, which a writer replaces by name.
const pickle::Value* tutorial_with_placeholders(pickle::Document& doc) {
  auto tensor = [&] { return doc.make(pickle::Kind::kTorchTensor); };
  pickle::Value* model = doc.dict(true);
  model->entries.emplace_back(doc.string("l1.weight"), tensor());
  model->entries.emplace_back(doc.string("l1.bias"), tensor());
  return ckpt::testing::tutorial_object(doc, model, 0, tensor());
}

const std::vector<std::pair<std::string, std::vector<float>>> kTutorialTensors = {
    {"model.l1.weight", {1, 2, 3, 4, 5, 6}},
    {"model.l1.bias", {-1, 0.5, 7}},
    {"optimizer.state.0.momentum_buffer", {0.25, 0.5, 0.75}},
};

void check_tutorial_object(const pickle::Value& data) {
  REQUIRE(data.kind == pickle::Kind::kDict);
  CHECK(data.find("epoch")->integer == 3);
  CHECK(data.find("model")->ordered);
  const pickle::Value* state = data.find("optimizer")->find("state");
  REQUIRE(state->entries.size() == 1);
  CHECK(state->entries[0].first->kind == pickle::Kind::kInt);
  CHECK(state->entries[0].first->integer == 0);
  const pickle::Value* group = data.find("optimizer")->find("param_groups")->items.at(0);
  CHECK(group->find("lr")->real == 0.1);
  CHECK(group->find("params")->items.at(1)->integer == 1);
}

}  // namespace

TEST_CASE("detection: P1 directories are oneflow-pickle, snapshots oneflow, torch.save zips torch") {
  CHECK(ckpt::detect_format(frappe()).value() == "oneflow-pickle");
  CHECK(ckpt::detect_format(ckpt::testing::fixtures_root() / "oneflow-emulated" / "B_pickle_dir_v1.0_py37_proto3").value() ==
        "oneflow-pickle");
  CHECK(ckpt::detect_format(ckpt::testing::fixtures_root() / "oneflow-emulated" / "A_legacy_v0.5_linear").value() ==
        "oneflow");
  auto p1 = open(frappe());
  CHECK(p1->format_name() == "oneflow-pickle");
  CHECK(p1->tensors().size() == 42);
  REQUIRE(p1->object() != nullptr);
  CHECK(p1->object()->ordered);

  // Asked for explicitly, the oneflow format still reads P1 through Snapshot.
  auto as_snapshot = ckpt::open_checkpoint(frappe(), {.format = "oneflow"});
  REQUIRE(as_snapshot.ok());
  check_same_tensors(*p1, **as_snapshot);
  CHECK(ckpt::open_checkpoint(ckpt::testing::fixtures_root() / "oneflow-emulated" / "A_legacy_v0.5_linear",
                              {.format = "oneflow-pickle"})
            .error()
            .code() == ErrorCode::kNotACheckpoint);

  ckpt::testing::TempDir dir;
  convert(*p1, dir / "frappe.pt", "torch");
  CHECK(ckpt::detect_format(dir / "frappe.pt").value() == "torch");
  ckpt::testing::write_file(dir / "plain.zip", std::string("PK\x05\x06", 4) + std::string(18, '\0'));
  CHECK(ckpt::detect_format(dir / "plain.zip").error().code() == ErrorCode::kRecognisedNotCheckpoint);
}

TEST_CASE("the real frappe P1 converts to torch and back with its object and equal bytes") {
  ckpt::testing::TempDir dir;
  auto p1 = open(frappe());
  convert(*p1, dir / "frappe.pt", "torch");
  auto torch = open(dir / "frappe.pt");
  CHECK(torch->format_name() == "torch");
  check_same_tensors(*p1, *torch);
  REQUIRE(torch->object() != nullptr);
  CHECK(torch->object()->ordered);
  CHECK(torch->object()->entries.size() == p1->object()->entries.size());

  convert(*torch, dir / "again", "oneflow-pickle");
  auto again = open(dir / "again");
  check_same_tensors(*p1, *again);
  CHECK(ckpt::validate_snapshot(dir / "again").issues.empty());
}

TEST_CASE("the tutorial's nested object round-trips through P1 and torch") {
  ckpt::testing::TempDir dir;
  pickle::Document doc;
  const pickle::Value* object = tutorial_with_placeholders(doc);
  auto writer = ckpt::create_checkpoint(dir / "p1", "oneflow-pickle");
  REQUIRE(writer.ok());
  for (const auto& [name, values] : kTutorialTensors) {
    auto added = (*writer)->add(name, floats({static_cast<std::int64_t>(values.size())}),
                                ckpt::MemorySource(std::as_bytes(std::span(values))));
    REQUIRE(added.ok());
  }
  REQUIRE((*writer)->set_object(*object).ok());
  REQUIRE((*writer)->commit().ok());

  auto p1 = open(dir / "p1");
  REQUIRE(p1->object() != nullptr);
  check_tutorial_object(*p1->object());
  convert(*p1, dir / "tutorial.pt", "torch");
  auto torch = open(dir / "tutorial.pt");
  check_tutorial_object(*torch->object());
  convert(*torch, dir / "back", "oneflow-pickle");
  auto back = open(dir / "back");
  check_tutorial_object(*back->object());
  check_same_tensors(*p1, *back);
  for (const auto& [name, values] : kTutorialTensors) {
    CAPTURE(name);
    auto bytes = read_all(*back, name);
    CHECK(std::equal(bytes.begin(), bytes.end(), std::as_bytes(std::span(values)).begin()));
  }

  // Flat formats keep the tensors only; nesting brings the tree of tensors back.
  convert(*p1, dir / "flat", "oneflow");
  auto flat = open(dir / "flat");
  CHECK(flat->object() == nullptr);
  auto nested_writer = ckpt::create_checkpoint(dir / "nested.pt", "torch");
  REQUIRE(nested_writer.ok());
  REQUIRE((*nested_writer)->set_nesting({"model", "optimizer.state.*"}).ok());
  for (const auto& tensor : flat->tensors()) {
    REQUIRE((*nested_writer)->add(tensor.name, tensor.meta, *flat->open(tensor.name).value()).ok());
  }
  REQUIRE((*nested_writer)->commit().ok());
  auto nested = open(dir / "nested.pt");
  check_same_tensors(*flat, *nested);
  const pickle::Value* top = nested->object();
  CHECK(top->find("model")->ordered);
  CHECK(top->find("model")->find("l1.weight") != nullptr);
  const pickle::Value* state = top->find("optimizer")->find("state");
  REQUIRE(state->entries.size() == 1);
  CHECK(state->entries[0].first->integer == 0);
  CHECK(state->entries[0].second->find("momentum_buffer")->kind == pickle::Kind::kTorchTensor);
}

TEST_CASE("nesting rule: longest prefix, int segments, names flatten back, conflicts refused") {
  pickle::Document doc;
  auto leaf = [&] { return static_cast<const pickle::Value*>(doc.make(pickle::Kind::kTorchTensor)); };
  std::vector<std::pair<std::string, const pickle::Value*>> tensors = {
      {"model.layers.0.weight", leaf()}, {"model.head.bias", leaf()}, {"model.head.007", leaf()},
      {"ema.model.w", leaf()},           {"step", leaf()},           {"optimizer.state.12.exp_avg", leaf()},
  };
  std::vector<std::string> prefixes = {"model", "model.head", "optimizer.state.*"};
  auto make_state_dict = [&] { return doc.dict(true); };
  auto top = pickle::nest_tensors(doc, tensors, prefixes, make_state_dict, "<test>");
  REQUIRE(top.ok());
  CHECK((*top)->find("model")->find("layers.0.weight") != nullptr);
  CHECK((*top)->find("model")->find("head")->find("bias") != nullptr);
  CHECK((*top)->find("model")->find("head")->find("007") != nullptr);  // leading zero: a str key
  CHECK((*top)->find("ema.model.w") != nullptr);
  CHECK((*top)->find("step") != nullptr);
  const pickle::Value* state = (*top)->find("optimizer")->find("state");
  CHECK(state->entries.at(0).first->integer == 12);
  auto flattened = pickle::named_tensors(**top, "<test>");
  REQUIRE(flattened.ok());
  std::vector<std::string> names;
  for (const auto& tensor : *flattened) names.push_back(tensor.name);
  std::vector<std::string> expected;
  for (const auto& [name, node] : tensors) expected.push_back(name);
  std::sort(expected.begin(), expected.end());
  CHECK(names == expected);

  std::vector<std::pair<std::string, const pickle::Value*>> clash = {{"model", leaf()}, {"model.w", leaf()}};
  auto refused = pickle::nest_tensors(doc, clash, prefixes, make_state_dict, "<test>");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == ErrorCode::kDuplicateName);
  CHECK(refused.error().variable() == "model.w");
}

TEST_CASE("pickle writers refuse objects and names that do not match, and never overwrite") {
  ckpt::testing::TempDir dir;
  std::vector<float> values = {1, 2, 3};
  ckpt::MemorySource data(std::as_bytes(std::span(values)));
  pickle::Document doc;
  const pickle::Value* object = tutorial_with_placeholders(doc);
  for (std::string_view format : {"torch", "oneflow-pickle"}) {
    CAPTURE(format);
    auto missing = ckpt::create_checkpoint(dir / fmt::format("{}-missing", format), format).value();
    REQUIRE(missing->add("model.l1.weight", floats({3}), data).ok());
    REQUIRE(missing->set_object(*object).ok());
    auto status = missing->commit();
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ErrorCode::kMissingData);
    CHECK(status.error().variable() == "model.l1.bias");

    auto extra = ckpt::create_checkpoint(dir / fmt::format("{}-extra", format), format).value();
    for (const auto& [name, tensor_values] : kTutorialTensors) REQUIRE(extra->add(name, floats({3}), data).ok());
    REQUIRE(extra->add("stray", floats({3}), data).ok());
    REQUIRE(extra->set_object(*object).ok());
    status = extra->commit();
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().variable() == "stray");

    auto twice = ckpt::create_checkpoint(dir / fmt::format("{}-twice", format), format).value();
    REQUIRE(twice->add("a", floats({3}), data).ok());
    CHECK(twice->add("a", floats({3}), data).error().code() == ErrorCode::kDuplicateName);
    CHECK_FALSE(fs::exists(dir / fmt::format("{}-twice", format)));
  }
  CHECK(ckpt::create_checkpoint(dir / "flat", "oneflow").value()->set_nesting({"model"}).error().code() ==
        ErrorCode::kInvalidArgument);
  ckpt::testing::write_file(dir / "exists.pt", "old");
  CHECK(ckpt::create_checkpoint(dir / "exists.pt", "torch").error().code() == ErrorCode::kDestinationExists);
  CHECK(ckpt::testing::read_file(dir / "exists.pt") == "old");
}

TEST_CASE("torch has a collecting validator: every broken tensor reported, the sound ones listed") {
  ckpt::testing::TempDir dir;
  const fs::path path = dir / "three.pt";
  {
    auto writer = ckpt::create_checkpoint(path, "torch");
    REQUIRE(writer.ok());
    for (const auto& [name, values] : kTutorialTensors) {
      ckpt::MemorySource data(std::as_bytes(std::span(values)));
      REQUIRE((*writer)->add(name, floats({static_cast<std::int64_t>(values.size())}), data).ok());
    }
    REQUIRE((*writer)->commit().ok());
  }
  auto clean = ckpt::validate_checkpoint(path);
  CHECK(clean.format == "torch");
  CHECK(clean.issues.empty());
  CHECK(clean.variables.size() == 3);

  // Renames the storage records of two tensors (same length, in the local
  // and the central headers), so their data.pkl references dangle.
  std::string bytes = ckpt::testing::read_file(path);
  for (auto [from, to] : {std::pair{"/data/1", "/data/x"}, std::pair{"/data/2", "/data/y"}}) {
    std::size_t replaced = 0;
    for (auto at = bytes.find(from); at != std::string::npos; at = bytes.find(from, at + 1), ++replaced) {
      bytes.replace(at, std::string_view(to).size(), to);
    }
    REQUIRE(replaced == 2);
  }
  ckpt::testing::write_file(path, bytes);

  auto report = ckpt::validate_checkpoint(path);
  REQUIRE(report.issues.size() == 2);
  for (const auto& issue : report.issues) {
    CHECK(issue.code == ErrorCode::kMissingData);
    CHECK(issue.severity == ckpt::Severity::kError);
  }
  CHECK(report.issues[0].variable != report.issues[1].variable);
  REQUIRE(report.variables.size() == 1);
  CHECK(report.variables[0].name == "model.l1.weight");  // its record, data/0, is untouched
  CHECK(report.variables[0].byte_size == 4 * 6);
  // Opening stops at the first of them.
  CHECK(ckpt::open_checkpoint(path).error().code() == ErrorCode::kMissingData);
}

TEST_CASE("torch: a contiguous tensor is a window of the file itself, so it can be mapped") {
  ckpt::testing::TempDir dir;
  const fs::path path = dir / "model.pt";
  auto reader = open(frappe());
  convert(*reader, path, "torch");
  auto torch = open(path);
  CHECK(torch->layout() == "zip");
  auto file = ckpt::FileSource::open(path);
  REQUIRE(file.ok());
  for (const auto& tensor : torch->tensors()) {
    CAPTURE(tensor.name);
    auto source = torch->open(tensor.name);
    REQUIRE(source.ok());
    CHECK((*source)->file_descriptor() >= 0);
    // torch.save stores records at 64-byte boundaries: aligned for every dtype.
    CHECK((*source)->file_offset() % 64 == 0);
    std::vector<std::byte> in_file((*source)->size());
    REQUIRE(file->read_at((*source)->file_offset(), in_file).ok());
    CHECK(in_file == read_all(*reader, tensor.name));
  }
}
