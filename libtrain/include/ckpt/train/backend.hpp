// One interface for the devices a model trains on. Every pointer argument is
// backend memory (host memory for CPU, device memory for CUDA) obtained from
// allocate(); matrices are row-major and contiguous. Each op is a kernel with
// a CPU twin of the same signature (src/cpu_ops.hpp, src/cuda/cuda_ops.cuh).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ckpt/format/error.hpp"

namespace ckpt::train {

enum class Device { kAuto, kCpu, kCuda };

// "auto", "cpu", "cuda"; kInvalidArgument for anything else.
Result<Device> parse_device(std::string_view text);
std::string_view device_name(Device device);

enum class Transpose : bool { kNo = false, kYes = true };

struct SgdOptions {
  float learning_rate = 0.003f;
  float momentum = 0.0f;      // 0: no velocity buffer is used
  float weight_decay = 0.0f;  // L2, added to the gradient as in torch.optim.SGD
};

// Frees memory of one backend (free, cudaFree).
using ReleaseMemory = void (*)(void*);

// Backend memory for `count` elements of T, freed by its backend's function.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(T* data, std::size_t count, ReleaseMemory release) : data_(data, Deleter{release}), count_(count) {}

  T* data() const { return data_.get(); }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

 private:
  struct Deleter {
    ReleaseMemory release;
    void operator()(T* pointer) const { release(pointer); }
  };
  std::unique_ptr<T, Deleter> data_{nullptr, Deleter{nullptr}};
  std::size_t count_ = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // "cpu (OpenBLAS, 2 threads)", "cuda (NVIDIA H100, sm_90)".
  virtual std::string description() const = 0;

  template <class T>
  Result<DeviceArray<T>> allocate(std::size_t count) {
    CKPT_ASSIGN_OR_RETURN(void* memory, allocate_bytes(count * sizeof(T)));
    return DeviceArray<T>(static_cast<T*>(memory), count, release_function());
  }
  // Copies into the first host.size() elements of `device`.
  template <class T>
  Status upload(std::span<const T> host, const DeviceArray<T>& device) {
    CKPT_TRY(check_fits(host.size(), device.size()));
    return copy_to_device(host.data(), device.data(), host.size_bytes());
  }
  // Copies the first host.size() elements of `device`.
  template <class T>
  Status download(const DeviceArray<T>& device, std::span<T> host) {
    CKPT_TRY(check_fits(host.size(), device.size()));
    return copy_to_host(device.data(), host.data(), host.size_bytes());
  }

  // C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C, where A is
  // stored (m, k) or, transposed, (k, m); likewise B.
  virtual Status gemm(Transpose transpose_a, Transpose transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                      float alpha, const float* a, const float* b, float beta, float* c) = 0;
  // y (B, F) += bias (F), then max(y, 0) when `relu`.
  virtual Status add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y) = 0;
  // dy (B, F) = 0 where the ReLU output y (B, F) is 0.
  virtual Status relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy) = 0;
  // dy (B, F) → dbias (F), the column sums.
  virtual Status bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias) = 0;
  // logits (B, C), labels (B) → losses (B): -log softmax(logits)[label].
  virtual Status softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                               const std::int32_t* labels, float* losses) = 0;
  // logits (B, C), labels (B) → dlogits (B, C) of the batch-mean loss.
  virtual Status softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                                const std::int32_t* labels, float* dlogits) = 0;
  // param (N) -= lr · v, v (N) = momentum · v + grad + weight_decay · param;
  // `velocity` may be null when momentum is 0.
  virtual Status sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity,
                            float* param) = 0;
  // logits (B, C) → predictions (B): index of the first maximum.
  virtual Status argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits,
                             std::int32_t* predictions) = 0;

 protected:
  virtual Result<void*> allocate_bytes(std::size_t bytes) = 0;
  virtual ReleaseMemory release_function() const = 0;
  virtual Status copy_to_device(const void* host, void* device, std::size_t bytes) = 0;
  virtual Status copy_to_host(const void* device, void* host, std::size_t bytes) = 0;

 private:
  // kBufferSizeMismatch when `host` elements do not fit in `device` ones.
  static Status check_fits(std::size_t host, std::size_t device);
};

// The CPU backend: BLIS (threads from BLIS_NUM_THREADS, default 1) or
// OpenBLAS (OPENBLAS_NUM_THREADS) when built with one, portable loops otherwise.
std::unique_ptr<Backend> make_cpu_backend();

// kAuto picks CUDA when it was compiled in and a GPU is usable, else CPU.
// kCuda without a usable GPU is an error (kDeviceError) naming the reason.
Result<std::unique_ptr<Backend>> make_backend(Device device);

}  // namespace ckpt::train
