// OneFlow pickle directories (P1): OneFlow's bytes, nested objects, defects.
#include "ckpt/format/oneflow_pickle.hpp"

#include <doctest/doctest.h>

#include <functional>

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

namespace {

// A P1 directory of two float tensors [2] (tensor_1 = {1, 2}, tensor_2 = {3, 4}) whose object is
// made by `object` from the tensor nodes.
void write_two_tensors(const fs::path& root,
                       const std::function<const pickle::Value*(pickle::Document&, const pickle::Value*,
                                                                const pickle::Value*)>& object) {
  auto writer = ckpt::OneflowPickleWriter::create(root);
  REQUIRE(writer.ok());
  std::vector<float> first = {1, 2};
  std::vector<float> second = {3, 4};
  auto a = writer->add_tensor(meta({2}), ckpt::MemorySource(std::as_bytes(std::span(first))));
  auto b = writer->add_tensor(meta({2}), ckpt::MemorySource(std::as_bytes(std::span(second))));
  REQUIRE((a.ok() && b.ok()));
  REQUIRE(writer->commit(*object(writer->document(), *a, *b)).ok());
}

std::vector<std::string> issue_variables(const ckpt::ValidationReport& report, ErrorCode code) {
  std::vector<std::string> variables;
  for (const ckpt::Issue& issue : report.issues) {
    if (issue.code == code) variables.push_back(issue.variable);
  }
  return variables;
}

}  // namespace

TEST_CASE("a refused pickled_data over valid tensor_N directories falls back to those names with E730") {
  ckpt::testing::TempDir dir;
  const std::string refused = std::string("\x80\x02" "cposix\nsystem\n.");
  auto state_dict = [](pickle::Document& doc, const pickle::Value* a, const pickle::Value* b) {
    pickle::Value* dict = doc.dict();
    dict->entries.emplace_back(doc.string("a"), a);
    dict->entries.emplace_back(doc.string("b"), b);
    return dict;
  };
  write_two_tensors(dir / "refused", state_dict);
  ckpt::testing::write_file(dir / "refused" / "pickled_data", refused);

  auto snapshot = ckpt::Snapshot::open(dir / "refused");
  REQUIRE_MESSAGE(snapshot.ok(), snapshot.error().describe());
  CHECK(snapshot->layout() == ckpt::Layout::kPickleDir);
  CHECK(snapshot->pickle() == nullptr);
  REQUIRE(snapshot->variables().size() == 2);
  CHECK(read_floats(*snapshot, "tensor_1") == std::vector<float>{1, 2});
  CHECK(read_floats(*snapshot, "tensor_2") == std::vector<float>{3, 4});
  auto report = ckpt::validate_snapshot(dir / "refused");
  CHECK(report.valid());
  CHECK(has_issue(report, ErrorCode::kPickleNamesFallback, ckpt::Severity::kWarning));
  CHECK_FALSE(has_issue(report, ErrorCode::kPickleForbiddenGlobal, ckpt::Severity::kError));
  bool quoted = false;  // the warning says why pickled_data gave no names
  for (const ckpt::Issue& issue : report.issues) quoted |= issue.message.find("E704") != std::string::npos;
  CHECK(quoted);

  // A global tensor's directory is one of OneFlow's names too.
  write_two_tensors(dir / "global", state_dict);
  ckpt::testing::write_file(dir / "global" / "pickled_data", refused);
  fs::rename(dir / "global" / "tensor_2", dir / "global" / "global_tensor_7");
  auto global = ckpt::Snapshot::open(dir / "global");
  REQUIRE_MESSAGE(global.ok(), global.error().describe());
  CHECK(read_floats(*global, "global_tensor_7") == std::vector<float>{3, 4});

  // A directory that is not a valid tensor_N keeps the refusal an error.
  write_two_tensors(dir / "no_meta", state_dict);
  ckpt::testing::write_file(dir / "no_meta" / "pickled_data", refused);
  fs::remove(dir / "no_meta" / "tensor_2" / "meta");
  CHECK(ckpt::Snapshot::open(dir / "no_meta").error().code() == ErrorCode::kPickleForbiddenGlobal);
  write_two_tensors(dir / "other_name", state_dict);
  ckpt::testing::write_file(dir / "other_name" / "pickled_data", refused);
  fs::rename(dir / "other_name" / "tensor_2", dir / "other_name" / "weights");
  CHECK(ckpt::Snapshot::open(dir / "other_name").error().code() == ErrorCode::kPickleForbiddenGlobal);
  auto other_report = ckpt::validate_snapshot(dir / "other_name");
  CHECK(has_issue(other_report, ErrorCode::kPickleForbiddenGlobal, ckpt::Severity::kError));
  CHECK_FALSE(has_issue(other_report, ErrorCode::kPickleNamesFallback, ckpt::Severity::kWarning));
  // A truncated pickle is damage, not policy: still refused.
  write_two_tensors(dir / "truncated", state_dict);
  ckpt::testing::write_file(dir / "truncated" / "pickled_data", std::string("\x80\x02}q\x00"));
  CHECK(ckpt::Snapshot::open(dir / "truncated").error().code() == ErrorCode::kPickleTruncated);
}

