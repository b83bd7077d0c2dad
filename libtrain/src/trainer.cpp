#include "ckpt/train/trainer.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

namespace ckpt::train {

namespace {

Status check_config(const TrainConfig& config) {
  if (config.batch_size <= 0) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("batch size: expected > 0, found {}", config.batch_size));
  }
  if (config.epochs < 0) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("epochs: expected >= 0, found {}", config.epochs));
  }
  return {};
}

Status check_dataset(const Dataset& data, const MlpShape& shape) {
  if (static_cast<std::int64_t>(data.features) != shape.inputs()) {
    return Error(ErrorCode::kDatasetMismatch,
                 fmt::format("data set features: expected {} (the model's inputs), found {}", shape.inputs(),
                             data.features));
  }
  if (static_cast<std::int64_t>(data.classes) != shape.outputs()) {
    return Error(ErrorCode::kDatasetMismatch,
                 fmt::format("data set classes: expected {} (the model's outputs), found {}", shape.outputs(),
                             data.classes));
  }
  return {};
}

Status check_same_parameters(const Mlp& expected, const Mlp& actual) {
  const auto& want = expected.parameters();
  const auto& have = actual.parameters();
  if (want.size() != have.size()) {
    return Error(ErrorCode::kStateDictMismatch,
                 fmt::format("parameters: expected {}, found {}", want.size(), have.size()));
  }
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].name != have[i].name || want[i].shape != have[i].shape) {
      Error error(ErrorCode::kStateDictMismatch,
                  fmt::format("expected '{}' [{}], found '{}' [{}]", want[i].name, fmt::join(want[i].shape, ", "),
                              have[i].name, fmt::join(have[i].shape, ", ")));
      error.in_variable(want[i].name);
      return error;
    }
  }
  return {};
}

}  // namespace

Result<Trainer> Trainer::create(std::unique_ptr<Backend> backend, const Mlp& model, TrainConfig config) {
  CKPT_TRY(check_config(config));
  Trainer trainer(std::move(backend), model, config);
  CKPT_TRY(trainer.allocate());
  return trainer;
}

Status Trainer::allocate() {
  const MlpShape& shape = host_model_.shape();
  const std::int64_t batch = config_.batch_size;
  const auto count = [](std::int64_t a, std::int64_t b) { return static_cast<std::size_t>(a * b); };
  layers_.resize(shape.layers());
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    layer.in = shape.widths[i];
    layer.out = shape.widths[i + 1];
    for (DeviceArray<float>* weight : {&layer.weight, &layer.weight_grad, &layer.weight_velocity}) {
      CKPT_ASSIGN_OR_RETURN(*weight, backend_->allocate<float>(count(layer.out, layer.in)));
    }
    for (DeviceArray<float>* bias : {&layer.bias, &layer.bias_grad, &layer.bias_velocity}) {
      CKPT_ASSIGN_OR_RETURN(*bias, backend_->allocate<float>(count(layer.out, 1)));
    }
    for (DeviceArray<float>* activation : {&layer.output, &layer.output_grad}) {
      CKPT_ASSIGN_OR_RETURN(*activation, backend_->allocate<float>(count(batch, layer.out)));
    }
  }
  CKPT_ASSIGN_OR_RETURN(input_, backend_->allocate<float>(count(batch, shape.inputs())));
  CKPT_ASSIGN_OR_RETURN(labels_, backend_->allocate<std::int32_t>(count(batch, 1)));
  CKPT_ASSIGN_OR_RETURN(losses_, backend_->allocate<float>(count(batch, 1)));
  CKPT_ASSIGN_OR_RETURN(predictions_, backend_->allocate<std::int32_t>(count(batch, 1)));
  host_input_.resize(input_.size());
  host_labels_.resize(labels_.size());
  return load_parameters(host_model_);
}

std::vector<DeviceArray<float>*> Trainer::parameter_arrays() {
  std::vector<DeviceArray<float>*> arrays;
  for (Layer& layer : layers_) arrays.insert(arrays.end(), {&layer.weight, &layer.bias});
  return arrays;
}

