// ckptio._core: the Python package's bindings (pybind11) over libformat and
// the converters. It hands Python tensor bytes (inside a memory map of the
// file where the file holds them plainly, copies otherwise) and tensor descriptions; ckptio's
// Python modules turn them into numpy arrays and the public API.
#include <sys/mman.h>
#include <sys/stat.h>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "ckpt/convert/convert.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/pickle.hpp"
#include "ckpt/format/registry.hpp"
#include "ckpt/format/torch_file.hpp"
#include "ckpt/format/validation.hpp"
#include "ckpt/format/views.hpp"

namespace py = pybind11;

namespace {

PyObject* g_error_type = nullptr;  // ckptio.CkptError

// Raises ckptio.CkptError carrying the error's code, name, file and variable.
[[noreturn]] void raise_error(const ckpt::Error& error) {
  py::object type = py::reinterpret_borrow<py::object>(g_error_type);
  py::object exception = type(error.describe());
  exception.attr("code") = static_cast<int>(error.code());
  exception.attr("name") = std::string(ckpt::code_name(error.code()));
  exception.attr("file") = error.file().empty() ? py::object(py::none()) : py::str(error.file());
  exception.attr("variable") = error.variable().empty() ? py::object(py::none()) : py::str(error.variable());
  PyErr_SetObject(g_error_type, exception.ptr());
  throw py::error_already_set();
}

template <class T>
T unwrap(ckpt::Result<T>&& result) {
  if (!result.ok()) raise_error(result.error());
  return std::move(result).value();
}

void check(const ckpt::Status& status) {
  if (!status.ok()) raise_error(status.error());
}

ckpt::DType dtype_named(const std::string& name) {
  auto dtype = ckpt::dtype_from_name(name);
  if (!dtype) raise_error(ckpt::Error(ckpt::ErrorCode::kInvalidArgument, "unknown data type '" + name + "'"));
  return *dtype;
}

ckpt::pickle::PicklePolicy pickle_policy(std::vector<std::string> allowed_globals, bool stub_unknown) {
  ckpt::pickle::PicklePolicy policy;
  policy.allowed_globals = std::move(allowed_globals);
  policy.stub_unknown = stub_unknown;
  return policy;
}

// Views (spec/casting.md) stacked on a reader: filter, then rename, then cast.
std::unique_ptr<ckpt::CheckpointReader> with_views(std::unique_ptr<ckpt::CheckpointReader> reader,
                                                   const std::optional<std::string>& dtype,
                                                   std::vector<std::string> include, std::vector<std::string> exclude,
                                                   const std::vector<std::string>& rename) {
  if (!include.empty() || !exclude.empty()) {
    reader = unwrap(ckpt::filter_view(std::move(reader), std::move(include), std::move(exclude)));
  }
  if (!rename.empty()) {
    std::vector<ckpt::RenameRule> rules;
    for (const auto& text : rename) rules.push_back(unwrap(ckpt::parse_rename_rule(text)));
    reader = unwrap(ckpt::rename_view(std::move(reader), std::move(rules)));
  }
  if (dtype) reader = unwrap(ckpt::cast_view(std::move(reader), dtype_named(*dtype)));
  return reader;
}

// One file mapped whole, read-only, shared by every array of a reader that
// lies in it: a checkpoint of thousands of small tensors costs one mmap, not
// one per tensor. It outlives the reader, and the file's replacement.
class FileMapping {
 public:
  FileMapping(void* base, std::size_t length) : base_(base), length_(length) {}
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping() { ::munmap(base_, length_); }
  const std::byte* base() const { return static_cast<const std::byte*>(base_); }
  std::size_t length() const { return length_; }

 private:
  void* base_;
  std::size_t length_;
};

// A tensor's bytes as a read-only Python buffer: inside a shared mapping, or
// a copy. numpy arrays made from it keep it (and so the mapping) alive.
struct Bytes {
  std::shared_ptr<const FileMapping> mapping;  // null for a copy
  std::vector<std::byte> copy;
  const std::byte* data = nullptr;
  std::uint64_t size = 0;
};

struct TensorDescription {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t nbytes;
};

// A pickle format's object as Python values (Checkpoint.object): Python's
// own containers and scalars, tensors through `array(name)`, stubs and bare
// globals as ckptio.Stub and ckptio.Global (nothing imported, nothing
// called), numpy arrays, scalars and dtypes as numpy's. A node the pickle
// shares (its memo) is one Python object, as pickle.load makes it. The
// pickle reader hands out trees no deeper than its cap; the recursion here
// stops at the same cap.
class ObjectBuilder {
 public:
  using Value = ckpt::pickle::Value;
  using Kind = ckpt::pickle::Kind;

