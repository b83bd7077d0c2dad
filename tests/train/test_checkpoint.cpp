// Model snapshots and training states through libformat: round trips,
// load_state_dict mismatches, and bit-identical resume.
#include "ckpt/train/checkpoint.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>

#include "fashion_mnist.hpp"

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"
#include "ckpt/format/writer.hpp"
#include "ckpt/train/random.hpp"
#include "test_support.hpp"

using namespace ckpt::train;
using ckpt::ErrorCode;
using ckpt::testing::TempDir;

namespace {

const ckpt::testing::TrainTestData& small_data() {
  static const ckpt::testing::TrainTestData data = ckpt::testing::load_fashion_mnist(3000, 1000);
  return data;
}

TrainConfig momentum_config() {
  TrainConfig config;
  config.seed = 3;
  config.sgd = SgdOptions{0.02f, 0.9f, 1e-4f};
  return config;
}

Trainer make_trainer(const TrainConfig& config) {
  auto model = Mlp::create(MlpShape{}, config.seed);
  REQUIRE(model.ok());
  auto trainer = Trainer::create(make_cpu_backend(), *model, config);
  REQUIRE(trainer.ok());
  return std::move(*trainer);
}

Mlp download(Trainer& trainer) {
  auto model = trainer.model();
  REQUIRE(model.ok());
  return std::move(*model);
}

// Writes `model`'s parameters without `skip`, plus a float [1] named `extra` when given.
void write_edited(const Mlp& model, const std::filesystem::path& dir, const std::string& skip,
                  const std::string& extra = {}) {
  auto writer = ckpt::SnapshotWriter::create(dir);
  REQUIRE(writer.ok());
  for (const Parameter& parameter : model.parameters()) {
    if (parameter.name == skip) continue;
    auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, parameter.shape);
    REQUIRE(meta.ok());
    REQUIRE(writer->add(parameter.name, *meta, std::as_bytes(std::span<const float>(parameter.values))).ok());
  }
  if (!extra.empty()) {
    auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, {1});
    REQUIRE(meta.ok());
    const float one = 1.0f;
    REQUIRE(writer->add(extra, *meta, std::as_bytes(std::span<const float>(&one, 1))).ok());
  }
  REQUIRE(writer->commit().ok());
}

ckpt::Error load_error(const std::filesystem::path& dir) {
  auto model = Mlp::create(MlpShape{}, 0);
  REQUIRE(model.ok());
  const Mlp before = *model;
  auto status = load_state_dict(dir, *model);
  REQUIRE_FALSE(status.ok());
  // A failed load leaves the model as it was.
  for (std::size_t i = 0; i < before.parameters().size(); ++i) {
    CHECK(model->parameters()[i].values == before.parameters()[i].values);
  }
  return status.error();
}

}  // namespace

TEST_CASE("a saved model is a plain, valid state_dict snapshot") {
  TempDir dir;
  auto model = Mlp::create(MlpShape{}, 0);
  REQUIRE(model.ok());
  REQUIRE(save_state_dict(*model, dir / "model", false).ok());
  const auto report = ckpt::validate_snapshot(dir / "model");
  CHECK(report.valid());
  CHECK(report.issues.empty());
  auto snapshot = ckpt::Snapshot::open(dir / "model");
  REQUIRE(snapshot.ok());
  std::vector<std::string> names;
  for (const auto& variable : snapshot->variables()) names.push_back(variable.name);
  CHECK(names == std::vector<std::string>{"l1.bias", "l1.weight", "l2.bias", "l2.weight", "l3.bias", "l3.weight"});
  const auto* weight = snapshot->find("l1.weight");
  REQUIRE(weight != nullptr);
  CHECK(weight->meta->shape() == ckpt::Shape{128, 784});
  CHECK(weight->meta->dtype() == ckpt::DType::kFloat);
  CHECK(ckpt::testing::read_file(dir / "model" / "l1.weight" / "meta") ==
        "shape {\n  dim: 128\n  dim: 784\n}\ndata_type: kFloat\n");

  // Saving again refuses to replace it unless asked to.
  auto again = save_state_dict(*model, dir / "model", false);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code() == ErrorCode::kDestinationExists);
  CHECK(save_state_dict(*model, dir / "model", true).ok());
}

TEST_CASE("save -> load -> evaluate gives identical parameters and accuracy") {
  TempDir dir;
  TrainConfig config;
  config.sgd.learning_rate = 0.05f;
  Trainer trainer = make_trainer(config);
  REQUIRE(trainer.train_epoch(small_data().train, small_data().test).ok());
  auto accuracy = trainer.evaluate(small_data().test);
  REQUIRE(accuracy.ok());
  const Mlp trained = download(trainer);
  REQUIRE(save_state_dict(trained, dir / "model", false).ok());

  auto loaded = Mlp::create(MlpShape{}, 99);  // another initialisation, overwritten
  REQUIRE(loaded.ok());
  REQUIRE(load_state_dict(dir / "model", *loaded).ok());
  for (std::size_t i = 0; i < trained.parameters().size(); ++i) {
    CHECK(loaded->parameters()[i].values == trained.parameters()[i].values);
  }
  auto evaluator = Trainer::create(make_cpu_backend(), *loaded, TrainConfig{});
  REQUIRE(evaluator.ok());
  auto reloaded_accuracy = evaluator->evaluate(small_data().test);
  REQUIRE(reloaded_accuracy.ok());
  CHECK(*reloaded_accuracy == *accuracy);
}

