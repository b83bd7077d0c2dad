// The CUDA kernels, each launched on the default stream by a function with
// the name and parameters of its CPU twin in src/cpu_ops.hpp; pointers are
// device memory. A launch returns its cudaError_t (never exits).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "ckpt/train/backend.hpp"

namespace ckpt::train::cuda {

// y (B, F) += bias (F); then max(y, 0) when `relu`.
cudaError_t add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y);
// dy (B, F) = 0 where y (B, F) <= 0.
cudaError_t relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy);
// dy (B, F) → dbias (F); one thread per feature sums in row order, like the CPU.
cudaError_t bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias);
// logits (B, C), labels (B) → losses (B).
cudaError_t softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                          const std::int32_t* labels, float* losses);
// logits (B, C), labels (B) → dlogits (B, C) = (softmax − onehot) / B.
cudaError_t softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                           const std::int32_t* labels, float* dlogits);
// param, velocity, grad (N): torch.optim.SGD's step without dampening/nesterov.
cudaError_t sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity, float* param);
// logits (B, C) → predictions (B), the first maximum.
cudaError_t argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits, std::int32_t* predictions);

}  // namespace ckpt::train::cuda