  ObjectBuilder(std::string file, std::unordered_map<const Value*, std::string> tensor_names,
                std::function<py::object(const std::string&)> array, py::object stub, py::object global)
      : file_(std::move(file)),
        tensor_names_(std::move(tensor_names)),
        array_(std::move(array)),
        stub_(std::move(stub)),
        global_(std::move(global)),
        numpy_(py::module_::import("numpy")),
        ordered_dict_(py::module_::import("collections").attr("OrderedDict")) {}

  py::object build(const Value& root) {
    try {
      return of(root, 0);
    } catch (py::error_already_set& error) {
      // An unhashable dict key or set member, a numpy dtype or buffer numpy refuses: data Python cannot hold.
      if (!error.matches(PyExc_TypeError) && !error.matches(PyExc_ValueError)) throw;
      fail(fmt::format("the object has a value Python cannot represent: {}", error.what()));
    }
  }

 private:
  static constexpr std::size_t kMaxDepth = ckpt::pickle::ReadLimits{}.max_depth;

  [[noreturn]] void fail(std::string message, ckpt::ErrorCode code = ckpt::ErrorCode::kPickleStructure) const {
    raise_error(ckpt::Error(code, std::move(message)).in_file(file_));
  }

  py::object of(const Value& value, std::size_t depth) {
    if (depth > kMaxDepth) fail(fmt::format("the object is nested deeper than {}", kMaxDepth), ckpt::ErrorCode::kPickleLimit);
    if (auto done = built_.find(&value); done != built_.end()) return done->second;
    py::object made = make(value, depth + 1);
    built_.emplace(&value, made);
    return made;
  }

  py::object make(const Value& value, std::size_t depth) {
    switch (value.kind) {
      case Kind::kNone: return py::none();
      case Kind::kBool: return py::bool_(value.boolean);
      case Kind::kInt: return py::int_(value.integer);
      case Kind::kFloat: return py::float_(value.real);
      case Kind::kString: return text(value.text);
      case Kind::kBytes: return py::bytes(value.text);
      case Kind::kTuple: return tuple_of(value.items, depth);
      // PyList_Append and PySet_Add directly: pybind11's append and add drop their failure (an unhashable member).
      case Kind::kList: {
        py::list list;
        for (const Value* item : value.items) {
          if (PyList_Append(list.ptr(), of(*item, depth).ptr()) != 0) throw py::error_already_set();
        }
        return list;
      }
      case Kind::kSet: {
        py::set set;
        for (const Value* item : value.items) {
          if (PySet_Add(set.ptr(), of(*item, depth).ptr()) != 0) throw py::error_already_set();
        }
        return set;
      }
      case Kind::kDict: return dict_of(value, depth);
      case Kind::kGlobal: return global_(value.text, value.name);
      case Kind::kOneflowTensor:
      case Kind::kTorchTensor: return tensor(value);
      case Kind::kTorchStorage: fail("a torch storage outside any tensor");
      // An array the checkpoint lists as a tensor is that tensor, as ckpt[name] gives it.
      case Kind::kNumpyArray: return value.is_tensor() ? tensor(value) : ndarray(value);
      case Kind::kNumpyDtype: return numpy_.attr("dtype")(numpy_descr(value));
      case Kind::kNumpyScalar: return scalar(value);
      case Kind::kOneflowDtype:
        // oneflow.float32 and the like: its class and DataType number, as a stub.
        return stub_(value.cls != nullptr ? value.cls->text : "oneflow._oneflow_internal",
                     value.cls != nullptr ? value.cls->name : "dtype", py::tuple(),
                     value.state != nullptr ? of(*value.state, depth) : py::none(), py::none());
      case Kind::kStub: {
        py::object items = py::none();
        if (!value.entries.empty()) items = entries_of(py::dict(), value.entries, depth);
        return stub_(value.cls->text, value.cls->name, value.items.empty() ? py::tuple() : of(*value.items[0], depth),
                     value.state != nullptr ? of(*value.state, depth) : py::none(), items);
      }
    }
    fail(fmt::format("a value of unknown kind {}", static_cast<int>(value.kind)));
  }

