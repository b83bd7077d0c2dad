// OneFlow's pickle directory (P1): what flow.save(obj, dir) writes in OneFlow
// 0.6-0.9 and 1.0 with save_as_external_data=True.
//
//   <dir>/pickled_data   pickle of {"protocol_version": 1, ["__oneflow__": None,] "data": obj}
//   <dir>/tensor_N/      one per distinct tensor: meta + out, as in a snapshot
//
// A tensor in the pickle is cls() + BUILD {"path": "tensor_N"}. The object
// is exposed as a pickle tree, and flat: every tensor named by its keys and
// indices joined with "." ({"model": {"l1.weight": t}} -> "model.l1.weight").
// Non-tensor leaves (an "epoch" int) are in the tree only. Snapshot::open and
// validate_snapshot read it once to name P1 variables; Snapshot::pickle()
// keeps it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/writer.hpp"

namespace ckpt {

struct PickleTensorRef {
  std::string name;       // dotted path of keys and indices
  std::string directory;  // the tensor directory, "tensor_17"
  const pickle::Value* node = nullptr;
};

// A numpy array of the object that is a tensor of the checkpoint (the
// policy allowed numpy's `_reconstruct`; spec/pickle.md): its bytes are the
// pickle's, not a directory's.
struct PickleArrayRef {
  std::string name;  // dotted path of keys and indices
  VariableMeta meta;
  const pickle::Value* node = nullptr;  // kNumpyArray, Value::array_tensor
};

struct OneflowPickle {
  pickle::Document document;
  const pickle::Value* data = nullptr;  // the object given to flow.save
  bool oneflow_marker = false;          // OneFlow 1.0's "__oneflow__" key
  std::vector<PickleTensorRef> tensors;  // sorted by name; tied tensors appear under each name
  std::vector<PickleArrayRef> arrays;    // sorted by name
};

// Reads and interprets <root>/pickled_data: the top-level dict, protocol
// version 1, every tensor's path a single safe directory name (kUnsafeName
// otherwise), unique dotted names (kDuplicateName), each array tensor's
// bytes its dtype and shape (numpy_array_data). Does not look at the
// tensor directories; Snapshot::open does.
Result<OneflowPickle> read_oneflow_pickle(const std::filesystem::path& root, const pickle::PicklePolicy& policy = {});

struct OneflowTensorRefs {
  std::vector<PickleTensorRef> tensors;
  std::vector<PickleArrayRef> arrays;
};

// The tensors and array tensors of a tree with their dotted names; `file` names errors.
Result<OneflowTensorRefs> flatten_oneflow_tensors(const pickle::Value& data, std::string_view file);

struct OneflowPickleOptions {
  int protocol = 4;             // Python >= 3.8 writes 4, Python 3.7 writes 3
  bool oneflow_marker = false;  // write OneFlow 1.0's "__oneflow__": None
  WriteOptions write = {};
};

// Writes a P1 directory crash-safely: tensors first (tensor_1, tensor_2, ...
// in the order added), then pickled_data, then the directory is moved into
// place. Build the object from document() and the nodes add_tensor returns.
class OneflowPickleWriter {
 public:
  static Result<OneflowPickleWriter> create(const std::filesystem::path& destination, OneflowPickleOptions options = {});

  pickle::Document& document() { return document_; }
  // Writes the next tensor_N/{out,meta} and returns its node (class oneflow.nn.Parameter).
  Result<const pickle::Value*> add_tensor(const VariableMeta& meta, const ByteSource& data);
  // An OrderedDict with an empty `_metadata`, as Module.state_dict() returns.
  pickle::Value* state_dict();
  // Pickles {"protocol_version": 1, ["__oneflow__": None,] "data": data} and publishes the directory.
  Status commit(const pickle::Value& data);

 private:
  OneflowPickleWriter(SnapshotWriter writer, OneflowPickleOptions options)
      : writer_(std::move(writer)), options_(std::move(options)) {}

  SnapshotWriter writer_;
  OneflowPickleOptions options_;
  pickle::Document document_;
  const pickle::Value* tensor_class_ = nullptr;
  const pickle::Value* path_key_ = nullptr;  // one "path" str, shared as in OneFlow's __getstate__
  std::size_t tensor_count_ = 0;
};

}  // namespace ckpt
