// OneFlow pickle directories (P1): OneFlow's bytes, nested objects, defects.
#include "ckpt/format/oneflow_pickle.hpp"

#include <doctest/doctest.h>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
namespace pickle = ckpt::pickle;
using ckpt::ErrorCode;

namespace {

fs::path emulated(std::string_view name) { return ckpt::testing::fixtures_root() / "oneflow-emulated" / name; }

ckpt::VariableMeta meta(ckpt::Shape shape) { return ckpt::VariableMeta::make(ckpt::DType::kFloat, std::move(shape)).value(); }

std::vector<float> read_floats(const ckpt::Snapshot& snapshot, std::string_view name) {
  const ckpt::VariableInfo* info = snapshot.find(name);
  REQUIRE_MESSAGE(info != nullptr, name);
  std::vector<float> values(info->byte_size / sizeof(float));
  REQUIRE(snapshot.read(name, std::as_writable_bytes(std::span(values))).ok());
  return values;
}

bool has_issue(const ckpt::ValidationReport& report, ErrorCode code, ckpt::Severity severity) {
  return std::any_of(report.issues.begin(), report.issues.end(),
                     [&](const ckpt::Issue& issue) { return issue.code == code && issue.severity == severity; });
}

}  // namespace

TEST_CASE("the writer reproduces OneFlow's P1 directories file for file") {
  struct Case {
    std::string_view fixture;
    int protocol;
    bool marker;
  };
  for (const Case& c : {Case{"B_pickle_dir_v0.6-0.9_py38plus_proto4", 4, false},
                        Case{"B_pickle_dir_v0.6-0.9_py37_proto3", 3, false},
                        Case{"B_pickle_dir_v1.0_py38plus_proto4", 4, true},
                        Case{"B_pickle_dir_v1.0_py37_proto3", 3, true}}) {
    CAPTURE(c.fixture);
    ckpt::testing::TempDir dir;
    auto writer = ckpt::OneflowPickleWriter::create(dir / "linear", {c.protocol, c.marker});
    REQUIRE(writer.ok());
    std::string weight = ckpt::testing::read_file(emulated(c.fixture) / "tensor_1" / "out");
    std::string bias = ckpt::testing::read_file(emulated(c.fixture) / "tensor_2" / "out");
    pickle::Value* state_dict = writer->state_dict();
    auto w = writer->add_tensor(meta({3, 2}), ckpt::MemorySource(ckpt::as_bytes(weight)));
    auto b = writer->add_tensor(meta({3}), ckpt::MemorySource(ckpt::as_bytes(bias)));
    REQUIRE(w.ok());
    REQUIRE(b.ok());
    state_dict->entries.emplace_back(writer->document().string("weight"), w.value());
    state_dict->entries.emplace_back(writer->document().string("bias"), b.value());
    REQUIRE(writer->commit(*state_dict).ok());
    CHECK(ckpt::testing::tree_contents(dir / "linear") == ckpt::testing::tree_contents(emulated(c.fixture)));
  }
}

TEST_CASE("the real frappe P1 file reads as a 42-tensor tree") {
  auto pickled = ckpt::read_oneflow_pickle(ckpt::testing::fixtures_root() / "oneflow-real" /
                                           "models_dcn_frappe_pickledir_proto3");
  REQUIRE_MESSAGE(pickled.ok(), pickled.error().describe());
  CHECK_FALSE(pickled->oneflow_marker);
  CHECK(pickled->data->ordered);
  CHECK(pickled->data->metadata == nullptr);
  REQUIRE(pickled->tensors.size() == 42);
  auto user = std::find_if(pickled->tensors.begin(), pickled->tensors.end(),
                           [](const auto& t) { return t.name == "embedding_dict.user.weight"; });
  REQUIRE(user != pickled->tensors.end());
  CHECK(user->directory == "tensor_1");
  CHECK(user->node->cls->text == "oneflow._oneflow_internal");
  CHECK(user->node->cls->name == "Tensor");
}