  // str as CPython's pickle decodes it: UTF-8 with lone surrogates allowed.
  static py::object text(const std::string& utf8) {
    PyObject* decoded = PyUnicode_DecodeUTF8(utf8.data(), static_cast<Py_ssize_t>(utf8.size()), "surrogatepass");
    if (decoded == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(decoded);
  }

  py::object tuple_of(const std::vector<const Value*>& items, std::size_t depth) {
    py::tuple tuple(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) tuple[i] = of(*items[i], depth);
    return tuple;
  }

  py::object entries_of(py::object dict, const std::vector<std::pair<const Value*, const Value*>>& entries,
                        std::size_t depth) {
    for (const auto& [key, item] : entries) dict[of(*key, depth)] = of(*item, depth);
    return dict;
  }

  py::object dict_of(const Value& dict, std::size_t depth) {
    py::object out = entries_of(dict.ordered ? ordered_dict_() : py::dict(), dict.entries, depth);
    // state_dict()'s OrderedDict carries its `_metadata` as an attribute, as torch.load restores it.
    if (dict.ordered && dict.metadata != nullptr) py::setattr(out, "_metadata", of(*dict.metadata, depth));
    // A TorchScript object: its `__torch__` class and its attributes.
    if (dict.cls != nullptr) return stub_(dict.cls->text, dict.cls->name, py::tuple(), out, py::none());
    return out;
  }

  py::object tensor(const Value& node) {
    auto name = tensor_names_.find(&node);
    if (name == tensor_names_.end()) {
      fail("a tensor the checkpoint gives no name (in a set, a dict key or a stub's arguments)");
    }
    return array_(name->second);
  }

  // numpy's dtype string ("<f4") of dtype(code, False, True) + BUILD (3, order, subarray, names, fields, ...).
  std::string numpy_descr(const Value& dtype) const {
    if (dtype.kind != Kind::kNumpyDtype || dtype.items.size() != 1 || dtype.items[0]->kind != Kind::kTuple ||
        dtype.items[0]->items.empty() || dtype.items[0]->items[0]->kind != Kind::kString) {
      fail("a numpy dtype that is not dtype(str, ...)");
    }
    std::string order;
    if (const Value* state = dtype.state; state != nullptr) {
      if (state->kind != Kind::kTuple || state->items.size() < 5 || state->items[1]->kind != Kind::kString) {
        fail("a numpy dtype whose state is not (version, byte order, subarray, names, fields, ...)");
      }
      for (std::size_t i = 2; i < 5; ++i) {
        if (state->items[i]->kind != Kind::kNone) fail("a structured or subarray numpy dtype");
      }
      order = state->items[1]->text;
    }
    return order + dtype.items[0]->items[0]->text;
  }

  // _reconstruct(ndarray, (0,), b'b') + BUILD (version, shape, dtype, fortran, bytes).
  py::object ndarray(const Value& array) {
    const Value* state = array.state;
    if (state == nullptr || state->kind != Kind::kTuple || state->items.size() != 5 ||
        state->items[1]->kind != Kind::kTuple || state->items[3]->kind != Kind::kBool ||
        state->items[4]->kind != Kind::kBytes) {
      fail("a numpy array whose state is not (version, shape, dtype, fortran, bytes)");
    }
    py::tuple shape(state->items[1]->items.size());
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const Value* dim = state->items[1]->items[i];
      if (dim->kind != Kind::kInt || dim->integer < 0) fail("a numpy array with a dimension that is not an int >= 0");
      shape[i] = py::int_(dim->integer);
    }
    py::object data = numpy_.attr("frombuffer")(py::bytes(state->items[4]->text), numpy_descr(*state->items[2]));
    return data.attr("reshape")(shape, py::arg("order") = state->items[3]->boolean ? "F" : "C");
  }