std::vector<DeviceArray<float>*> Trainer::gradient_arrays() {
  std::vector<DeviceArray<float>*> arrays;
  for (Layer& layer : layers_) arrays.insert(arrays.end(), {&layer.weight_grad, &layer.bias_grad});
  return arrays;
}

std::vector<DeviceArray<float>*> Trainer::velocity_arrays() {
  std::vector<DeviceArray<float>*> arrays;
  for (Layer& layer : layers_) arrays.insert(arrays.end(), {&layer.weight_velocity, &layer.bias_velocity});
  return arrays;
}

Status Trainer::load_parameters(const Mlp& model) {
  CKPT_TRY(check_same_parameters(host_model_, model));
  const auto arrays = parameter_arrays();
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    CKPT_TRY(backend_->upload(std::span<const float>(model.parameters()[i].values), *arrays[i]));
  }
  return {};
}

Result<Mlp> Trainer::model() {
  Mlp model = host_model_;
  const auto arrays = parameter_arrays();
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    CKPT_TRY(backend_->download(*arrays[i], std::span<float>(model.parameters()[i].values)));
  }
  return model;
}

Status Trainer::forward(std::int64_t batch) {
  const float* input = input_.data();
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    // (B, in) · weightᵀ (in, out) → (B, out)
    CKPT_TRY(backend_->gemm(Transpose::kNo, Transpose::kYes, batch, layer.out, layer.in, 1.0f, input,
                            layer.weight.data(), 0.0f, layer.output.data()));
    const bool relu = i + 1 < layers_.size();
    CKPT_TRY(backend_->add_bias_relu(batch, layer.out, layer.bias.data(), relu, layer.output.data()));
    input = layer.output.data();
  }
  return {};
}

Status Trainer::backward(std::int64_t batch) {
  Layer& last = layers_.back();
  CKPT_TRY(backend_->softmax_cross_entropy_backward(batch, last.out, last.output.data(), labels_.data(),
                                                    last.output_grad.data()));
  for (std::size_t i = layers_.size(); i-- > 0;) {
    Layer& layer = layers_[i];
    const float* input = i == 0 ? input_.data() : layers_[i - 1].output.data();
    // doutputᵀ (out, B) · input (B, in) → dweight (out, in)
    CKPT_TRY(backend_->gemm(Transpose::kYes, Transpose::kNo, layer.out, layer.in, batch, 1.0f,
                            layer.output_grad.data(), input, 0.0f, layer.weight_grad.data()));
    CKPT_TRY(backend_->bias_backward(batch, layer.out, layer.output_grad.data(), layer.bias_grad.data()));
    if (i == 0) break;  // the input needs no gradient
    Layer& previous = layers_[i - 1];
    // doutput (B, out) · weight (out, in) → dinput (B, in)
    CKPT_TRY(backend_->gemm(Transpose::kNo, Transpose::kNo, batch, layer.in, layer.out, 1.0f,
                            layer.output_grad.data(), layer.weight.data(), 0.0f, previous.output_grad.data()));
    CKPT_TRY(backend_->relu_backward(batch, previous.out, previous.output.data(), previous.output_grad.data()));
  }
  return {};
}

Status Trainer::step() {
  const auto params = parameter_arrays();
  const auto grads = gradient_arrays();
  const auto velocities = velocity_arrays();
  for (std::size_t i = 0; i < params.size(); ++i) {
    CKPT_TRY(backend_->sgd_update(static_cast<std::int64_t>(params[i]->size()), config_.sgd, grads[i]->data(),
                                  velocities[i]->data(), params[i]->data()));
  }
  return {};
}

