#include "ckpt/train/backend.hpp"

#include <fmt/format.h>

#if CKPT_TRAIN_HAVE_CUDA
#include "cuda/cuda_backend.hpp"
#endif

namespace ckpt::train {

Result<Device> parse_device(std::string_view text) {
  if (text == "auto") return Device::kAuto;
  if (text == "cpu") return Device::kCpu;
  if (text == "cuda") return Device::kCuda;
  return Error(ErrorCode::kInvalidArgument, fmt::format("device: expected auto, cpu or cuda, found '{}'", text));
}

std::string_view device_name(Device device) {
  switch (device) {
    case Device::kAuto: return "auto";
    case Device::kCpu: return "cpu";
    case Device::kCuda: return "cuda";
  }
  return "unknown";
}

Status Backend::check_fits(std::size_t host, std::size_t device) {
  if (host <= device) return {};
  return Error(ErrorCode::kBufferSizeMismatch,
               fmt::format("copy of {} elements into a backend buffer of {}", host, device));
}

Result<std::unique_ptr<Backend>> make_backend(Device device) {
  if (device == Device::kCpu) return make_cpu_backend();
#if CKPT_TRAIN_HAVE_CUDA
  auto cuda = make_cuda_backend();
  if (cuda.ok() || device == Device::kCuda) return cuda;
  return make_cpu_backend();
#else
  if (device == Device::kCuda) return Error(ErrorCode::kDeviceError, "device cuda: this build has no CUDA backend");
  return make_cpu_backend();
#endif
}

}  // namespace ckpt::train
