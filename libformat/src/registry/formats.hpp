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
  using OpenFn = Result<std::unique_ptr<CheckpointReader>> (*)(const std::filesystem::path& path,
                                                               const OpenOptions& options);
  OpenFn open;
  Result<std::unique_ptr<CheckpointWriter>> (*create)(const std::filesystem::path& path, WriteOptions options);
  // Every problem collected (spec/validation.md); without one,
  // validate_checkpoint reports what open() says.
  ValidationReport (*validate)(const std::filesystem::path& path, const OpenOptions& options) = nullptr;
};

// For formats without a collecting validator: the tensors `open` lists, or
// the one problem that stopped it.
ValidationReport validate_through_reader(const std::filesystem::path& path, const OpenOptions& options,
                                         const FormatHandler::OpenFn& open);
// For validators: a report whose only issue is why `path` could not be read.
ValidationReport unreadable_report(const std::filesystem::path& path, const Error& problem);
// Adds kNotACheckpoint ("no <what>") when no variable was found and no error says why.
void require_some_variable(ValidationReport& report, std::string_view what);

const FormatHandler& oneflow_format();
const FormatHandler& npy_format();
const FormatHandler& npz_format();
const FormatHandler& oneflow_pickle_format();
const FormatHandler& oneflow_single_file_format();
const FormatHandler& torch_format();
const FormatHandler& safetensors_format();

}  // namespace ckpt::detail
