#include "cuda/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

// fmt's consteval format strings do not compile under nvcc's C++20.
#include <string>

#include "cuda/cuda_ops.cuh"

namespace ckpt::train {

namespace {

Status cuda_status(cudaError_t code, const char* call) {
  if (code == cudaSuccess) return {};
  // Clears a sticky launch error so the next call reports its own.
  cudaGetLastError();
  return Error(ErrorCode::kDeviceError, std::string(call) + ": " + cudaGetErrorName(code) + " (" +
                                            std::to_string(static_cast<int>(code)) + "): " + cudaGetErrorString(code));
}

Status cublas_status(cublasStatus_t code, const char* call) {
  if (code == CUBLAS_STATUS_SUCCESS) return {};
  return Error(ErrorCode::kDeviceError, std::string(call) + ": " + cublasGetStatusName(code) + " (" +
                                            std::to_string(static_cast<int>(code)) + ")");
}

void release_device_memory(void* memory) { cudaFree(memory); }

cublasOperation_t to_cublas(Transpose transpose) {
  return transpose == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(cublasHandle_t handle, std::string device_description)
      : handle_(handle), description_(std::move(device_description)) {}
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;
  ~CudaBackend() override { cublasDestroy(handle_); }

  Device device() const override { return Device::kCuda; }
  std::string description() const override { return description_; }

  Status gemm(Transpose transpose_a, Transpose transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
              float alpha, const float* a, const float* b, float beta, float* c) override {
    const auto lda = static_cast<int>(transpose_a == Transpose::kYes ? m : k);
    const auto ldb = static_cast<int>(transpose_b == Transpose::kYes ? k : n);
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
    return cublas_status(cublasSgemm(handle_, to_cublas(transpose_b), to_cublas(transpose_a), static_cast<int>(n),
                                     static_cast<int>(m), static_cast<int>(k), &alpha, b, ldb, a, lda, &beta, c,
                                     static_cast<int>(n)),
                         "cublasSgemm");
  }
  Status add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y) override {
    return cuda_status(cuda::add_bias_relu(batch, features, bias, relu, y), "add_bias_relu");
  }
  Status relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy) override {
    return cuda_status(cuda::relu_backward(batch, features, y, dy), "relu_backward");
  }
  Status bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias) override {
    return cuda_status(cuda::bias_backward(batch, features, dy, dbias), "bias_backward");
  }
  Status softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                       const std::int32_t* labels, float* losses) override {
    return cuda_status(cuda::softmax_cross_entropy_forward(batch, classes, logits, labels, losses),
                       "softmax_cross_entropy_forward");
  }
  Status softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                        const std::int32_t* labels, float* dlogits) override {
    return cuda_status(cuda::softmax_cross_entropy_backward(batch, classes, logits, labels, dlogits),
                       "softmax_cross_entropy_backward");
  }
  Status sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity,
                    float* param) override {
    return cuda_status(cuda::sgd_update(count, options, grad, velocity, param), "sgd_update");
  }
  Status argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits,
                     std::int32_t* predictions) override {
    return cuda_status(cuda::argmax_rows(batch, classes, logits, predictions), "argmax_rows");
  }

 protected:
  Result<void*> allocate_bytes(std::size_t bytes) override {
    void* memory = nullptr;
    CKPT_TRY(cuda_status(cudaMalloc(&memory, bytes == 0 ? 1 : bytes), "cudaMalloc"));
    // Zeroed like the CPU backend's buffers.
    const Status cleared = cuda_status(cudaMemset(memory, 0, bytes), "cudaMemset");
    if (!cleared.ok()) {
      cudaFree(memory);
      return cleared.error();
    }
    return memory;
  }
  ReleaseMemory release_function() const override { return &release_device_memory; }
  Status copy_to_device(const void* host, void* device, std::size_t bytes) override {
    return cuda_status(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  Status copy_to_host(const void* device, void* host, std::size_t bytes) override {
    return cuda_status(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
  }

 private:
  cublasHandle_t handle_;
  std::string description_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cuda_backend() {
  int devices = 0;
  CKPT_TRY(cuda_status(cudaGetDeviceCount(&devices), "cudaGetDeviceCount"));
  if (devices == 0) return Error(ErrorCode::kDeviceError, "cudaGetDeviceCount: no CUDA device");
  CKPT_TRY(cuda_status(cudaSetDevice(0), "cudaSetDevice"));
  cudaDeviceProp properties{};
  CKPT_TRY(cuda_status(cudaGetDeviceProperties(&properties, 0), "cudaGetDeviceProperties"));
  cublasHandle_t handle = nullptr;
  CKPT_TRY(cublas_status(cublasCreate(&handle), "cublasCreate"));
  // Pedantic math keeps cuBLAS off TF32, so GPU results stay comparable to the CPU's.
  const Status math = cublas_status(cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
  if (!math.ok()) {
    cublasDestroy(handle);
    return math.error();
  }
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(
      handle, std::string("cuda (") + properties.name + ", sm_" + std::to_string(properties.major) +
                  std::to_string(properties.minor) + ")"));
}

}  // namespace ckpt::train
