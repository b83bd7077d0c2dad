// Any checkpoint format behind one interface: a set of named tensors, each
// readable as C-order little-endian bytes, and a writer that takes tensors
// one at a time. Converters, inspect and diff work on these two interfaces
// only, so each new format is one reader and one writer, not a converter
// per pair.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/meta.hpp"
#include "ckpt/format/npy.hpp"
#include "ckpt/format/validate.hpp"

namespace ckpt {

namespace pickle {
struct Value;
}

struct TensorInfo {
  std::string name;
  VariableMeta meta;
};

class CheckpointReader {
 public:
  virtual ~CheckpointReader() = default;
  // The format's name as the tools print it: "oneflow", "npy", "npz", ...
  virtual std::string_view format_name() const = 0;
  virtual const std::filesystem::path& path() const = 0;
  // Sorted by name.
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  // The tensor's bytes in C order, little-endian, exactly meta.byte_size()
  // long. Sources that must reorder or swap do it while being read.
  virtual Result<std::unique_ptr<ByteSource>> open(std::string_view name) const = 0;

  const TensorInfo* find(std::string_view name) const;

  // The pickle formats (torch, oneflow-pickle) store one Python object
  // around the tensors: {"model": state_dict, "optimizer": ..., "epoch": 3}.
  // Its tensor leaves are the tensors() of the same dotted names; other
  // leaves are data only this object has. nullptr for the flat formats.
  virtual const pickle::Value* object() const { return nullptr; }
};

class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  virtual Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) = 0;
  // Publishes everything added; without it nothing appears at the destination.
  virtual Status commit() = 0;

  // The pickle formats write one object around the tensors: by default a
  // flat state_dict of the added names in the order added. With an object
  // (a reader's object(), which must outlive commit) it is written instead,
  // each tensor leaf replaced by the tensor added under its dotted name;
  // flat formats have no place for it and keep the tensors only.
  virtual Status set_object(const pickle::Value& object);
  // Nests the dotted names under `prefixes` (spec/pickle.md, "Nesting");
  // flat formats refuse it.
  virtual Status set_nesting(std::vector<std::string> prefixes);
};

// Shapes and dtypes supplied from outside, for checkpoints that do not store
// them (OneFlow L0): name -> meta.
using ShapeTable = std::map<std::string, VariableMeta, std::less<>>;

struct OpenOptions {
  std::optional<std::string> format;  // detected from content when absent
  const ShapeTable* shapes = nullptr;
  // npy and npz: the '<V2' bfloat16 choice and the Fortran-order reorder cap.
  NpyReadOptions npy = {};
  // A single .npy file: the name of its one tensor (default: the file's stem).
  std::optional<std::string> tensor_name = std::nullopt;
};

// The format of `path` from its content ("oneflow", "npy", "npz", ...), or
// an error saying what was found instead.
Result<std::string> detect_format(const std::filesystem::path& path);

Result<std::unique_ptr<CheckpointReader>> open_checkpoint(const std::filesystem::path& path,
                                                          const OpenOptions& options = {});
Result<std::unique_ptr<CheckpointWriter>> create_checkpoint(const std::filesystem::path& path,
                                                            std::string_view format, WriteOptions options = {});

// Every problem of the checkpoint at `path` read as `format`, all collected
// (spec/validation.md). Formats without a validator of their own report
// what open_checkpoint says.
ValidationReport validate_checkpoint(const std::filesystem::path& path, std::string_view format,
                                     const OpenOptions& options = {});

// Every format this build can read and write, for --help texts.
std::vector<std::string_view> checkpoint_formats();

// Parses {"name": {"dtype": "kFloat", "shape": [..]}, ...}.
Result<ShapeTable> parse_shape_table(std::string_view json_text, std::string_view file_name = "<shapes>");

}  // namespace ckpt