  // numpy.core.multiarray.scalar(dtype, bytes).
  py::object scalar(const Value& value) {
    const Value* args = value.items.empty() ? nullptr : value.items[0];
    if (args == nullptr || args->kind != Kind::kTuple || args->items.size() != 2 || args->items[1]->kind != Kind::kBytes) {
      fail("a numpy scalar that is not scalar(dtype, bytes)");
    }
    py::object values = numpy_.attr("frombuffer")(py::bytes(args->items[1]->text), numpy_descr(*args->items[0]));
    if (py::len(values) != 1) fail("a numpy scalar whose bytes are not one value of its dtype");
    return values[py::int_(0)];
  }

  std::string file_;
  std::unordered_map<const Value*, std::string> tensor_names_;
  std::function<py::object(const std::string&)> array_;
  py::object stub_;
  py::object global_;
  py::object numpy_;
  py::object ordered_dict_;
  std::unordered_map<const Value*, py::object> built_;
};

class Reader {
 public:
  Reader(const std::filesystem::path& path, const std::optional<std::string>& format,
         std::vector<std::string> allowed_globals, bool stub_unknown, const std::optional<std::string>& dtype,
         std::vector<std::string> include, std::vector<std::string> exclude, const std::vector<std::string>& rename)
      : policy_(pickle_policy(std::move(allowed_globals), stub_unknown)) {
    ckpt::OpenOptions options;
    options.format = format;
    options.pickle_policy = policy_;
    auto file = unwrap(ckpt::open_checkpoint(path, options));
    file_reader_ = file.get();
    reader_ = with_views(std::move(file), dtype, std::move(include), std::move(exclude), rename);
  }

  std::string format() const { return std::string(reader().format_name()); }
  std::string layout() const { return std::string(reader().layout()); }
  std::string path() const { return reader().path().string(); }
  // safetensors' __metadata__; empty for other formats.
  ckpt::TextMetadata metadata() const { return reader().metadata(); }

  std::vector<TensorDescription> tensors() const {
    std::vector<TensorDescription> out;
    for (const auto& tensor : reader().tensors()) {
      out.push_back({tensor.name, std::string(ckpt::dtype_name(tensor.meta.dtype())), tensor.meta.shape(),
                     tensor.meta.byte_size()});
    }
    return out;
  }

  // Mapped where the file holds the tensor's bytes as they are, at an offset
  // aligned for its dtype (numpy and torch want aligned arrays), else copied.
  Bytes load(const std::string& name) const { return load_from(reader(), name); }

  // The object of a pickle format as Python values (ObjectBuilder), None
  // for the flat formats. It is the file's, whatever the views: its tensors
  // are the file's, by their names in the file, uncast, each made by
  // `make_array(bytes, dtype, shape)`.
  py::object object(const py::function& make_array, const py::object& stub, const py::object& global) {
    const ckpt::CheckpointReader& file = file_reader();
    const ckpt::pickle::Value* root = file.object();
    if (file.format_name() == "torch" && file.layout() == "torchscript") {
      // The reader converts a TorchScript archive as a flat state_dict and
      // so gives no object; the archive's own tree, read again, is it.
      if (!torchscript_) torchscript_.emplace(unwrap(ckpt::TorchFile::open(file.path(), policy_)));
      root = &torchscript_->data();
    }
    if (root == nullptr) return py::none();
    std::unordered_map<const ckpt::pickle::Value*, std::string> names;
    for (auto& tensor : unwrap(ckpt::pickle::named_tensors(*root, file.path().string()))) {
      names.emplace(tensor.node, std::move(tensor.name));
    }
    auto array = [&](const std::string& name) -> py::object {
      const ckpt::TensorInfo* info = file.find(name);
      if (info == nullptr) {
        raise_error(ckpt::Error(ckpt::ErrorCode::kUnknownVariable, "the object names a tensor the checkpoint does not list")
                        .in_file(file.path().string())
                        .in_variable(name));
      }
      return make_array(load_from(file, name), std::string(ckpt::dtype_name(info->meta.dtype())), info->meta.shape());
    };
    return ObjectBuilder(file.path().string(), std::move(names), array, stub, global).build(*root);
  }

