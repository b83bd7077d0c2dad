#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "ckpt/train/backend.hpp"
#include "cpu_ops.hpp"

namespace ckpt::train {

namespace {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::kCpu; }
  std::string description() const override { return fmt::format("cpu ({})", cpu::blas_description()); }

  Status gemm(Transpose transpose_a, Transpose transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
              float alpha, const float* a, const float* b, float beta, float* c) override {
    cpu::gemm(transpose_a, transpose_b, m, n, k, alpha, a, b, beta, c);
    return {};
  }
  Status add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y) override {
    cpu::add_bias_relu(batch, features, bias, relu, y);
    return {};
  }
  Status relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy) override {
    cpu::relu_backward(batch, features, y, dy);
    return {};
  }
  Status bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias) override {
    cpu::bias_backward(batch, features, dy, dbias);
    return {};
  }
  Status softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                       const std::int32_t* labels, float* losses) override {
    cpu::softmax_cross_entropy_forward(batch, classes, logits, labels, losses);
    return {};
  }
  Status softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                        const std::int32_t* labels, float* dlogits) override {
    cpu::softmax_cross_entropy_backward(batch, classes, logits, labels, dlogits);
    return {};
  }
  Status sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity,
                    float* param) override {
    cpu::sgd_update(count, options, grad, velocity, param);
    return {};
  }
  Status argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits,
                     std::int32_t* predictions) override {
    cpu::argmax_rows(batch, classes, logits, predictions);
    return {};
  }

 protected:
  Result<void*> allocate_bytes(std::size_t bytes) override {
    // Zeroed like cudaMemset'd buffers, so no backend reads garbage.
    void* memory = std::calloc(bytes == 0 ? 1 : bytes, 1);
    if (memory == nullptr) return Error(ErrorCode::kIo, fmt::format("cannot allocate {} bytes of host memory", bytes));
    return memory;
  }
  ReleaseMemory release_function() const override { return &std::free; }
  Status copy_to_device(const void* host, void* device, std::size_t bytes) override {
    std::memcpy(device, host, bytes);
    return {};
  }
  Status copy_to_host(const void* device, void* host, std::size_t bytes) override {
    std::memcpy(host, device, bytes);
    return {};
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace ckpt::train
