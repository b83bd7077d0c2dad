// The formats behind open_checkpoint/create_checkpoint. Each format's source
// file defines one handler; checkpoint.cpp lists them in detection order.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string_view>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/registry.hpp"

namespace ckpt::detail {

struct FormatHandler {
  std::string_view name;
  std::string_view summary;  // one line, for --help
  std::span<const std::string_view> extensions;
  FormatKind kind;
  // Cheap look at names and magic bytes: could `path` be this format?
  bool (*detect)(const std::filesystem::path& path);
  using OpenFn = Result<std::unique_ptr<CheckpointReader>> (*)(const std::filesystem::path& path,
                                                               const OpenOptions& options);
  OpenFn open;
  Result<std::unique_ptr<CheckpointWriter>> (*create)(const std::filesystem::path& path, WriteOptions options);
  // Every problem collected (spec/validation.md), with stable codes.
  ValidationReport (*validate)(const std::filesystem::path& path, const OpenOptions& options);
  // The dtype as the format's files name it; nullptr where they use OneFlow's names.
  std::string_view (*dtype_label)(DType dtype) = nullptr;
};

// For validators: a report whose only issue is why `path` could not be read.
ValidationReport unreadable_report(const std::filesystem::path& path, const Error& problem);
// Adds kNotACheckpoint ("no <what>") when no variable was found and no error says why.
void require_some_variable(ValidationReport& report, std::string_view what);

// Why no format recognised `path`: what its bytes are when they say so (a
// Git LFS pointer, an HTML page, a damaged zip; for a .safetensors name, the
// safetensors reader's own error), else kNotACheckpoint.
Error diagnose_unrecognised(const std::filesystem::path& path, std::string_view known_formats);

const FormatHandler& oneflow_format();
const FormatHandler& npy_format();
const FormatHandler& npz_format();
const FormatHandler& oneflow_pickle_format();
const FormatHandler& oneflow_single_file_format();
const FormatHandler& torch_format();
const FormatHandler& safetensors_format();
const FormatHandler& safetensors_sharded_format();

}  // namespace ckpt::detail
