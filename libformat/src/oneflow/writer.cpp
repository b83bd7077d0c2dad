#include "ckpt/format/writer.hpp"

#include <array>

#include <fmt/format.h>

#include "ckpt/format/meta.hpp"
#include "ckpt/format/snapshot.hpp"

namespace ckpt {
namespace {

// Names that are files of the layout itself, so a variable directory with
// that name would be misread.
constexpr std::array<std::string_view, 3> kReservedNames = {kDoneFile, kPickleFile, kGraphFile};

}  // namespace

Status check_variable_name(std::string_view name) {
  CKPT_TRY(check_entry_name(name));
  for (std::string_view reserved : kReservedNames) {
    if (name == reserved) {
      return Error(ErrorCode::kUnsafeName, fmt::format("variable name {:?} is a reserved file name of the layout", name));
    }
  }
  return {};
}

Result<SnapshotWriter> SnapshotWriter::create(const std::filesystem::path& destination, WriteOptions options) {
  if (!options.is_checkpoint) {
    // Used directly (not through create_checkpoint), overwrite replaces a
    // directory only if it is a valid OneFlow checkpoint holding nothing else.
    options.is_checkpoint = [](const std::filesystem::path& directory) -> Status {
      for (const Issue& issue : validate_snapshot(directory).issues) {
        if (issue.severity == Severity::kError || issue.code == ErrorCode::kUnexpectedEntry) {
          return Error(issue.code, issue.message);
        }
      }
      return {};
    };
  }
  CKPT_ASSIGN_OR_RETURN(AtomicDirectory directory, AtomicDirectory::create(destination, std::move(options)));
  return SnapshotWriter(std::move(directory));
}

Status SnapshotWriter::write_file(const std::filesystem::path& relative, const ByteSource& data) {
  CKPT_ASSIGN_OR_RETURN(FileSink sink, directory_.create_file(relative));
  CKPT_TRY(sink.write_from(data, 0, data.size()));
  return sink.finish();
}

Status SnapshotWriter::add(std::string_view name, const VariableMeta& meta, const ByteSource& data) {
  if (data.size() != meta.byte_size()) {
    return std::move(Error(ErrorCode::kBufferSizeMismatch,
                           fmt::format("data has {} bytes, shape {} of {} needs {}", data.size(),
                                       shape_to_string(meta.shape()), dtype_name(meta.dtype()), meta.byte_size()))
                         .in_file(data.name())
                         .in_variable(name));
  }
  return add(name, meta, [&](ByteSink& sink) { return sink.write_from(data, 0, data.size()); });
}

Status SnapshotWriter::add(std::string_view name, const VariableMeta& meta,
                           const std::function<Status(ByteSink&)>& write_data) {
  bool writing = false;
  auto status = [&]() -> Status {
    CKPT_TRY(check_variable_name(name));
    if (names_.count(std::string(name)) != 0) {
      return Error(ErrorCode::kDuplicateName, "added twice to the same snapshot");
    }
    if (!is_oneflow_dtype(meta.dtype())) {
      return Error(ErrorCode::kMetaUnsupportedDataType,
                   fmt::format("{} is not one of OneFlow's data types; a OneFlow checkpoint cannot hold it",
                               dtype_name(meta.dtype())));
    }
    const std::string meta_text = meta_to_text(meta);
    if (meta_text.size() > kMaxMetaBytes) {
      // Readers (ours, E309) refuse a larger meta; a rank in the thousands gets there.
      return Error(ErrorCode::kOverFormatLimit,
                   fmt::format("its meta would be {} bytes (rank {}); readers refuse a meta over {}", meta_text.size(),
                               meta.shape().size(), kMaxMetaBytes));
    }
    std::filesystem::path directory(name);
    writing = true;  // from here on a failure may leave part of this variable staged
    CKPT_TRY(directory_.make_directory(directory));
    // OneFlow writes `out` before `meta`; a meta therefore implies complete data.
    CKPT_ASSIGN_OR_RETURN(FileSink out, directory_.create_file(directory / kDataFile));
    CKPT_TRY(write_data(out));
    if (out.written() != meta.byte_size()) {
      return Error(ErrorCode::kBufferSizeMismatch,
                   fmt::format("{} bytes were written, shape {} of {} needs {}", out.written(),
                               shape_to_string(meta.shape()), dtype_name(meta.dtype()), meta.byte_size()))
          .in_file(out.name());
    }
    CKPT_TRY(out.finish());
    CKPT_TRY(write_file(directory / kMetaFile, MemorySource(as_bytes(meta_text))));
    names_.emplace(name);
    return {};
  }();
  if (!status.ok()) {
    failed_ = failed_ || writing;
    return std::move(std::move(status).error().in_variable(name));
  }
  return {};
}

Status SnapshotWriter::add(std::string_view name, const VariableMeta& meta, std::span<const std::byte> data) {
  return add(name, meta, MemorySource(data));
}

Status SnapshotWriter::refuse_after_failure() const {
  if (!failed_) return {};
  return Error(ErrorCode::kInvalidArgument, "not committed: an earlier add failed, so the snapshot is incomplete")
      .in_file(destination().string());
}

Status SnapshotWriter::commit() {
  CKPT_TRY(refuse_after_failure());
  CKPT_TRY(write_file(std::filesystem::path(kDoneFile), MemorySource({})));
  return directory_.commit();
}

Status SnapshotWriter::commit_pickle_dir(std::span<const std::byte> pickled_data) {
  CKPT_TRY(refuse_after_failure());
  CKPT_TRY(write_file(std::filesystem::path(kPickleFile), MemorySource(pickled_data)));
  return directory_.commit();
}

}  // namespace ckpt
