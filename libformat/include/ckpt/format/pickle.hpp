// Python pickles as data only. The reader interprets protocols 2 to 5 with a
// stack machine that can build values and nothing else: a GLOBAL resolves
// only through a fixed allow-list (spec/pickle.md), each entry a C++ builder
// (OrderedDict, OneFlow tensor classes, torch's tensor rebuild functions and
// storage types). Any other global, any call or BUILD outside that list, and
// any cap exceeded is an error value; nothing from the file is ever run.
//
// Values live in a Document that owns them all, so shared references (the
// pickle memo) and even cycles in hostile input never leak; a Document
// handed out is a DAG without cycles, bounded in depth and expanded size.
// The writer emits protocols 2 to 4 exactly as CPython's pickler does for the
// same object graph: memoized by node identity, SETITEMS/APPENDS in batches of
// 1000, protocol-4 frames.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/read_options.hpp"
#include "ckpt/format/tensor.hpp"

namespace ckpt::pickle {

enum class Kind : std::uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,  // str, UTF-8
  kBytes,
  kTuple,
  kList,
  kSet,
  kDict,          // dict or collections.OrderedDict (`ordered`)
  kGlobal,        // an allow-listed class or function used as a value
  kOneflowTensor, // cls() + BUILD {"path": "tensor_N"}
  kTorchStorage,  // a torch persistent id ('storage', type, key, location, numel)
  kTorchTensor,   // torch._utils._rebuild_tensor_v2/v3(...) or a Parameter of it
  // OneFlow 1.0 single files (S1) hold tensors as numpy arrays:
  kNumpyArray,    // _reconstruct(ndarray, (0,), b'b') (cls, items[0]) + BUILD (1, shape, dtype, fortran, bytes) (state)
  kNumpyDtype,    // numpy.dtype('f4', False, True) (cls, items[0]) + BUILD (3, '<', None, None, None, -1, -1, 0) (state)
  kOneflowDtype,  // oneflow._oneflow_internal.dtype() (cls) + BUILD int DataType (state)
  kStub,          // an object of a class not on the allow-list, kept inert (PicklePolicy): cls, args, entries, state
  kNumpyScalar,   // numpy.core.multiarray.scalar(dtype, bytes) (cls, items[0]); `decoded` its Python value
};

std::string_view kind_name(Kind kind);

struct Value;

struct TorchStorageInfo {
  // kUInt8 for torch.UntypedStorage (`untyped`), whose numel counts bytes.
  DType dtype = DType::kFloat;
  std::string key;       // the record name under data/
  std::string location;  // "cpu", "cuda:0"
  std::uint64_t numel = 0;
  bool untyped = false;  // torch.UntypedStorage, as torch >= 2.1 saves the tensors of _rebuild_tensor_v3
};

struct TorchTensorInfo {
  const Value* storage = nullptr;  // kTorchStorage
  // The element type: the storage's (_rebuild_tensor_v2), or the dtype
  // argument of _rebuild_tensor_v3 over an untyped storage.
  DType dtype = DType::kFloat;
  std::uint64_t storage_offset = 0;  // in elements of `dtype`
  Shape shape;
  std::vector<std::int64_t> stride;
  bool requires_grad = false;
  bool parameter = false;  // wrapped by torch._utils._rebuild_parameter
};

// One node. Fields other than those of its kind are left empty.
struct Value {
  Kind kind = Kind::kNone;
  bool boolean = false;
  std::int64_t integer = 0;
  double real = 0;
  std::string text;    // kString, kBytes; kGlobal: module
  std::string name;    // kGlobal: qualified name
  // kTuple, kList, kSet; kNumpyArray, kNumpyDtype: the call's argument tuple;
  // kGlobal when written: optionally its module and name as str nodes, shared
  // with other globals and keys as CPython shares interned strings.
  std::vector<const Value*> items;
  std::vector<std::pair<const Value*, const Value*>> entries;  // kDict, in insertion order
  bool ordered = false;              // kDict: an OrderedDict
  const Value* metadata = nullptr;   // kDict: the `_metadata` attribute set by BUILD
  // kOneflowTensor: the class (kGlobal) and the BUILD state (kDict with "path",
  // or with "data", "dtype", "device" in S1); kNumpyArray, kNumpyDtype,
  // kOneflowDtype: the callable or class and the BUILD state;
  // kDict: the `__torch__` class of a TorchScript object (ReadOptions::torchscript_classes).
  const Value* cls = nullptr;
  const Value* state = nullptr;
  // kStub: made by NEWOBJ cls(*args) (else by REDUCE); `items` holds the
  // argument tuple, `entries` what SETITEMS added, `state` the BUILD state.
  bool newobj = false;
  // kNumpyScalar: the scalar as a bool, int or float node; nullptr for a
  // dtype with no Python value here (complex, float16, big-endian).
  const Value* decoded = nullptr;
  TorchStorageInfo storage;  // kTorchStorage
  TorchTensorInfo tensor;    // kTorchTensor
  // kNumpyArray whose dtype ckpt has (numpy_array_dtype), read with
  // ReadOptions::numpy_array_tensors: a checkpoint tensor where a tensor may
  // be named (spec/pickle.md, "numpy arrays").
  bool array_tensor = false;

