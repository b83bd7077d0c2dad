#include "cuda/cuda_ops.cuh"

namespace ckpt::train::cuda {

namespace {

constexpr int kThreads = 256;
// Grid-stride loops cover any size; more blocks than this only queue up.
constexpr std::int64_t kMaxBlocks = 4096;

unsigned blocks_for(std::int64_t work) {
  const std::int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

__device__ std::int64_t first_index() { return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ std::int64_t index_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

__global__ void add_bias_relu_kernel(std::int64_t batch, std::int64_t features, const float* bias, bool relu,
                                     float* y) {
  for (std::int64_t i = first_index(); i < batch * features; i += index_stride()) {
    const float value = y[i] + bias[i % features];
    y[i] = relu ? fmaxf(value, 0.0f) : value;
  }
}

__global__ void relu_backward_kernel(std::int64_t count, const float* y, float* dy) {
  for (std::int64_t i = first_index(); i < count; i += index_stride()) {
    if (!(y[i] > 0.0f)) dy[i] = 0.0f;
  }
}

__global__ void bias_backward_kernel(std::int64_t batch, std::int64_t features, const float* dy, float* dbias) {
  for (std::int64_t f = first_index(); f < features; f += index_stride()) {
    float sum = 0.0f;
    for (std::int64_t row = 0; row < batch; ++row) sum += dy[row * features + f];
    dbias[f] = sum;
  }
}

// max and log(sum(exp(x − max))) of one row, as normalize_row on the CPU.
__device__ void normalize_row(std::int64_t classes, const float* row, float* max, float* log_sum) {
  float largest = row[0];
  for (std::int64_t c = 1; c < classes; ++c) largest = fmaxf(largest, row[c]);
  float sum = 0.0f;
  for (std::int64_t c = 0; c < classes; ++c) sum += expf(row[c] - largest);
  *max = largest;
  *log_sum = logf(sum);
}

__global__ void softmax_cross_entropy_forward_kernel(std::int64_t batch, std::int64_t classes, const float* logits,
                                                     const std::int32_t* labels, float* losses) {
  for (std::int64_t row = first_index(); row < batch; row += index_stride()) {
    const float* x = logits + row * classes;
    float max = 0.0f;
    float log_sum = 0.0f;
    normalize_row(classes, x, &max, &log_sum);
    losses[row] = log_sum - (x[labels[row]] - max);
  }
}

__global__ void softmax_cross_entropy_backward_kernel(std::int64_t batch, std::int64_t classes, const float* logits,
                                                      const std::int32_t* labels, float* dlogits) {
  const float scale = 1.0f / static_cast<float>(batch);
  for (std::int64_t row = first_index(); row < batch; row += index_stride()) {
    const float* x = logits + row * classes;
    float* dx = dlogits + row * classes;
    float max = 0.0f;
    float log_sum = 0.0f;
    normalize_row(classes, x, &max, &log_sum);
    for (std::int64_t c = 0; c < classes; ++c) {
      const float probability = expf(x[c] - max - log_sum);
      dx[c] = (probability - (c == labels[row] ? 1.0f : 0.0f)) * scale;
    }
  }
}

__global__ void sgd_update_kernel(std::int64_t count, SgdOptions options, const float* grad, float* velocity,
                                  float* param) {
  for (std::int64_t i = first_index(); i < count; i += index_stride()) {
    float step = grad[i];
    if (options.weight_decay != 0.0f) step += options.weight_decay * param[i];
    if (options.momentum != 0.0f) {
      velocity[i] = options.momentum * velocity[i] + step;
      step = velocity[i];
    }
    param[i] -= options.learning_rate * step;
  }
}

__global__ void argmax_rows_kernel(std::int64_t batch, std::int64_t classes, const float* logits,
                                   std::int32_t* predictions) {
  for (std::int64_t row = first_index(); row < batch; row += index_stride()) {
    const float* x = logits + row * classes;
    std::int32_t best = 0;
    for (std::int64_t c = 1; c < classes; ++c) {
      if (x[c] > x[best]) best = static_cast<std::int32_t>(c);
    }
    predictions[row] = best;
  }
}

}  // namespace

cudaError_t add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y) {
  add_bias_relu_kernel<<<blocks_for(batch * features), kThreads>>>(batch, features, bias, relu, y);
  return cudaGetLastError();
}

cudaError_t relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy) {
  relu_backward_kernel<<<blocks_for(batch * features), kThreads>>>(batch * features, y, dy);
  return cudaGetLastError();
}

cudaError_t bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias) {
  bias_backward_kernel<<<blocks_for(features), kThreads>>>(batch, features, dy, dbias);
  return cudaGetLastError();
}

cudaError_t softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                          const std::int32_t* labels, float* losses) {
  softmax_cross_entropy_forward_kernel<<<blocks_for(batch), kThreads>>>(batch, classes, logits, labels, losses);
  return cudaGetLastError();
}

cudaError_t softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                           const std::int32_t* labels, float* dlogits) {
  softmax_cross_entropy_backward_kernel<<<blocks_for(batch), kThreads>>>(batch, classes, logits, labels, dlogits);
  return cudaGetLastError();
}

cudaError_t sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity, float* param) {
  sgd_update_kernel<<<blocks_for(count), kThreads>>>(count, options, grad, velocity, param);
  return cudaGetLastError();
}

cudaError_t argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits, std::int32_t* predictions) {
  argmax_rows_kernel<<<blocks_for(batch), kThreads>>>(batch, classes, logits, predictions);
  return cudaGetLastError();
}

}  // namespace ckpt::train::cuda
