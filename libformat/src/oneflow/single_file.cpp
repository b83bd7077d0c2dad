// OneFlow 1.0's single file (S1), registered as "oneflow-single-file":
// flow.save(obj, path) writes one pickle
//
//   {"protocol_version": 1, "__oneflow__": None, "data": obj}
//
// in which a tensor is cls() + BUILD {"data": ndarray, "dtype": flow dtype,
// "device": "cpu"}; the ndarray is numpy's own pickle (_reconstruct, then
// BUILD (1, shape, dtype, fortran, raw bytes)) and the flow dtype a pybind11
// object whose state is its DataType number (spec/layouts.md, S1).
// The writer shares nodes where CPython shares objects (interned strings,
// numpy's dtype singletons, one flow dtype per type), so its output is
// byte-identical to what OneFlow writes for a state_dict.
#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/pickle.hpp"
#include "pickle/pickle_checkpoint.hpp"
#include "registry/formats.hpp"

namespace ckpt::detail {
namespace {

namespace fs = std::filesystem;
using pickle::Kind;
using pickle::Value;

constexpr std::string_view kMagicKey = "__oneflow__";
constexpr std::size_t kReadPiece = std::size_t{4} << 20;  // a tensor's bytes are read in pieces of this size

Error structure(std::string message, std::string_view file, std::string_view variable) {
  return std::move(Error(ErrorCode::kPickleStructure, std::move(message)).in_file(file).in_variable(variable));
}

struct SingleFileTensor {
  VariableMeta meta;
  const Value* bytes = nullptr;  // kBytes: the array's raw C-order data
};

// {"data": ndarray, "dtype": flow dtype, "device": str}: the ndarray's dtype,
// shape and bytes must agree with each other and with the flow dtype.
Result<SingleFileTensor> decode_tensor(const Value& tensor, std::string_view file, std::string_view name) {
  const Value* state = tensor.state;
  const Value* array = state != nullptr ? state->find("data") : nullptr;
  if (array == nullptr || array->kind != Kind::kNumpyArray || array->state == nullptr) {
    return structure("a tensor whose state has no \"data\" numpy array (a OneFlow 1.0 single file tensor has one)", file,
                     name);
  }
  CKPT_ASSIGN_OR_RETURN(pickle::NumpyArrayData data, pickle::numpy_array_data(*array, file, name));
  if (data.fortran_order) {
    return structure("a Fortran-order array; OneFlow writes tensor.numpy(), which is C order", file, name);
  }
  const DType dtype = data.meta.dtype();
  VariableMeta meta = std::move(data.meta);
  const Value* flow_dtype = state->find("dtype");
  const auto flow = flow_dtype != nullptr && flow_dtype->kind == Kind::kOneflowDtype && flow_dtype->state != nullptr
                        ? dtype_from_number(flow_dtype->state->integer)
                        : std::nullopt;
  // numpy has one int8 ('|i1') for OneFlow's two (kChar, kInt8): the flow dtype says which.
  const bool both_int8 = dtype == DType::kInt8 && flow == DType::kChar;
  if (!flow || (*flow != dtype && !both_int8)) {
    return structure(fmt::format("the tensor's \"dtype\" is not the OneFlow dtype of its {} array", dtype_name(dtype)),
                     file, name);
  }
  if (both_int8) {
    CKPT_ASSIGN_OR_RETURN(meta, VariableMeta::make(DType::kChar, meta.shape()));
  }
  return SingleFileTensor{std::move(meta), data.bytes};
}

// The bytes of one tensor, keeping the document that owns them alive.
class DocumentBytes final : public ByteSource {
 public:
  DocumentBytes(std::shared_ptr<const pickle::Document> document, const Value* bytes, std::string name)
      : document_(std::move(document)), bytes_(std::as_bytes(std::span(bytes->text))), name_(std::move(name)) {}
  std::uint64_t size() const override { return bytes_.size(); }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    return MemorySource(bytes_, name_).read_at(offset, out);
  }
  const std::string& name() const override { return name_; }

 private:
  std::shared_ptr<const pickle::Document> document_;
  std::span<const std::byte> bytes_;
  std::string name_;
};

class SingleFileReader final : public CheckpointReader {
 public:
  static Result<std::unique_ptr<CheckpointReader>> open(const fs::path& path, const pickle::PicklePolicy& policy) {
    std::string file = path.string();
    CKPT_ASSIGN_OR_RETURN(FileSource source, FileSource::open(path));
    CKPT_ASSIGN_OR_RETURN(pickle::Document document,
                          pickle::read(source, {.flavor = pickle::Flavor::kOneflow, .policy = policy}));
    auto reader = std::unique_ptr<SingleFileReader>(new SingleFileReader(path));
    reader->document_ = std::make_shared<const pickle::Document>(std::move(document));
    const Value* top = reader->document_->root();
    const Value* version = top->kind == Kind::kDict ? top->find("protocol_version") : nullptr;
    if (version == nullptr || version->kind != Kind::kInt || version->integer != 1 || top->find(kMagicKey) == nullptr) {
      return Error(ErrorCode::kNotACheckpoint,
                   "not a OneFlow single file: expected a dict with \"protocol_version\": 1 and \"__oneflow__\"")
          .in_file(file);
    }
    reader->data_ = top->find("data");
    if (reader->data_ == nullptr) return structure("no \"data\" entry at the top level", file, {});
    CKPT_ASSIGN_OR_RETURN(auto named, pickle::named_tensors(*reader->data_, file));
    for (const auto& [name, node] : named) {
      if (node->kind != Kind::kOneflowTensor) return structure("a torch tensor in a OneFlow file", file, name);
      CKPT_ASSIGN_OR_RETURN(SingleFileTensor tensor, decode_tensor(*node, file, name));
      reader->tensors_.push_back({name, tensor.meta});
      reader->bytes_.emplace(name, tensor.bytes);
    }
    return std::unique_ptr<CheckpointReader>(std::move(reader));
  }