  bool is_string(std::string_view s) const { return kind == Kind::kString && text == s; }
  // A tensor of the checkpoint: OneFlow's, torch's, or a numpy array marked `array_tensor`.
  bool is_tensor() const {
    return kind == Kind::kOneflowTensor || kind == Kind::kTorchTensor || (kind == Kind::kNumpyArray && array_tensor);
  }
  // The value of a dict entry whose key is the string `key`, or nullptr.
  const Value* find(std::string_view key) const;
  // kOneflowTensor: the `path` of its state; empty when missing.
  std::string_view oneflow_path() const;
  // kStub whose state is an nn.Module's (dicts _parameters, _buffers, _modules).
  bool is_module_stub() const;
};

// Owns every Value of one pickle. Movable, not copyable: values point at each other.
class Document {
 public:
  Document() = default;
  Document(Document&&) = default;
  Document& operator=(Document&&) = default;

  const Value* root() const { return root_; }
  void set_root(const Value* root) { root_ = root; }
  std::size_t size() const { return values_.size(); }

  // Construction, for the reader and for callers building a tree to write.
  Value* make(Kind kind);
  const Value* none() { return make(Kind::kNone); }
  const Value* boolean(bool value);
  const Value* integer(std::int64_t value);
  const Value* real(double value);
  const Value* string(std::string value);
  const Value* bytes(std::string value);
  const Value* global(std::string module, std::string name);
  Value* dict(bool ordered = false) {
    Value* d = make(Kind::kDict);
    d->ordered = ordered;
    return d;
  }
  Value* list() { return make(Kind::kList); }
  Value* tuple(std::vector<const Value*> items);

 private:
  std::vector<std::unique_ptr<Value>> values_;
  const Value* root_ = nullptr;
};

struct NamedTensor {
  std::string name;  // keys and indices joined with "."; "data" for a bare tensor
  const Value* node = nullptr;  // kOneflowTensor, kTorchTensor or an `array_tensor` kNumpyArray
};

// The element type of a numpy array (BUILD state (1, shape, dtype, fortran,
// bytes)) when ckpt has it and it is stored little-endian ('<', '|', '='):
// bool, ints, uints, f16/f32/f64, complex. nullopt for object, structured,
// void, string and big-endian dtypes, and for an array without its state.
std::optional<DType> numpy_array_dtype(const Value& array);

struct NumpyArrayData {
  VariableMeta meta;
  bool fortran_order = false;   // `bytes` in Fortran order (the first axis fastest)
  const Value* bytes = nullptr;  // kBytes: exactly meta.byte_size()
};

// The tensor a numpy array holds: fails with kPickleStructure when its state
// is not (1, shape of ints, a dtype numpy_array_dtype knows, bool, bytes),
// and kDataSizeMismatch when the bytes are not numel × itemsize.
Result<NumpyArrayData> numpy_array_data(const Value& array, std::string_view file, std::string_view name);
// The same array's elements in C order, a source named "<file>:<name>" over
// the pickle's bytes (a Fortran-order array is reordered in memory as an
// .npy's is); `array`'s Document must outlive it.
Result<std::unique_ptr<ByteSource>> open_numpy_array(const Value& array, std::string_view file, std::string_view name);

// Every tensor (Value::is_tensor) of `data`, sorted by dotted name ({"model": {"l1.weight": t}}
// -> "model.l1.weight", list items by index; a module stub's `_parameters`,
// `_buffers` and `_modules` entries by their keys alone, as state_dict()
// names them: "l1.weight"). Other leaves are skipped.
// Fails on a dict key that is neither str nor int, and on two tensors with
// the same name (kDuplicateName); `file` names errors.
Result<std::vector<NamedTensor>> named_tensors(const Value& data, std::string_view file);

struct NamedStub {
  std::string name;  // dotted, as named_tensors names its tensors' prefix; "" for the root
  const Value* node = nullptr;  // kStub
};

// Every module stub of `data`, each before the modules of its `_modules`,
// for showing the tree of a whole-module pickle. Keys that are neither str
// nor int hold no named stub and are skipped.
std::vector<NamedStub> module_stubs(const Value& data);

// Whether a tensor (Value::is_tensor; numpy arrays only when `numpy_arrays`) lies anywhere under `value`.
bool holds_tensor(const Value& value, bool numpy_arrays = true);

// One piece of non-tensor data of a pickle's object, for showing, comparing
// and counting what a flat format drops (spec/pickle.md, "Non-tensor data").
struct ObjectLeaf {
  std::string path;  // keys and indices joined with "." as tensors are named; "" for the root
  std::string type;  // "int", "str", "dict", "argparse.Namespace" (a stub), "numpy.ndarray", "numpy.float64"
  const Value* node = nullptr;
};

