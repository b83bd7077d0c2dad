// The CUDA backend's factory, in plain C++ so the rest of libtrain needs no
// CUDA headers. Only compiled when nvcc was found (CKPT_TRAIN_HAVE_CUDA).
#pragma once

#include <memory>

#include "ckpt/format/error.hpp"
#include "ckpt/train/backend.hpp"

namespace ckpt::train {

// cuBLAS for gemm, src/cuda/cuda_ops.cu for the rest, on device 0.
// kDeviceError (with CUDA's error name and text) when no GPU is usable.
Result<std::unique_ptr<Backend>> make_cuda_backend();

}  // namespace ckpt::train