TEST_CASE("load_state_dict names the variable that does not match") {
  TempDir dir;
  auto model = Mlp::create(MlpShape{}, 0);
  REQUIRE(model.ok());

  write_edited(*model, dir / "missing", "l2.bias");
  const ckpt::Error missing = load_error(dir / "missing");
  CHECK(missing.code() == ErrorCode::kStateDictMismatch);
  CHECK(missing.variable() == "l2.bias");
  CHECK(missing.file() == (dir / "missing").string());

  write_edited(*model, dir / "extra", "", "l4.weight");
  const ckpt::Error extra = load_error(dir / "extra");
  CHECK(extra.code() == ErrorCode::kStateDictMismatch);
  CHECK(extra.variable() == "l4.weight");

  auto other = Mlp::create(MlpShape{{784, 100, 64, 10}}, 0);
  REQUIRE(other.ok());
  REQUIRE(save_state_dict(*other, dir / "shape", false).ok());
  const ckpt::Error shape = load_error(dir / "shape");
  CHECK(shape.code() == ErrorCode::kStateDictMismatch);
  CHECK(shape.variable() == "l1.weight");
  CHECK(shape.message() == "shape: expected [128, 784], found [100, 784]");

  {
    auto writer = ckpt::SnapshotWriter::create(dir / "dtype");
    REQUIRE(writer.ok());
    for (const Parameter& parameter : model->parameters()) {
      const bool as_double = parameter.name == "l3.bias";
      std::vector<double> doubles(parameter.values.begin(), parameter.values.end());
      auto meta = ckpt::VariableMeta::make(as_double ? ckpt::DType::kDouble : ckpt::DType::kFloat, parameter.shape);
      REQUIRE(meta.ok());
      const auto bytes = as_double ? std::as_bytes(std::span<const double>(doubles))
                                   : std::as_bytes(std::span<const float>(parameter.values));
      REQUIRE(writer->add(parameter.name, *meta, bytes).ok());
    }
    REQUIRE(writer->commit().ok());
  }
  const ckpt::Error dtype = load_error(dir / "dtype");
  CHECK(dtype.code() == ErrorCode::kStateDictMismatch);
  CHECK(dtype.variable() == "l3.bias");
  CHECK(dtype.message() == "dtype: expected kFloat, found kDouble");

  const ckpt::Error absent = load_error(dir / "absent");
  CHECK(absent.code() == ErrorCode::kNotFound);
}

TEST_CASE("a training state round-trips and is tied to its model snapshot") {
  TempDir dir;
  Trainer trainer = make_trainer(momentum_config());
  REQUIRE(trainer.train_epoch(small_data().train.head(600), small_data().test.head(100)).ok());
  auto state = trainer.state();
  REQUIRE(state.ok());
  const Mlp model = download(trainer);
  REQUIRE(save_training_state(*state, model, training_state_path(dir / "model"), false).ok());
  CHECK(training_state_path(dir / "model") == dir / "model.train-state");
  CHECK(ckpt::validate_snapshot(dir / "model.train-state").valid());

  auto loaded = load_training_state(dir / "model.train-state", model);
  REQUIRE(loaded.ok());
  CHECK(loaded->epochs_done == 1);
  CHECK(loaded->batch_size == 128);
  CHECK(loaded->seed == 3);
  CHECK(loaded->shuffle_rng == state->shuffle_rng);
  CHECK(loaded->sgd.learning_rate == 0.02f);
  CHECK(loaded->sgd.momentum == 0.9f);
  CHECK(loaded->sgd.weight_decay == 1e-4f);
  REQUIRE(loaded->momentum_buffers.size() == 6);
  CHECK(loaded->momentum_buffers == state->momentum_buffers);

  // The state of another model snapshot is refused.
  auto other = Mlp::create(MlpShape{}, 8);
  REQUIRE(other.ok());
  auto mismatched = load_training_state(dir / "model.train-state", *other);
  REQUIRE_FALSE(mismatched.ok());
  CHECK(mismatched.error().code() == ErrorCode::kStateDictMismatch);
  CHECK(mismatched.error().variable() == "model_fingerprint");
}

