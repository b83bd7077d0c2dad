// The C boundary of libckpt-collective (ckpt_mpi.h).
#include "ckpt_mpi.h"

#include <new>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/collective.hpp"

struct ckpt_mpi_writer {
  std::optional<ckpt::CollectiveWriter> writer;
  std::string last_error;
};

struct ckpt_mpi_reader {
  std::optional<ckpt::CollectiveReader> reader;
  std::string last_error;
};

namespace {

thread_local std::string t_last_error;

// Runs `body`; a failure's message goes to `handle_error` (or the thread's).
template <class Body>
ckpt_status guarded(std::string& handle_error, Body&& body) noexcept {
  ckpt_status code = CKPT_OK;
  try {
    ckpt::Status status = body();
    if (status.ok()) return CKPT_OK;
    code = static_cast<ckpt_status>(status.error().code());
    handle_error = status.error().describe();
  } catch (const std::bad_alloc&) {
    code = CKPT_ERR_NO_MEMORY;
    handle_error.clear();
  } catch (...) {
    code = CKPT_ERR_INTERNAL;
    handle_error.clear();
  }
  return code;
}

ckpt::Status require(const void* pointer, const char* what) {
  if (pointer != nullptr) return {};
  return ckpt::Error(ckpt::ErrorCode::kInvalidArgument, fmt::format("{} must not be NULL", what));
}

ckpt::Result<ckpt::DType> known_dtype(int32_t dtype) {
  auto known = ckpt::dtype_from_number(dtype);
  if (!known) return ckpt::Error(ckpt::ErrorCode::kInvalidArgument, fmt::format("unknown dtype number {}", dtype));
  return *known;
}

ckpt::Shape dims(const int64_t* values, size_t ndim) { return ckpt::Shape(values, values + ndim); }

}  // namespace

extern "C" {

const char* ckpt_mpi_last_error(void) { return t_last_error.c_str(); }

ckpt_status ckpt_mpi_create(const char* path, MPI_Comm comm, unsigned flags, ckpt_mpi_writer** writer) {
  return guarded(t_last_error, [&]() -> ckpt::Status {
    CKPT_TRY(require(writer, "writer"));
    *writer = nullptr;
    CKPT_TRY(require(path, "path"));
    ckpt::WriteOptions options;
    options.overwrite = (flags & CKPT_OVERWRITE) != 0;
    CKPT_ASSIGN_OR_RETURN(auto created, ckpt::CollectiveWriter::create(path, comm, std::move(options)));
    *writer = new ckpt_mpi_writer{std::move(created), {}};
    return {};
  });
}

ckpt_status ckpt_mpi_writer_add(ckpt_mpi_writer* writer, const char* name, int32_t dtype, size_t ndim,
                                const int64_t* shape, const int64_t* piece_offset, const int64_t* piece_shape,
                                const void* data, uint64_t size) {
  if (writer == nullptr) return static_cast<ckpt_status>(ckpt::ErrorCode::kInvalidArgument);
  return guarded(writer->last_error, [&]() -> ckpt::Status {
    CKPT_TRY(require(name, "name"));
    if (ndim > 0) {
      CKPT_TRY(require(shape, "shape"));
      CKPT_TRY(require(piece_offset, "piece_offset"));
      CKPT_TRY(require(piece_shape, "piece_shape"));
    }
    if (size > 0) CKPT_TRY(require(data, "data"));
    CKPT_ASSIGN_OR_RETURN(ckpt::DType type, known_dtype(dtype));
    return writer->writer->add(name, type, dims(shape, ndim), {dims(piece_offset, ndim), dims(piece_shape, ndim)},
                               std::span(static_cast<const std::byte*>(data), size));
  });
}

ckpt_status ckpt_mpi_writer_commit(ckpt_mpi_writer* writer) {
  if (writer == nullptr) return static_cast<ckpt_status>(ckpt::ErrorCode::kInvalidArgument);
  return guarded(writer->last_error, [&] { return writer->writer->commit(); });
}

const char* ckpt_mpi_writer_error(const ckpt_mpi_writer* writer) {
  return writer != nullptr ? writer->last_error.c_str() : "";
}

void ckpt_mpi_writer_free(ckpt_mpi_writer* writer) { delete writer; }

ckpt_status ckpt_mpi_open(const char* path, MPI_Comm comm, ckpt_mpi_reader** reader) {
  return guarded(t_last_error, [&]() -> ckpt::Status {
    CKPT_TRY(require(reader, "reader"));
    *reader = nullptr;
    CKPT_TRY(require(path, "path"));
    CKPT_ASSIGN_OR_RETURN(auto opened, ckpt::CollectiveReader::open(path, comm));
    *reader = new ckpt_mpi_reader{std::move(opened), {}};
    return {};
  });
}

size_t ckpt_mpi_tensor_count(const ckpt_mpi_reader* reader) {
  return reader != nullptr ? reader->reader->tensors().size() : 0;
}

ckpt_status ckpt_mpi_tensor_at(const ckpt_mpi_reader* reader, size_t index, ckpt_tensor_info* info) {
  if (reader == nullptr || info == nullptr || index >= reader->reader->tensors().size()) {
    return static_cast<ckpt_status>(ckpt::ErrorCode::kInvalidArgument);
  }
  const ckpt::TensorInfo& tensor = reader->reader->tensors()[index];
  info->name = tensor.name.c_str();
  info->dtype = static_cast<int32_t>(tensor.meta.dtype());
  info->ndim = tensor.meta.shape().size();
  info->shape = tensor.meta.shape().data();
  info->nbytes = tensor.meta.byte_size();
  return CKPT_OK;
}

ckpt_status ckpt_mpi_read(ckpt_mpi_reader* reader, const char* name, size_t ndim, const int64_t* offset,
                          const int64_t* shape, void* buffer, uint64_t buffer_size) {
  if (reader == nullptr) return static_cast<ckpt_status>(ckpt::ErrorCode::kInvalidArgument);
  return guarded(reader->last_error, [&]() -> ckpt::Status {
    CKPT_TRY(require(name, "name"));
    if (ndim > 0) {
      CKPT_TRY(require(offset, "offset"));
      CKPT_TRY(require(shape, "shape"));
    }
    if (buffer_size > 0) CKPT_TRY(require(buffer, "buffer"));
    return reader->reader->read(name, {dims(offset, ndim), dims(shape, ndim)},
                                std::span(static_cast<std::byte*>(buffer), buffer_size));
  });
}

const char* ckpt_mpi_reader_error(const ckpt_mpi_reader* reader) {
  return reader != nullptr ? reader->last_error.c_str() : "";
}

void ckpt_mpi_reader_free(ckpt_mpi_reader* reader) { delete reader; }

}  // extern "C"
