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
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/convert/convert.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/registry.hpp"
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

class Reader {
 public:
  Reader(const std::filesystem::path& path, const std::optional<std::string>& format,
         const std::optional<std::string>& dtype, std::vector<std::string> include, std::vector<std::string> exclude,
         const std::vector<std::string>& rename) {
    ckpt::OpenOptions options;
    options.format = format;
    reader_ = with_views(unwrap(ckpt::open_checkpoint(path, options)), dtype, std::move(include),
                         std::move(exclude), rename);
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
  Bytes load(const std::string& name) const {
    auto source = unwrap(reader().open(name));
    const ckpt::TensorInfo* tensor = reader().find(name);
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

  // [offset, offset + size) of the tensor's bytes, copied.
  py::bytes read_range(const std::string& name, std::uint64_t offset, std::uint64_t size) const {
    auto source = unwrap(reader().open(name));
    std::string buffer(static_cast<std::size_t>(size), '\0');
    check(source->read_at(offset, std::as_writable_bytes(std::span(buffer))));
    return py::bytes(buffer);
  }

  void close() {
    reader_.reset();
    last_mapping_.reset();
  }
  bool closed() const { return reader_ == nullptr; }

 private:
  const ckpt::CheckpointReader& reader() const {
    if (reader_ == nullptr) raise_error(ckpt::Error(ckpt::ErrorCode::kInvalidArgument, "the checkpoint is closed"));
    return *reader_;
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

  std::unique_ptr<ckpt::CheckpointReader> reader_;
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

std::pair<std::size_t, std::uint64_t> convert(const std::filesystem::path& source, const std::filesystem::path& destination,
                                              const std::optional<std::string>& to, const std::optional<std::string>& dtype,
                                              std::vector<std::string> include, std::vector<std::string> exclude,
                                              const std::vector<std::string>& rename, bool overwrite) {
  auto reader = with_views(unwrap(ckpt::open_checkpoint(source)), dtype, std::move(include), std::move(exclude), rename);
  ckpt::WriteOptions options;
  options.overwrite = overwrite;
  options.sources = {source};
  auto writer = unwrap(ckpt::create_checkpoint(destination, unwrap(ckpt::format_for_destination(destination, to)), options));
  auto summary = unwrap(ckpt::convert::convert(*reader, *writer));
  return {summary.variables, summary.bytes};
}

// What ckpt-validate --json reports: the format found (None when nothing
// was recognised), the variables described and every issue.
py::dict validate(const std::filesystem::path& path) {
  auto detected = ckpt::detect_format(path);
  // Nothing recognised: OneFlow's rules say what is missing or wrong.
  const std::string format = detected.ok() ? *detected : "oneflow";
  auto report = ckpt::validate_checkpoint(path, format);
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
      .def(py::init<const std::filesystem::path&, const std::optional<std::string>&, const std::optional<std::string>&,
                    std::vector<std::string>, std::vector<std::string>, const std::vector<std::string>&>(),
           py::arg("path"), py::arg("format"), py::arg("dtype"), py::arg("include"), py::arg("exclude"),
           py::arg("rename"))
      .def_property_readonly("format", &Reader::format)
      .def_property_readonly("layout", &Reader::layout)
      .def_property_readonly("path", &Reader::path)
      .def_property_readonly("metadata", &Reader::metadata)
      .def_property_readonly("closed", &Reader::closed)
      .def("tensors", &Reader::tensors)
      .def("load", &Reader::load, py::arg("name"))
      .def("read_range", &Reader::read_range, py::arg("name"), py::arg("offset"), py::arg("size"))
      .def("close", &Reader::close);

  py::class_<Writer>(m, "Writer")
      .def(py::init<const std::filesystem::path&, const std::string&, bool>(), py::arg("path"), py::arg("format"),
           py::arg("overwrite"))
      .def("add", &Writer::add, py::arg("name"), py::arg("dtype"), py::arg("shape"), py::arg("data"))
      .def("set_metadata", &Writer::set_metadata, py::arg("entries"))
      .def("commit", &Writer::commit);

  m.def("convert", &convert, py::arg("source"), py::arg("destination"), py::arg("to"), py::arg("dtype"),
        py::arg("include"), py::arg("exclude"), py::arg("rename"), py::arg("overwrite"));
  m.def("validate", &validate, py::arg("path"));
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