  std::string_view format_name() const override { return "oneflow-single-file"; }
  const fs::path& path() const override { return path_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const Value* object() const override { return data_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    auto it = bytes_.find(name);
    if (it == bytes_.end()) {
      return Error(ErrorCode::kUnknownVariable, "the checkpoint has no such variable").in_variable(name).in_file(path_.string());
    }
    return std::unique_ptr<ByteSource>(std::make_unique<DocumentBytes>(document_, it->second, path_.string()));
  }

 private:
  explicit SingleFileReader(fs::path path) : path_(std::move(path)) {}

  fs::path path_;
  std::shared_ptr<const pickle::Document> document_;
  const Value* data_ = nullptr;
  std::vector<TensorInfo> tensors_;  // sorted by name, as named_tensors gives them
  std::map<std::string, const Value*, std::less<>> bytes_;
};

// Builds the object and writes it in one file at commit, crash-safely.
class SingleFileWriter {
 public:
  static Result<SingleFileWriter> create(const fs::path& destination, WriteOptions options) {
    CKPT_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(destination, std::move(options)));
    return SingleFileWriter(std::move(file));
  }

  pickle::Document& document() { return document_; }

  Result<const Value*> add_tensor(const VariableMeta& meta, const ByteSource& data) {
    std::string_view descr = dtype_info(meta.dtype()).numpy_descr;
    if (descr.size() < 2 || descr[1] == 'V') {
      return Error(ErrorCode::kInvalidArgument,
                   fmt::format("a OneFlow single file holds numpy arrays, and numpy has no {}", dtype_name(meta.dtype())));
    }
    if (data.size() != meta.byte_size()) {
      return Error(ErrorCode::kBufferSizeMismatch,
                   fmt::format("{} bytes given, {} {} has {}", data.size(), dtype_name(meta.dtype()),
                               shape_to_string(meta.shape()), meta.byte_size()));
    }
    std::string raw(static_cast<std::size_t>(data.size()), '\0');
    auto into = std::as_writable_bytes(std::span(raw));
    for (std::size_t offset = 0; offset < into.size(); offset += kReadPiece) {
      CKPT_TRY(data.read_at(offset, into.subspan(offset, std::min(kReadPiece, into.size() - offset))));
    }
    std::vector<const Value*> dims;
    for (std::int64_t dim : meta.shape()) dims.push_back(document_.integer(dim));

    Value* array = document_.make(Kind::kNumpyArray);
    array->cls = reconstruct_;
    array->items = {document_.tuple({ndarray_, document_.tuple({document_.integer(0)}), byte_b_})};
    array->state = document_.tuple({document_.integer(1), document_.tuple(std::move(dims)), numpy_dtype_of(meta.dtype()),
                                    document_.boolean(false), document_.bytes(std::move(raw))});
    Value* state = document_.dict();
    state->entries = {{data_key_, array}, {dtype_key_, oneflow_dtype_of(meta.dtype())}, {device_key_, cpu_}};
    Value* tensor = document_.make(Kind::kOneflowTensor);
    tensor->cls = parameter_;
    tensor->state = state;
    return tensor;
  }

  // An OrderedDict with an empty `_metadata`, as Module.state_dict() returns.
  Value* state_dict() {
    Value* dict = document_.dict(true);
    dict->metadata = document_.dict(true);
    return dict;
  }

  Status commit(const Value& data) {
    Value* top = document_.dict();
    top->entries = {{document_.string("protocol_version"), document_.integer(1)},
                    {document_.string(std::string(kMagicKey)), document_.none()},
                    {data_key_, &data}};
    CKPT_ASSIGN_OR_RETURN(auto bytes, pickle::write(*top, 4));
    CKPT_TRY(file_.write(bytes));
    return file_.commit();
  }

 private:
  explicit SingleFileWriter(AtomicFile file) : file_(std::move(file)) {
    const Value* numpy = document_.string("numpy");
    reconstruct_ = global("numpy.core.multiarray", document_.string("_reconstruct"));
    ndarray_ = global(numpy, document_.string("ndarray"));
    numpy_dtype_class_ = global(numpy, dtype_key_);
    oneflow_dtype_class_ = global("oneflow._oneflow_internal", dtype_key_);
  }