  // safetensors' and npz's members of types ckpt cannot represent: (name, descr, reason).
  std::vector<std::tuple<std::string, std::string, std::string>> unsupported() const {
    std::vector<std::tuple<std::string, std::string, std::string>> out;
    for (const auto& tensor : reader().unsupported()) out.emplace_back(tensor.name, tensor.descr, tensor.reason);
    return out;
  }

 private:
  Bytes load_from(const ckpt::CheckpointReader& from, const std::string& name) const {
    auto source = unwrap(from.open(name));
    const ckpt::TensorInfo* tensor = from.find(name);
    const std::uint64_t alignment = tensor != nullptr ? ckpt::dtype_size(tensor->meta.dtype()) : 1;
    Bytes bytes;
    bytes.size = source->size();
    if (source->size() > 0 && source->file_descriptor() >= 0 && source->file_offset() % alignment == 0) {
      bytes.mapping = unwrap(file_mapping(*source));
      if (source->file_offset() > bytes.mapping->length() ||
          source->size() > bytes.mapping->length() - source->file_offset()) {
        raise_error(ckpt::Error(ckpt::ErrorCode::kDataSizeMismatch, "the file is shorter than the tensor's bytes")
                        .in_file(source->name())
                        .in_variable(name));
      }
      bytes.data = bytes.mapping->base() + source->file_offset();
    } else {
      bytes.copy.resize(static_cast<std::size_t>(source->size()));
      check(source->read_at(0, bytes.copy));
      bytes.data = bytes.copy.data();
    }
    return bytes;
  }

 public:
  // [offset, offset + size) of the tensor's bytes, copied.
  py::bytes read_range(const std::string& name, std::uint64_t offset, std::uint64_t size) const {
    auto source = unwrap(reader().open(name));
    std::string buffer(static_cast<std::size_t>(size), '\0');
    check(source->read_at(offset, std::as_writable_bytes(std::span(buffer))));
    return py::bytes(buffer);
  }

  void close() {
    reader_.reset();
    file_reader_ = nullptr;
    torchscript_.reset();
    last_mapping_.reset();
  }
  bool closed() const { return reader_ == nullptr; }

 private:
  const ckpt::CheckpointReader& reader() const {
    if (reader_ == nullptr) raise_error(ckpt::Error(ckpt::ErrorCode::kInvalidArgument, "the checkpoint is closed"));
    return *reader_;
  }
  // The reader under the views, which reader_ owns.
  const ckpt::CheckpointReader& file_reader() const {
    reader();  // raises when closed
    return *file_reader_;
  }
  // The file behind `source` mapped whole, reusing a mapping still alive.
  // Keyed by device and inode: descriptors are reused after a close.
  ckpt::Result<std::shared_ptr<const FileMapping>> file_mapping(const ckpt::ByteSource& source) const {
    struct stat status {};
    if (::fstat(source.file_descriptor(), &status) != 0) {
      return ckpt::Error(ckpt::ErrorCode::kIo, fmt::format("fstat failed: {}", std::strerror(errno))).in_file(source.name());
    }
    auto key = std::make_pair(status.st_dev, status.st_ino);
    if (auto alive = mappings_[key].lock(); alive != nullptr && alive->length() == static_cast<std::size_t>(status.st_size)) {
      last_mapping_ = alive;
      return alive;
    }
    auto length = static_cast<std::size_t>(status.st_size);
    void* base = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, source.file_descriptor(), 0);
    if (base == MAP_FAILED) {
      return ckpt::Error(ckpt::ErrorCode::kIo, fmt::format("mmap failed: {}", std::strerror(errno))).in_file(source.name());
    }
    auto mapping = std::make_shared<const FileMapping>(base, length);
    mappings_[key] = mapping;
    last_mapping_ = mapping;
    return mapping;
  }

  ckpt::pickle::PicklePolicy policy_;
  std::unique_ptr<ckpt::CheckpointReader> reader_;
  const ckpt::CheckpointReader* file_reader_ = nullptr;
  std::optional<ckpt::TorchFile> torchscript_;  // a TorchScript archive's tree, read by object()
  mutable std::map<std::pair<dev_t, ino_t>, std::weak_ptr<const FileMapping>> mappings_;
  // The mapping used last, kept while the reader is open: a loop that takes
  // one array of a single-file checkpoint at a time and drops it would
  // otherwise map and unmap the whole file for every tensor. (One, not all:
  // a directory of 100,000 files would exceed the process's mapping count.)
  mutable std::shared_ptr<const FileMapping> last_mapping_;
};

