// The tutorial's training job: CrossEntropyLoss (mean over the batch), SGD,
// batches of 128 drawn from a training set shuffled every epoch by PCG32.
// Parameters, gradients, optimizer buffers and activations live on a Backend;
// the host copies (Mlp, TrainingState) are exchanged with checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/train/backend.hpp"
#include "ckpt/train/dataset.hpp"
#include "ckpt/train/model.hpp"
#include "ckpt/train/random.hpp"

namespace ckpt::train {

struct TrainConfig {
  std::int64_t epochs = 10;
  std::int64_t batch_size = 128;
  SgdOptions sgd;
  std::uint64_t seed = 0;
};

// What the tutorial prints after each epoch.
struct EpochReport {
  std::int64_t epoch = 0;        // 1-based
  double train_loss = 0;         // sum of batch-mean losses / samples, as the tutorial
  double train_accuracy = 0;     // on the batches as trained, before each step
  double test_accuracy = 0;
};

// Everything besides the parameters that decides the rest of a run.
struct TrainingState {
  std::int64_t epochs_done = 0;
  std::int64_t batch_size = 128;
  SgdOptions sgd;
  std::uint64_t seed = 0;
  Pcg32 shuffle_rng{0, 2};
  // One per parameter, in state_dict order; empty when momentum is 0.
  std::vector<std::vector<float>> momentum_buffers;
};

// The shuffling stream of PCG32 for a seed (the init stream is 1).
inline constexpr std::uint64_t kShuffleStream = 2;

class Trainer {
 public:
  static Result<Trainer> create(std::unique_ptr<Backend> backend, const Mlp& model, TrainConfig config);

  Backend& backend() { return *backend_; }
  const TrainConfig& config() const { return config_; }
  std::int64_t epochs_done() const { return epochs_done_; }

  // One pass over `train` in a freshly shuffled order, then test accuracy.
  Result<EpochReport> train_epoch(const Dataset& train, const Dataset& test);
  // The same over `order` (sample indices, batches in that order); the
  // shuffling generator is left as it is.
  Result<EpochReport> train_epoch(const Dataset& train, const Dataset& test, std::span<const std::uint32_t> order);
  // Fraction of `data` whose argmax matches the label.
  Result<double> evaluate(const Dataset& data);

  // Forward and backward of one batch (B ≤ batch_size) without a step:
  // returns the batch-mean loss; gradients() then holds dLoss/dparam.
  Result<float> compute_gradients(std::span<const float> images, std::span<const std::int32_t> labels);
  Result<std::vector<std::vector<float>>> gradients();

  // The parameters, downloaded.
  Result<Mlp> model();
  // Replaces the parameters (names and shapes must match the model's).
  Status load_parameters(const Mlp& model);

  Result<TrainingState> state();
  // Adopts a saved state: epoch, shuffling, SGD options and momentum buffers.
  Status restore(const TrainingState& state);

 private:
  struct Layer {
    std::int64_t in = 0;
    std::int64_t out = 0;
    DeviceArray<float> weight, bias, weight_grad, bias_grad, weight_velocity, bias_velocity;
    DeviceArray<float> output, output_grad;  // (batch, out)
  };

  Trainer(std::unique_ptr<Backend> backend, Mlp model, TrainConfig config)
      : backend_(std::move(backend)), host_model_(std::move(model)), config_(config),
        shuffle_rng_(config.seed, kShuffleStream) {}

  Status allocate();
  Status forward(std::int64_t batch);
  Status backward(std::int64_t batch);
  Status step();
  Status upload_batch(const Dataset& data, std::span<const std::uint32_t> indices);
  Result<std::int64_t> count_correct(std::int64_t batch, std::span<const std::int32_t> labels);
  // (weight, bias) pairs of each layer as DeviceArray pointers, in state_dict order.
  std::vector<DeviceArray<float>*> parameter_arrays();
  std::vector<DeviceArray<float>*> gradient_arrays();
  std::vector<DeviceArray<float>*> velocity_arrays();

  std::unique_ptr<Backend> backend_;
  Mlp host_model_;  // names and shapes; values only until allocate() uploads them
  TrainConfig config_;
  Pcg32 shuffle_rng_;
  std::int64_t epochs_done_ = 0;

  std::vector<Layer> layers_;
  DeviceArray<float> input_;           // (batch, inputs)
  DeviceArray<std::int32_t> labels_;   // (batch)
  DeviceArray<float> losses_;          // (batch)
  DeviceArray<std::int32_t> predictions_;  // (batch)
  std::vector<float> host_input_;
  std::vector<std::int32_t> host_labels_;
};

}  // namespace ckpt::train