TEST_CASE("a tensor the pickle holds outside any dict or list is read under its directory name with E730") {
  ckpt::testing::TempDir dir;
  // {"named": a, "bag": {b}}: a set gives its items no names.
  write_two_tensors(dir / "set", [](pickle::Document& doc, const pickle::Value* a, const pickle::Value* b) {
    pickle::Value* bag = doc.make(pickle::Kind::kSet);
    bag->items.push_back(b);
    pickle::Value* dict = doc.dict();
    dict->entries.emplace_back(doc.string("named"), a);
    dict->entries.emplace_back(doc.string("bag"), bag);
    return dict;
  });
  auto snapshot = ckpt::Snapshot::open(dir / "set");
  REQUIRE_MESSAGE(snapshot.ok(), snapshot.error().describe());
  REQUIRE(snapshot->variables().size() == 2);
  CHECK(read_floats(*snapshot, "named") == std::vector<float>{1, 2});
  CHECK(read_floats(*snapshot, "tensor_2") == std::vector<float>{3, 4});
  auto report = ckpt::validate_snapshot(dir / "set");
  CHECK(report.valid());
  CHECK(issue_variables(report, ErrorCode::kPickleNamesFallback) == std::vector<std::string>{"tensor_2"});
  CHECK_FALSE(has_issue(report, ErrorCode::kUnexpectedEntry, ckpt::Severity::kWarning));
}

TEST_CASE("E480 in a P1 directory names the tensor by its dotted name") {
  ckpt::testing::TempDir dir;
  write_two_tensors(dir / "bf16", [](pickle::Document& doc, const pickle::Value* a, const pickle::Value* b) {
    pickle::Value* layer = doc.dict();
    layer->entries.emplace_back(doc.string("weight"), a);
    layer->entries.emplace_back(doc.string("bias"), b);
    pickle::Value* dict = doc.dict();
    dict->entries.emplace_back(doc.string("layer"), layer);
    return dict;
  });
  // tensor_1 becomes a kBFloat16 [2] whose out holds two float32 values, as OneFlow 0.9 saves it.
  ckpt::testing::write_file(dir / "bf16" / "tensor_1" / "meta", "shape {\n  dim: 2\n}\ndata_type: kBFloat16\n");
  auto report = ckpt::validate_snapshot(dir / "bf16");
  CHECK(report.valid());
  CHECK(issue_variables(report, ErrorCode::kBf16StoredAsFloat32) == std::vector<std::string>{"layer.weight"});
  auto snapshot = ckpt::Snapshot::open(dir / "bf16");
  REQUIRE(snapshot.ok());
  std::vector<std::uint16_t> bits(2);
  REQUIRE(snapshot->read("layer.weight", std::as_writable_bytes(std::span(bits))).ok());
  CHECK(bits == std::vector<std::uint16_t>{0x3f80, 0x4000});  // 1.0 and 2.0
}
