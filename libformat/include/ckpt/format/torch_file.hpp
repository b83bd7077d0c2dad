// PyTorch files: the zip that torch.save writes since 1.6, the legacy
// format of torch < 1.6, and TorchScript archives (torch.jit.save).
//
//   <root>/data.pkl        protocol-2 pickle; tensors are
//                          _rebuild_tensor_v2(persistent storage id, offset, size, stride, ...)
//   <root>/data/<key>      one record per storage, raw little-endian elements
//   <root>/byteorder       "little" (absent in old files: little)
//   <root>/version         "3\n"
//
// torch >= 2.1 saves float8, uint16/32/64 and complex32 tensors over a
// torch.UntypedStorage (numel in bytes) with _rebuild_tensor_v3(..., dtype).
//
// The legacy format (torch/serialization.py, _legacy_save) is five pickles
// in a row, then the storages:
//   MAGIC_NUMBER 0x1950a86a20f9469cfc6c, PROTOCOL_VERSION 1001,
//   sys_info {"little_endian": True, ...}, the object (persistent ids
//   ('storage', type, key, location, numel, None)), the sorted storage keys;
//   then per key: int64 element count (little-endian), the elements.
//
// A TorchScript archive is a zip like torch.save's plus constants.pkl and
// code/: `__torch__` classes are read as inert stubs whose attributes name
// the tensors (the module tree: "inner.lin.weight"); the tensors of
// constants.pkl are "constants.<index>".
//
// Read with the data-only pickle reader in its torch flavor (the allow-list
// of weights_only, smaller), with the same caps in every layout. Tensors are named like P1 tensors: keys and
// indices joined with "."; views (offsets, strides) and shared storages are
// resolved when a tensor is read, into C-order bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/zip.hpp"

namespace ckpt {

struct TorchTensorRef {
  std::string name;  // dotted path of keys and indices
  VariableMeta meta;
  // kTorchTensor, or a numpy array of the pickle (Value::array_tensor) whose bytes the pickle holds.
  const pickle::Value* node = nullptr;
  std::string record;  // its storage's record: "data/<key>", a TorchScript constant's "constants/<key>"; empty for an array

  bool is_numpy_array() const { return node->kind == pickle::Kind::kNumpyArray; }
};

// Whether `file` starts with the legacy format's magic-number pickle.
bool is_legacy_torch(const ByteSource& file);

class TorchFile {
 public:
  // Opens the zip or legacy file, checks its layout, reads the pickle and
  // checks every tensor's view against its storage record. A problem with
  // the file or its pickle ends the reading (nullopt); a tensor with a
  // problem is left out and the others are still checked, unless `problems`
  // says stop.
  // `policy`: what the pickles may hold beyond the allow-list.
  static std::optional<TorchFile> open(const std::filesystem::path& path, ProblemSink& problems,
                                       const pickle::PicklePolicy& policy = {});
  // The same, failing on the first problem.
  static Result<TorchFile> open(const std::filesystem::path& path, const pickle::PicklePolicy& policy = {});

  const std::filesystem::path& path() const { return path_; }
  const pickle::Value& data() const { return *document_.root(); }
  bool is_torchscript() const { return torchscript_; }
  // torch's format before 1.6 (_legacy_save), not a zip.
  bool is_legacy() const { return zip_ == nullptr; }
  const std::vector<TorchTensorRef>& tensors() const { return tensors_; }  // sorted by name
  const TorchTensorRef* find(std::string_view name) const;

  // The tensor in C order, little-endian; `out` must be exactly meta.byte_size().
  Status read(std::string_view name, std::span<std::byte> out) const;
  // The tensor as C-order bytes: a contiguous view reads its storage record
  // in place; a strided one is gathered through a bounded window. The
  // TorchFile must outlive the source.
  Result<std::unique_ptr<ByteSource>> open_tensor(std::string_view name) const;

 private:
  TorchFile() = default;
  // Problems of the file end the reading (the Status); tensors' problems go
  // to `problems`.
  Status open_zip(ProblemSink& problems, const pickle::PicklePolicy& policy);
  Status open_legacy(ProblemSink& problems, const pickle::PicklePolicy& policy);
  // Names the tensors of `document` (under `prefix`), checks each view
  // against its storage record in records_ and keeps the sound ones; false
  // when `problems` said stop. `record_folder` holds the document's storage
  // records ("data", "constants").
  bool add_tensors(const pickle::Document& document, std::string_view pickle_name, std::string_view prefix,
                   std::string_view record_folder, ProblemSink& problems);
  Result<const TorchTensorRef*> get(std::string_view name) const;  // kUnknownVariable when absent
  std::filesystem::path path_;
  std::shared_ptr<const FileSource> file_;  // zip_ and the records point into it
  std::unique_ptr<ZipReader> zip_;
  std::string root_;
  bool torchscript_ = false;
  pickle::Document document_;
  pickle::Document constants_;  // TorchScript: constants.pkl
  // Each storage record's bytes by name ("data/<key>"): a zip member, or a
  // slice of a legacy file.
  std::map<std::string, std::shared_ptr<const ByteSource>, std::less<>> records_;
  std::vector<TorchTensorRef> tensors_;
};

// Writes a file that torch.load(path, weights_only=True) reads: protocol 2,
// contiguous tensors with one storage each, stored records aligned to 64
// bytes as torch aligns them. Crash-safe (AtomicFile). Build the object
// (any tree of dicts, lists and plain values) from document() and the nodes
// add_tensor returns, as with OneflowPickleWriter.
class TorchWriter {
 public:
  static Result<TorchWriter> create(const std::filesystem::path& path, WriteOptions options = {});
  TorchWriter(TorchWriter&&) noexcept;
  ~TorchWriter();

  pickle::Document& document();
  // Writes the tensor's storage record data/<n> and returns its tensor node.
  Result<const pickle::Value*> add_tensor(const VariableMeta& meta, const ByteSource& data);
  // An OrderedDict, as Module.state_dict() returns.
  pickle::Value* state_dict();
  // Pickles `data` as data.pkl, adds byteorder and version, and publishes the file.
  Status commit(const pickle::Value& data);

 private:
  struct State;
  explicit TorchWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ckpt