class Writer {
 public:
  Writer(const std::filesystem::path& path, const std::string& format, bool overwrite) {
    ckpt::WriteOptions options;
    options.overwrite = overwrite;
    writer_ = unwrap(ckpt::create_checkpoint(path, format, options));
  }

  void add(const std::string& name, const std::string& dtype, const std::vector<std::int64_t>& shape,
           const py::buffer& data) {
    auto meta = unwrap(ckpt::VariableMeta::make(dtype_named(dtype), shape));
    py::buffer_info info = data.request();
    std::uint64_t size = static_cast<std::uint64_t>(info.size) * static_cast<std::uint64_t>(info.itemsize);
    ckpt::MemorySource source({static_cast<const std::byte*>(info.ptr), static_cast<std::size_t>(size)}, name);
    check(writer_->add(name, meta, source));
  }

  void set_metadata(const ckpt::TextMetadata& entries) { check(writer_->set_metadata(entries)); }
  void commit() { check(writer_->commit()); }

 private:
  std::unique_ptr<ckpt::CheckpointWriter> writer_;
};

// {"variables", "bytes", "skipped", "dropped"} (ConvertSummary).
py::dict convert(const std::filesystem::path& source, const std::filesystem::path& destination,
                 const std::optional<std::string>& to, const std::optional<std::string>& dtype,
                 std::vector<std::string> include, std::vector<std::string> exclude,
                 const std::vector<std::string>& rename, std::vector<std::string> allowed_globals, bool stub_unknown,
                 bool skip_unsupported, bool strict, bool overwrite) {
  ckpt::OpenOptions open_options;
  open_options.pickle_policy = pickle_policy(std::move(allowed_globals), stub_unknown);
  auto reader = with_views(unwrap(ckpt::open_checkpoint(source, open_options)), dtype, std::move(include),
                           std::move(exclude), rename);
  ckpt::WriteOptions options;
  options.overwrite = overwrite;
  options.sources = {source};
  auto writer = unwrap(ckpt::create_checkpoint(destination, unwrap(ckpt::format_for_destination(destination, to)), options));
  ckpt::convert::ConvertOptions convert_options;
  convert_options.skip_unsupported = skip_unsupported;
  convert_options.strict = strict;
  auto summary = unwrap(ckpt::convert::convert(*reader, *writer, convert_options));
  py::dict out;
  out["variables"] = summary.variables;
  out["bytes"] = summary.bytes;
  out["skipped"] = summary.skipped;
  out["dropped"] = summary.dropped;
  return out;
}