// The non-tensor leaves of `data` in tree order: dicts are walked by key (an
// empty one is a leaf), lists and tuples by index when they hold a tensor
// (else each is one leaf), and a stub is one leaf (its dict state walked too
// when it holds tensors). Module stubs (module_stubs) and tensors are not leaves.
std::vector<ObjectLeaf> object_leaves(const Value& data);

// Python's repr() of `value` as the object torch.load would rebuild shows it
// ("0.1", "'run'", "[1, 2]", "argparse.Namespace(lr=0.1)"), tensors and
// arrays by dtype and shape; nullopt when it is longer than `limit` bytes.
std::optional<std::string> python_repr(const Value& value, std::size_t limit);

// Whether two values are equal as data: same kinds, values, classes,
// arguments and states; tensors by dtype, shape and name only (their values
// are compared as tensors).
bool same_value(const Value& a, const Value& b);

// A copy of `data` into `into` in which every tensor leaf is replaced by
// `tensor_named(its dotted name)` (the names named_tensors gives); other
// values are copied as they are. Writers use it to put their own tensors in
// the object a reader found. For a numpy array leaf `tensor_named` may give
// a kBytes node instead: the array is then copied as it was (class, dtype,
// shape) holding those bytes, in C order.
Result<const Value*> copy_replacing_tensors(const Value& data, Document& into,
                                            const std::function<Result<const Value*>(const std::string&)>& tensor_named,
                                            std::string_view file);

// Nests flat dotted names into dicts (spec/pickle.md, "Nesting"): a name
// whose leading segments match a prefix (segments, `*` matching any one)
// goes under dicts keyed by those segments (decimal ones as int keys), the
// rest of the name one key of a state_dict there, made by `make_state_dict`;
// a name no prefix matches stays whole at the top. The longest match wins.
// named_tensors(result) gives the names back. `tensors` in insertion order.
Result<const Value*> nest_tensors(Document& into, const std::vector<std::pair<std::string, const Value*>>& tensors,
                                  std::span<const std::string> prefixes, const std::function<Value*()>& make_state_dict,
                                  std::string_view file);

struct ReadLimits {
  // Real data.pkl / pickled_data files are kilobytes (tensors live elsewhere).
  std::uint64_t max_input_bytes = 64ull << 20;
  std::size_t max_stack = 1u << 20;     // stack entries, marks included
  std::size_t max_marks = 256;          // nested MARKs
  std::size_t max_memo = 1u << 22;      // highest memo index + 1
  std::size_t max_values = 1u << 22;    // nodes created
  std::size_t max_depth = 256;          // nesting of the finished tree
  std::uint64_t max_expanded = 1u << 24;  // nodes counted as a tree (shared ones each time)
  std::uint64_t max_decoded_bytes = 256ull << 20;  // memory of the decoded object (spec/pickle.md)
};

// Which builders the allow-list enables; anything not enabled is a forbidden global.
enum class Flavor : std::uint8_t {
  kOneflow,  // OrderedDict, OneFlow tensor and parameter classes
  kTorch,    // OrderedDict, _codecs.encode, torch rebuild functions, storages, persistent ids
};

struct ReadOptions {
  Flavor flavor = Flavor::kOneflow;
  ReadLimits limits = {};
  // TorchScript archives (torch.jit.save): a `__torch__.*` class is an inert
  // stub, NEWOBJ () makes a dict with `cls` set and BUILD fills it with the
  // attributes, so tensors are named by the module tree. Nothing is imported.
  bool torchscript_classes = false;
  PicklePolicy policy = {};
  // A numpy array that the caller's policy let in (`policy` allows its
  // `_reconstruct`), of a dtype ckpt has, is a checkpoint tensor
  // (Value::array_tensor): set for torch files and OneFlow's P1; S1 leaves
  // it unset, its arrays are its tensors' data (spec/pickle.md).
  bool numpy_array_tensors = false;
};

// Reads one pickle that must fill `bytes` exactly (STOP at the end).
// `name` names the source in errors.
Result<Document> read(std::span<const std::byte> bytes, const ReadOptions& options = {},
                      std::string_view name = "<memory>");
Result<Document> read(const ByteSource& source, const ReadOptions& options = {});

// Reads the pickle at the start of `bytes`, which may go on after its STOP
// (torch's legacy format writes several pickles in a row); `consumed` is
// set to the pickle's length.
Result<Document> read_prefix(std::span<const std::byte> bytes, const ReadOptions& options, std::string_view name,
                             std::uint64_t& consumed);

// Writes `root` with protocol 2, 3 or 4, as CPython's C pickler would for
// the same object graph (shared nodes become memo references).
// kTorchStorage nodes are written as BINPERSID persistent ids.
Result<std::vector<std::byte>> write(const Value& root, int protocol);

}  // namespace ckpt::pickle
