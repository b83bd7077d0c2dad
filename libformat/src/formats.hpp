// The formats behind open_checkpoint/create_checkpoint. Each format's source
// file defines one handler; checkpoint.cpp lists them in detection order.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include "ckpt/format/checkpoint.hpp"

namespace ckpt::detail {

struct FormatHandler {
  std::string_view name;
  // Cheap look at names and magic bytes: could `path` be this format?
  bool (*detect)(const std::filesystem::path& path);
  Result<std::unique_ptr<CheckpointReader>> (*open)(const std::filesystem::path& path, const OpenOptions& options);
  Result<std::unique_ptr<CheckpointWriter>> (*create)(const std::filesystem::path& path, WriteOptions options);
};

const FormatHandler& oneflow_format();
const FormatHandler& oneflow_pickle_format();
const FormatHandler& torch_format();
const FormatHandler& safetensors_format();

}  // namespace ckpt::detail