  // A global whose module and name are str nodes, shared as CPython shares interned strings.
  const Value* global(const Value* module, const Value* name) {
    Value* node = document_.make(Kind::kGlobal);
    node->text = module->text;
    node->name = name->text;
    node->items = {module, name};
    return node;
  }
  const Value* global(std::string module, const Value* name) { return global(document_.string(std::move(module)), name); }

  // numpy.dtype("f4", False, True) + BUILD (3, "<", None, None, None, -1, -1, 0): one per type, as numpy's are singletons.
  const Value* numpy_dtype_of(DType dtype) {
    auto [it, fresh] = numpy_dtypes_.try_emplace(dtype, nullptr);
    if (!fresh) return it->second;
    std::string_view descr = dtype_info(dtype).numpy_descr;
    Value* node = document_.make(Kind::kNumpyDtype);
    node->cls = numpy_dtype_class_;
    node->items = {document_.tuple({document_.string(std::string(descr.substr(1))), document_.boolean(false),
                                    document_.boolean(true)})};
    node->state = document_.tuple({document_.integer(3), document_.string(std::string(descr.substr(0, 1))),
                                   document_.none(), document_.none(), document_.none(), document_.integer(-1),
                                   document_.integer(-1), document_.integer(0)});
    return it->second = node;
  }

  // oneflow._oneflow_internal.dtype() + BUILD DataType: one per type, as flow.float32 is one object.
  const Value* oneflow_dtype_of(DType dtype) {
    auto [it, fresh] = oneflow_dtypes_.try_emplace(dtype, nullptr);
    if (!fresh) return it->second;
    Value* node = document_.make(Kind::kOneflowDtype);
    node->cls = oneflow_dtype_class_;
    node->state = document_.integer(static_cast<std::int64_t>(dtype));
    return it->second = node;
  }

  AtomicFile file_;
  pickle::Document document_;
  const Value* data_key_ = document_.string("data");  // the top-level key and each tensor's
  const Value* dtype_key_ = document_.string("dtype");  // a key and numpy's and OneFlow's class name
  const Value* device_key_ = document_.string("device");
  const Value* cpu_ = document_.string("cpu");
  const Value* byte_b_ = document_.bytes("b");  // CPython caches one-byte bytes objects
  const Value* parameter_ = document_.global("oneflow.nn", "Parameter");
  const Value* reconstruct_ = nullptr;
  const Value* ndarray_ = nullptr;
  const Value* numpy_dtype_class_ = nullptr;
  const Value* oneflow_dtype_class_ = nullptr;
  std::map<DType, const Value*> numpy_dtypes_;
  std::map<DType, const Value*> oneflow_dtypes_;
};

// A pickle (PROTO) whose first bytes hold OneFlow's magic key.
bool looks_like_single_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto source = FileSource::open(path);
  if (!source.ok() || source->size() < 2) return false;
  std::array<std::byte, 64> head{};
  std::span<std::byte> window(head.data(), static_cast<std::size_t>(std::min<std::uint64_t>(head.size(), source->size())));
  if (!source->read_at(0, window).ok() || window[0] != std::byte{0x80}) return false;
  std::string_view text(reinterpret_cast<const char*>(window.data()), window.size());
  return text.find(kMagicKey) != std::string_view::npos;
}

Result<std::unique_ptr<CheckpointReader>> open_single_file(const fs::path& path, const OpenOptions& options) {
  return SingleFileReader::open(path, options.pickle_policy);
}

Result<std::unique_ptr<CheckpointWriter>> create_single_file(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(SingleFileWriter writer, SingleFileWriter::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(
      std::make_unique<PickleCheckpointWriter<SingleFileWriter>>(std::move(writer), path.string()));
}

// The reader checks every tensor's record while opening (dtype, byte order,
// layout, size): its first problem, or the tensors it lists.
ValidationReport validate_single_file(const fs::path& path, const OpenOptions& options) {
  auto reader = open_single_file(path, options);
  if (!reader.ok()) return unreadable_report(path, reader.error());
  ValidationReport report;
  report.path = path;
  for (const TensorInfo& tensor : (*reader)->tensors()) {
    report.variables.push_back(VariableInfo{tensor.name, tensor.meta, tensor.meta.byte_size()});
  }
  return report;
}

}  // namespace

const FormatHandler& oneflow_single_file_format() {
  static const FormatHandler handler{.name = "oneflow-single-file",
                                     .summary = "a OneFlow 1.0 single-file flow.save (one pickle, tensors as numpy arrays)",
                                     .extensions = {},
                                     .kind = FormatKind::kFile,
                                     .detect = looks_like_single_file,
                                     .open = open_single_file,
                                     .create = create_single_file,
                                     .validate = validate_single_file};
  return handler;
}

}  // namespace ckpt::detail