TEST_CASE("resuming after epoch 1 gives bit-identical parameters to an uninterrupted run") {
  TempDir dir;
  const Dataset& train = small_data().train;
  const Dataset& test = small_data().test;
  for (const bool momentum : {false, true}) {
    CAPTURE(momentum);
    const TrainConfig config = momentum ? momentum_config() : TrainConfig{};
    Trainer uninterrupted = make_trainer(config);
    for (int epoch = 0; epoch < 3; ++epoch) REQUIRE(uninterrupted.train_epoch(train, test).ok());
    const Mlp expected = download(uninterrupted);

    Trainer first = make_trainer(config);
    REQUIRE(first.train_epoch(train, test).ok());
    const auto model_dir = dir / (momentum ? "momentum" : "plain");
    const Mlp after_one = download(first);
    auto state = first.state();
    REQUIRE(state.ok());
    REQUIRE(save_state_dict(after_one, model_dir, false).ok());
    REQUIRE(save_training_state(*state, after_one, training_state_path(model_dir), false).ok());

    // A fresh process would start here: another seed's init, then the snapshot.
    auto resumed_model = Mlp::create(MlpShape{}, 12345);
    REQUIRE(resumed_model.ok());
    REQUIRE(load_state_dict(model_dir, *resumed_model).ok());
    auto resumed_state = load_training_state(training_state_path(model_dir), *resumed_model);
    REQUIRE(resumed_state.ok());
    TrainConfig resumed_config;
    resumed_config.batch_size = resumed_state->batch_size;
    auto resumed = Trainer::create(make_cpu_backend(), *resumed_model, resumed_config);
    REQUIRE(resumed.ok());
    REQUIRE(resumed->restore(*resumed_state).ok());
    CHECK(resumed->epochs_done() == 1);
    while (resumed->epochs_done() < 3) REQUIRE(resumed->train_epoch(train, test).ok());

    const Mlp actual = download(*resumed);
    for (std::size_t i = 0; i < expected.parameters().size(); ++i) {
      CAPTURE(expected.parameters()[i].name);
      CHECK(actual.parameters()[i].values == expected.parameters()[i].values);
    }
    CHECK(parameter_fingerprint(actual) == parameter_fingerprint(expected));
  }
}

TEST_CASE("an explicit batch order equal to the shuffle trains bit-identically; an index outside is E904") {
  const TrainConfig config = momentum_config();
  const Dataset train = small_data().train.head(600);
  const Dataset& test = small_data().test;
  Trainer shuffled = make_trainer(config);
  REQUIRE(shuffled.train_epoch(train, test).ok());

  // The permutation the trainer drew: the shuffling stream of the same seed.
  std::vector<std::uint32_t> order(train.size());
  std::iota(order.begin(), order.end(), 0U);
  Pcg32 rng(config.seed, kShuffleStream);
  shuffle(order, rng);
  Trainer ordered = make_trainer(config);
  REQUIRE(ordered.train_epoch(train, test, order).ok());
  const Mlp a = download(shuffled);
  const Mlp b = download(ordered);
  for (std::size_t i = 0; i < a.parameters().size(); ++i) {
    CHECK_MESSAGE(a.parameters()[i].values == b.parameters()[i].values, a.parameters()[i].name);
  }
  // A different order gives different weights: the order is what was used.
  std::reverse(order.begin(), order.end());
  Trainer reversed = make_trainer(config);
  REQUIRE(reversed.train_epoch(train, test, order).ok());
  CHECK(download(reversed).parameters()[0].values != a.parameters()[0].values);

  order.back() = static_cast<std::uint32_t>(train.size());
  auto outside = make_trainer(config).train_epoch(train, test, order);
  REQUIRE_FALSE(outside.ok());
  CHECK(outside.error().code() == ErrorCode::kDatasetMismatch);
  CHECK(outside.error().message().find("sample index 600") != std::string::npos);
}

TEST_CASE("load_initial_weights reads any format and names what does not fit") {
  TempDir dir;
  auto source = Mlp::create(MlpShape{}, 11);
  REQUIRE(source.ok());
  {
    auto writer = ckpt::create_checkpoint(dir / "init.safetensors", "safetensors");
    REQUIRE(writer.ok());
    for (const Parameter& parameter : source->parameters()) {
      auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, parameter.shape);
      REQUIRE(meta.ok());
      ckpt::MemorySource bytes(std::as_bytes(std::span<const float>(parameter.values)));
      REQUIRE((*writer)->add(parameter.name, *meta, bytes).ok());
    }
    REQUIRE((*writer)->commit().ok());
  }
  auto model = Mlp::create(MlpShape{}, 0);
  REQUIRE(model.ok());
  REQUIRE(load_initial_weights(dir / "init.safetensors", *model).ok());
  for (std::size_t i = 0; i < model->parameters().size(); ++i) {
    CHECK(model->parameters()[i].values == source->parameters()[i].values);
  }

  auto other = Mlp::create(MlpShape{{784, 100, 64, 10}}, 0);
  REQUIRE(other.ok());
  REQUIRE(save_state_dict(*other, dir / "shape", false).ok());
  const Mlp before = *model;
  const auto shape = load_initial_weights(dir / "shape", *model);
  REQUIRE_FALSE(shape.ok());
  CHECK(shape.error().code() == ErrorCode::kStateDictMismatch);
  CHECK(shape.error().variable() == "l1.weight");
  CHECK(shape.error().message() == "shape: expected [128, 784], found [100, 784]");
  CHECK(model->parameters()[0].values == before.parameters()[0].values);
}
