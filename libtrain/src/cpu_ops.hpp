// The CPU kernels: the shipped CPU backend and the reference every CUDA
// kernel (src/cuda/cuda_ops.cuh, same names and parameters) is tested
// against. Shapes as in ckpt/train/backend.hpp; all matrices row-major.
#pragma once

#include <cstdint>
#include <string>

#include "ckpt/train/backend.hpp"

namespace ckpt::train::cpu {

// C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C.
void gemm(Transpose transpose_a, Transpose transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, const float* b, float beta, float* c);
// y (B, F) += bias (F); then max(y, 0) when `relu`.
void add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y);
// dy (B, F) = 0 where y (B, F) <= 0.
void relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy);
// dy (B, F) → dbias (F).
void bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias);
// logits (B, C), labels (B) → losses (B).
void softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                   const std::int32_t* labels, float* losses);
// logits (B, C), labels (B) → dlogits (B, C) = (softmax − onehot) / B.
void softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                    const std::int32_t* labels, float* dlogits);
// param, velocity, grad (N): torch.optim.SGD's step without dampening/nesterov.
void sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity, float* param);
// logits (B, C) → predictions (B).
void argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits, std::int32_t* predictions);

// "OpenBLAS, 2 threads" or "portable loops".
std::string blas_description();

}  // namespace ckpt::train::cpu