Status Trainer::upload_batch(const Dataset& data, std::span<const std::uint32_t> indices) {
  const std::size_t features = data.features;
  for (std::size_t row = 0; row < indices.size(); ++row) {
    const auto image = data.image(indices[row]);
    std::copy(image.begin(), image.end(), host_input_.begin() + static_cast<std::ptrdiff_t>(row * features));
    host_labels_[row] = data.labels[indices[row]];
  }
  CKPT_TRY(backend_->upload(std::span<const float>(host_input_.data(), indices.size() * features), input_));
  return backend_->upload(std::span<const std::int32_t>(host_labels_.data(), indices.size()), labels_);
}

Result<std::int64_t> Trainer::count_correct(std::int64_t batch, std::span<const std::int32_t> labels) {
  const Layer& last = layers_.back();
  CKPT_TRY(backend_->argmax_rows(batch, last.out, last.output.data(), predictions_.data()));
  std::vector<std::int32_t> predictions(static_cast<std::size_t>(batch));
  CKPT_TRY(backend_->download(predictions_, std::span<std::int32_t>(predictions)));
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < predictions.size(); ++i) correct += predictions[i] == labels[i] ? 1 : 0;
  return correct;
}

Result<EpochReport> Trainer::train_epoch(const Dataset& train, const Dataset& test) {
  std::vector<std::uint32_t> order(train.size());
  std::iota(order.begin(), order.end(), 0U);
  shuffle(order, shuffle_rng_);
  return train_epoch(train, test, order);
}

Result<EpochReport> Trainer::train_epoch(const Dataset& train, const Dataset& test,
                                         std::span<const std::uint32_t> order) {
  CKPT_TRY(check_dataset(train, host_model_.shape()));
  const auto outside = std::find_if(order.begin(), order.end(), [&](std::uint32_t index) { return index >= train.size(); });
  if (outside != order.end()) {
    return Error(ErrorCode::kDatasetMismatch,
                 fmt::format("batch order: sample index {} at position {} is outside the training set [0, {})",
                             *outside, outside - order.begin(), train.size()));
  }
  const auto batch_size = static_cast<std::size_t>(config_.batch_size);
  double loss_sum = 0;
  std::int64_t correct = 0;
  std::vector<float> losses(batch_size);
  for (std::size_t start = 0; start < order.size(); start += batch_size) {
    const auto indices = order.subspan(start, std::min(batch_size, order.size() - start));
    const auto batch = static_cast<std::int64_t>(indices.size());
    CKPT_TRY(upload_batch(train, indices));
    CKPT_TRY(forward(batch));
    CKPT_TRY(backend_->softmax_cross_entropy_forward(batch, layers_.back().out, layers_.back().output.data(),
                                                     labels_.data(), losses_.data()));
    CKPT_TRY(backend_->download(losses_, std::span<float>(losses.data(), indices.size())));
    // The tutorial adds each batch mean loss (float32, as the framework returns it) into a double.
    float batch_loss = 0.0f;
    for (std::size_t i = 0; i < indices.size(); ++i) batch_loss += losses[i];
    loss_sum += batch_loss / static_cast<float>(batch);
    CKPT_ASSIGN_OR_RETURN(const std::int64_t batch_correct,
                          count_correct(batch, std::span<const std::int32_t>(host_labels_.data(), indices.size())));
    correct += batch_correct;
    CKPT_TRY(backward(batch));
    CKPT_TRY(step());
  }
  ++epochs_done_;

  EpochReport report;
  report.epoch = epochs_done_;
  const auto samples = static_cast<double>(std::max<std::size_t>(order.size(), 1));
  report.train_loss = loss_sum / samples;
  report.train_accuracy = static_cast<double>(correct) / samples;
  CKPT_ASSIGN_OR_RETURN(report.test_accuracy, evaluate(test));
  return report;
}

