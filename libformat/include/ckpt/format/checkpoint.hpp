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
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/read_options.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/validation.hpp"

namespace ckpt {

namespace pickle {
struct Value;
}

// Free-form text a format stores beside its tensors: safetensors'
// __metadata__ ({"format": "pt"}).
using TextMetadata = std::map<std::string, std::string>;

// A tensor the file holds in a type ckpt cannot represent (an npz member of
// '|S3', '<f16' or objects): listed, never read, and a conversion leaves it
// out only when told to (ConvertOptions::skip_unsupported).
struct UnsupportedTensor {
  std::string name;
  std::string descr;   // the file's own spelling of the type ("|S3")
  std::string reason;  // why ckpt cannot represent it
};

class CheckpointReader {
 public:
  virtual ~CheckpointReader() = default;
  // The format's registry name: "oneflow", "npy", "npz", ...
  virtual std::string_view format_name() const = 0;
  // The generation within the format where it has several (OneFlow: "L0",
  // "L1/E1", "G1", "P1"); empty otherwise.
  virtual std::string_view layout() const { return {}; }
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

  // The file's text metadata (safetensors; the first shard's for a sharded
  // set); empty for formats without it.
  virtual const TextMetadata& metadata() const;

  // The file's tensors of types ckpt cannot represent, sorted by name; they
  // are not in tensors().
  virtual const std::vector<UnsupportedTensor>& unsupported() const;
};

class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  // Announces, before the first add(), every tensor that will be added.
  // Writers whose header needs every size (safetensors) then lay out their
  // files at once and write each tensor once, in place, instead of staging
  // it; the order given decides what an add order would (the shards of a
  // sharded set). After a plan every tensor of it must be added before
  // commit(). Other writers ignore it.
  virtual Status plan(std::span<const TensorInfo> tensors);
  // Whether add() may now be called from several threads at once (for
  // different tensors): true for the safetensors writers after plan().
  virtual bool concurrent_adds() const { return false; }
  virtual Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) = 0;
  // Publishes everything added; without it nothing appears at the destination.
  virtual Status commit() = 0;

  // The pickle formats write one object around the tensors: by default a
  // flat state_dict of the added names in the order added. With an object
  // (a reader's object(), which must outlive commit) it is written instead,
  // each tensor leaf replaced by the tensor added under its dotted name;
  // flat formats have no place for it and keep the tensors only.
  virtual Status set_object(const pickle::Value& object);
  // Whether set_object keeps the object (the pickle formats); the flat
  // formats drop its non-tensor data.
  virtual bool keeps_object() const { return false; }
  // Nests the dotted names under `prefixes` (spec/pickle.md, "Nesting");
  // flat formats refuse it.
  virtual Status set_nesting(std::vector<std::string> prefixes);

  // Whether the format stores text metadata (the safetensors family).
  virtual bool stores_metadata() const { return false; }
  // Adds `entries` to the metadata written, replacing keys already there;
  // a safetensors writer starts from {"format": "pt"}, what Hugging Face's
  // loaders expect. Formats without metadata refuse it (E104).
  virtual Status set_metadata(const TextMetadata& entries);
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
  // The pickle formats (torch, oneflow-pickle, oneflow-single-file): globals
  // kept as inert stubs (--allow-global, --stub-unknown).
  pickle::PicklePolicy pickle_policy = {};
};

// The format of `path` from its content ("oneflow", "npy", "npz", ...), or
// an error saying what was found instead.
Result<std::string> detect_format(const std::filesystem::path& path);

Result<std::unique_ptr<CheckpointReader>> open_checkpoint(const std::filesystem::path& path,
                                                          const OpenOptions& options = {});
Result<std::unique_ptr<CheckpointWriter>> create_checkpoint(const std::filesystem::path& path,
                                                            std::string_view format, WriteOptions options = {});

// Every problem of the checkpoint at `path` read as `format`, all collected
// (spec/validation.md), and leftovers of an interrupted write beside it.
ValidationReport validate_checkpoint(const std::filesystem::path& path, std::string_view format,
                                     const OpenOptions& options = {});
// The same in options.format, or in the format detected from the content;
// when none is recognised, the report's one error says so.
ValidationReport validate_checkpoint(const std::filesystem::path& path, const OpenOptions& options = {});

// Every format this build can read and write, for --help texts.
std::vector<std::string_view> checkpoint_formats();

// Parses {"name": {"dtype": "kFloat", "shape": [..]}, ...}; dtype in any
// spelling parse_dtype accepts.
Result<ShapeTable> parse_shape_table(std::string_view json_text, std::string_view file_name = "<shapes>");

}  // namespace ckpt