TEST_CASE("the tutorial's nested {model, optimizer, epoch} object round-trips through P1") {
  ckpt::testing::TempDir dir;
  auto writer = ckpt::OneflowPickleWriter::create(dir / "ckpt");
  REQUIRE(writer.ok());
  pickle::Document& doc = writer->document();
  std::vector<float> weight = {1, 2, 3, 4, 5, 6};
  std::vector<float> bias = {-1, 0.5, 7};
  std::vector<float> momentum = {0.25, 0.5, 0.75};
  auto add = [&](const std::vector<float>& values, ckpt::Shape shape) {
    auto node = writer->add_tensor(meta(std::move(shape)), ckpt::MemorySource(std::as_bytes(std::span(values))));
    REQUIRE(node.ok());
    return node.value();
  };
  pickle::Value* model = writer->state_dict();
  model->entries.emplace_back(doc.string("l1.weight"), add(weight, {2, 3}));
  const pickle::Value* bias_node = add(bias, {3});
  model->entries.emplace_back(doc.string("l1.bias"), bias_node);
  pickle::Value* top = ckpt::testing::tutorial_object(doc, model, 1, add(momentum, {3}));
  top->entries.emplace_back(doc.string("tied"), bias_node);  // one tensor under two names
  REQUIRE(writer->commit(*top).ok());

  auto snapshot = ckpt::Snapshot::open(dir / "ckpt");
  REQUIRE_MESSAGE(snapshot.ok(), snapshot.error().describe());
  std::vector<std::string> names;
  for (const auto& v : snapshot->variables()) names.push_back(v.name);
  CHECK(names == std::vector<std::string>{"model.l1.bias", "model.l1.weight", "optimizer.state.1.momentum_buffer", "tied"});
  CHECK(read_floats(*snapshot, "model.l1.weight") == weight);
  CHECK(snapshot->find("model.l1.weight")->meta->shape() == ckpt::Shape{2, 3});
  CHECK(read_floats(*snapshot, "model.l1.bias") == bias);
  CHECK(read_floats(*snapshot, "tied") == bias);
  CHECK(read_floats(*snapshot, "optimizer.state.1.momentum_buffer") == momentum);
  CHECK(ckpt::validate_snapshot(dir / "ckpt").issues.empty());

  auto pickled = ckpt::read_oneflow_pickle(dir / "ckpt");
  REQUIRE(pickled.ok());
  CHECK(pickled->data->find("epoch")->integer == 3);
  const pickle::Value* read_group = pickled->data->find("optimizer")->find("param_groups")->items.at(0);
  CHECK(read_group->find("lr")->real == 0.1);
  CHECK(read_group->find("params")->items.at(1)->integer == 1);
  CHECK(pickled->data->find("model")->metadata != nullptr);
  // Only three tensor directories: the tied one is stored once.
  CHECK(fs::exists(dir / "ckpt" / "tensor_3"));
  CHECK_FALSE(fs::exists(dir / "ckpt" / "tensor_4"));
}

TEST_CASE("P1 defects: escaping paths, missing and unreferenced tensor directories") {
  ckpt::testing::TempDir dir;
  // A valid directory to start from, then its pickled_data replaced.
  auto build = [&](const fs::path& root, std::vector<std::string> paths) {
    {
      auto writer = ckpt::OneflowPickleWriter::create(root);
      REQUIRE(writer.ok());
      std::vector<float> values = {1, 2};
      REQUIRE(writer->add_tensor(meta({2}), ckpt::MemorySource(std::as_bytes(std::span(values)))).ok());
      REQUIRE(writer->commit(*writer->state_dict()).ok());
    }
    pickle::Document doc;
    const pickle::Value* cls = doc.global("oneflow", "Tensor");
    pickle::Value* data = doc.dict(true);
    for (std::size_t i = 0; i < paths.size(); ++i) {
      pickle::Value* state = doc.dict();
      state->entries.emplace_back(doc.string("path"), doc.string(paths[i]));
      pickle::Value* tensor = doc.make(pickle::Kind::kOneflowTensor);
      tensor->cls = cls;
      tensor->state = state;
      data->entries.emplace_back(doc.string("t" + std::to_string(i)), tensor);
    }
    pickle::Value* top = doc.dict();
    top->entries.emplace_back(doc.string("protocol_version"), doc.integer(1));
    top->entries.emplace_back(doc.string("data"), data);
    auto bytes = pickle::write(*top, 4);
    REQUIRE(bytes.ok());
    ckpt::testing::write_file(root / "pickled_data", bytes.value());
  };

  build(dir / "escape", {"tensor_1", "../outside"});
  auto report = ckpt::validate_snapshot(dir / "escape");
  CHECK_FALSE(report.valid());
  CHECK(has_issue(report, ErrorCode::kUnsafeName, ckpt::Severity::kError));
  auto opened = ckpt::Snapshot::open(dir / "escape");
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == ErrorCode::kUnsafeName);
  CHECK(opened.error().variable() == "t1");
  CHECK(opened.error().describe().find("../outside") != std::string::npos);

  build(dir / "missing", {"tensor_1", "tensor_9"});
  report = ckpt::validate_snapshot(dir / "missing");
  CHECK(has_issue(report, ErrorCode::kMissingData, ckpt::Severity::kError));
  opened = ckpt::Snapshot::open(dir / "missing");
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == ErrorCode::kMissingData);
  CHECK(opened.error().variable() == "t1");

  build(dir / "unreferenced", {});
  report = ckpt::validate_snapshot(dir / "unreferenced");
  CHECK(report.valid());
  CHECK(has_issue(report, ErrorCode::kUnexpectedEntry, ckpt::Severity::kWarning));
  CHECK(report.variables.empty());

  // A hostile pickled_data is an error of the checkpoint, not a crash.
  fs::create_directories(dir / "hostile");
  ckpt::testing::write_file(dir / "hostile" / "pickled_data", std::string("\x80\x02" "cposix\nsystem\n."));
  opened = ckpt::Snapshot::open(dir / "hostile");
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == ErrorCode::kPickleForbiddenGlobal);
  CHECK(ckpt::validate_snapshot(dir / "hostile").layout == "P1");

  // The writer never replaces an existing checkpoint unless asked.
  CHECK(ckpt::OneflowPickleWriter::create(dir / "missing").error().code() == ErrorCode::kDestinationExists);
}