Result<double> Trainer::evaluate(const Dataset& data) {
  CKPT_TRY(check_dataset(data, host_model_.shape()));
  const auto batch_size = static_cast<std::size_t>(config_.batch_size);
  std::vector<std::uint32_t> order(data.size());
  std::iota(order.begin(), order.end(), 0U);
  std::int64_t correct = 0;
  for (std::size_t start = 0; start < order.size(); start += batch_size) {
    const auto indices = std::span<const std::uint32_t>(order).subspan(start, std::min(batch_size, order.size() - start));
    const auto batch = static_cast<std::int64_t>(indices.size());
    CKPT_TRY(upload_batch(data, indices));
    CKPT_TRY(forward(batch));
    CKPT_ASSIGN_OR_RETURN(const std::int64_t batch_correct,
                          count_correct(batch, std::span<const std::int32_t>(host_labels_.data(), indices.size())));
    correct += batch_correct;
  }
  return static_cast<double>(correct) / static_cast<double>(std::max<std::size_t>(data.size(), 1));
}

Result<float> Trainer::compute_gradients(std::span<const float> images, std::span<const std::int32_t> labels) {
  const std::size_t features = static_cast<std::size_t>(host_model_.shape().inputs());
  if (labels.empty() || labels.size() > static_cast<std::size_t>(config_.batch_size) ||
      images.size() != labels.size() * features) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("batch: expected 1 to {} labels and {} floats per label, found {} labels and {} floats",
                             config_.batch_size, features, labels.size(), images.size()));
  }
  const auto batch = static_cast<std::int64_t>(labels.size());
  CKPT_TRY(backend_->upload(images, input_));
  CKPT_TRY(backend_->upload(labels, labels_));
  CKPT_TRY(forward(batch));
  CKPT_TRY(backend_->softmax_cross_entropy_forward(batch, layers_.back().out, layers_.back().output.data(),
                                                   labels_.data(), losses_.data()));
  std::vector<float> losses(labels.size());
  CKPT_TRY(backend_->download(losses_, std::span<float>(losses)));
  CKPT_TRY(backward(batch));
  return std::accumulate(losses.begin(), losses.end(), 0.0f) / static_cast<float>(batch);
}

Result<std::vector<std::vector<float>>> Trainer::gradients() {
  std::vector<std::vector<float>> values;
  for (DeviceArray<float>* gradient : gradient_arrays()) {
    values.emplace_back(gradient->size());
    CKPT_TRY(backend_->download(*gradient, std::span<float>(values.back())));
  }
  return values;
}

Result<TrainingState> Trainer::state() {
  TrainingState state;
  state.epochs_done = epochs_done_;
  state.batch_size = config_.batch_size;
  state.sgd = config_.sgd;
  state.seed = config_.seed;
  state.shuffle_rng = shuffle_rng_;
  if (config_.sgd.momentum != 0.0f) {
    for (DeviceArray<float>* velocity : velocity_arrays()) {
      state.momentum_buffers.emplace_back(velocity->size());
      CKPT_TRY(backend_->download(*velocity, std::span<float>(state.momentum_buffers.back())));
    }
  }
  return state;
}

Status Trainer::restore(const TrainingState& state) {
  if (state.batch_size != config_.batch_size) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("training state batch_size: expected {} (this trainer's), found {}", config_.batch_size,
                             state.batch_size));
  }
  const auto velocities = velocity_arrays();
  if (state.sgd.momentum != 0.0f && state.momentum_buffers.size() != velocities.size()) {
    return Error(ErrorCode::kStateDictMismatch,
                 fmt::format("training state momentum buffers: expected {}, found {}", velocities.size(),
                             state.momentum_buffers.size()));
  }
  for (std::size_t i = 0; i < state.momentum_buffers.size(); ++i) {
    if (state.momentum_buffers[i].size() != velocities[i]->size()) {
      Error error(ErrorCode::kStateDictMismatch,
                  fmt::format("momentum buffer: expected {} elements, found {}", velocities[i]->size(),
                              state.momentum_buffers[i].size()));
      error.in_variable(host_model_.parameters()[i].name);
      return error;
    }
    CKPT_TRY(backend_->upload(std::span<const float>(state.momentum_buffers[i]), *velocities[i]));
  }
  config_.sgd = state.sgd;
  config_.seed = state.seed;
  shuffle_rng_ = state.shuffle_rng;
  epochs_done_ = state.epochs_done;
  return {};
}

}  // namespace ckpt::train