// What ckpt-validate --json reports: the format found (None when nothing
// was recognised), the variables described and every issue.
py::dict validate(const std::filesystem::path& path, const std::optional<std::string>& requested,
               std::vector<std::string> allowed_globals, bool stub_unknown) {
  ckpt::OpenOptions options;
  options.pickle_policy = pickle_policy(std::move(allowed_globals), stub_unknown);
  auto detected = requested ? ckpt::Result<std::string>(*requested) : ckpt::detect_format(path);
  // Nothing recognised: OneFlow's rules say what is missing or wrong.
  const std::string format = detected.ok() ? *detected : "oneflow";
  auto report = ckpt::validate_checkpoint(path, format, options);
  py::object found = detected.ok() || !report.layout.empty() ? py::object(py::str(format)) : py::none();
  py::list variables;
  for (const auto& variable : report.variables) {
    py::dict entry;
    entry["name"] = variable.name;
    entry["bytes"] = variable.byte_size;
    entry["dtype"] = variable.meta ? py::object(py::str(std::string(ckpt::dtype_name(variable.meta->dtype())))) : py::none();
    entry["shape"] = variable.meta ? py::object(py::cast(variable.meta->shape())) : py::none();
    variables.append(entry);
  }
  py::list issues;
  for (const auto& issue : report.issues) {
    py::dict entry;
    entry["code"] = ckpt::code_id(issue.code);
    entry["name"] = std::string(ckpt::code_name(issue.code));
    entry["severity"] = issue.severity == ckpt::Severity::kError ? "error" : "warning";
    entry["variable"] = issue.variable.empty() ? py::object(py::none()) : py::str(issue.variable);
    entry["message"] = issue.message;
    issues.append(entry);
  }
  py::dict out;
  out["path"] = path.string();
  out["format"] = found;
  out["layout"] = report.layout.empty() ? py::object(py::none()) : py::object(py::str(report.layout));
  out["valid"] = report.valid();
  out["tensors"] = variables;
  out["issues"] = issues;
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ckptio's bindings over the ckpt C++ library; use the ckptio package.";
  g_error_type = PyErr_NewExceptionWithDoc(
      "ckptio.CkptError",
      "A checkpoint could not be read, written or converted. Attributes: code (int, e.g. 401), "
      "name ('data_size_mismatch'), file and variable (str or None).",
      PyExc_Exception, nullptr);
  if (g_error_type == nullptr) throw py::error_already_set();
  m.attr("CkptError") = py::handle(g_error_type);

  py::class_<Bytes>(m, "Bytes", py::buffer_protocol())
      .def_property_readonly("mapped", [](const Bytes& b) { return b.mapping != nullptr; })
      .def_buffer([](Bytes& b) {
        return py::buffer_info(const_cast<std::byte*>(b.data), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(b.size)}, {1}, /*readonly=*/true);
      });

  py::class_<TensorDescription>(m, "TensorDescription")
      .def_readonly("name", &TensorDescription::name)
      .def_readonly("dtype", &TensorDescription::dtype)
      .def_readonly("shape", &TensorDescription::shape)
      .def_readonly("nbytes", &TensorDescription::nbytes);

  py::class_<Reader>(m, "Reader")
      .def(py::init<const std::filesystem::path&, const std::optional<std::string>&, std::vector<std::string>, bool,
                    const std::optional<std::string>&, std::vector<std::string>, std::vector<std::string>,
                    const std::vector<std::string>&>(),
           py::arg("path"), py::arg("format"), py::arg("allowed_globals"), py::arg("stub_unknown"), py::arg("dtype"),
           py::arg("include"), py::arg("exclude"), py::arg("rename"))
      .def_property_readonly("format", &Reader::format)
      .def_property_readonly("layout", &Reader::layout)
      .def_property_readonly("path", &Reader::path)
      .def_property_readonly("metadata", &Reader::metadata)
      .def_property_readonly("closed", &Reader::closed)
      .def("tensors", &Reader::tensors)
      .def("unsupported", &Reader::unsupported)
      .def("load", &Reader::load, py::arg("name"))
      .def("object", &Reader::object, py::arg("make_array"), py::arg("stub"), py::arg("global_"))
      .def("read_range", &Reader::read_range, py::arg("name"), py::arg("offset"), py::arg("size"))
      .def("close", &Reader::close);

  py::class_<Writer>(m, "Writer")
      .def(py::init<const std::filesystem::path&, const std::string&, bool>(), py::arg("path"), py::arg("format"),
           py::arg("overwrite"))
      .def("add", &Writer::add, py::arg("name"), py::arg("dtype"), py::arg("shape"), py::arg("data"))
      .def("set_metadata", &Writer::set_metadata, py::arg("entries"))
      .def("commit", &Writer::commit);

  m.def("convert", &convert, py::arg("source"), py::arg("destination"), py::arg("to"), py::arg("dtype"),
        py::arg("include"), py::arg("exclude"), py::arg("rename"), py::arg("allowed_globals"), py::arg("stub_unknown"),
        py::arg("skip_unsupported"), py::arg("strict"), py::arg("overwrite"));
  m.def("validate", &validate, py::arg("path"), py::arg("format"), py::arg("allowed_globals"),
        py::arg("stub_unknown"));
  m.def(
      "destination_format",
      [](const std::filesystem::path& path, const std::optional<std::string>& requested) {
        return unwrap(ckpt::format_for_destination(path, requested));
      },
      py::arg("path"), py::arg("requested"));
  m.def("formats", [] {
    std::vector<std::string> names;
    for (auto name : ckpt::checkpoint_formats()) names.emplace_back(name);
    return names;
  });
}
