// PyTorch files: the zip that torch.save writes since 1.6.
//
//   <root>/data.pkl        protocol-2 pickle; tensors are
//                          _rebuild_tensor_v2(persistent storage id, offset, size, stride, ...)
//   <root>/data/<key>      one record per storage, raw little-endian elements
//   <root>/byteorder       "little" (absent in old files: little)
//   <root>/version         "3\n"
//
// Read with the data-only pickle reader in its torch flavor (the allow-list
// of weights_only, smaller). Tensors are named like P1 tensors: keys and
// indices joined with "."; views (offsets, strides) and shared storages are
// resolved when a tensor is read, into C-order bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/zip.hpp"

namespace ckpt {

struct TorchTensorRef {
  std::string name;  // dotted path of keys and indices
  VariableMeta meta;
  const pickle::Value* node = nullptr;  // kTorchTensor
};

class TorchFile {
 public:
  // Opens the zip, checks its layout, reads data.pkl and checks every
  // tensor's view against its storage record. A problem with the archive or
  // the pickle ends the reading (nullopt); a tensor with a problem is left
  // out and the others are still checked, unless `problems` says stop.
  static std::optional<TorchFile> open(const std::filesystem::path& path, ProblemSink& problems);
  // The same, failing on the first problem.
  static Result<TorchFile> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const pickle::Value& data() const { return *document_.root(); }
  const std::vector<TorchTensorRef>& tensors() const { return tensors_; }  // sorted by name
  const TorchTensorRef* find(std::string_view name) const;

  // The tensor in C order, little-endian; `out` must be exactly meta.byte_size().
  Status read(std::string_view name, std::span<std::byte> out) const;
  // The tensor as C-order bytes: a contiguous view reads its storage record
  // in place; a strided one is gathered into memory when opened. The
  // TorchFile must outlive the source.
  Result<std::unique_ptr<ByteSource>> open_tensor(std::string_view name) const;

 private:
  TorchFile() = default;
  // The archive and its pickle: any problem here ends the reading.
  static Result<TorchFile> open_archive(const std::filesystem::path& path);
  // Checks each tensor of the pickle and keeps the sound ones; false when
  // `problems` said stop.
  bool add_tensors(ProblemSink& problems);
  Result<const TorchTensorRef*> get(std::string_view name) const;  // kUnknownVariable when absent
  std::filesystem::path path_;
  std::unique_ptr<FileSource> file_;  // heap-held: zip_ points at it
  std::unique_ptr<ZipReader> zip_;
  std::string root_;
  pickle::Document document_;
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
