#include "ckpt/format/npz.hpp"

#include <fmt/format.h>

#include "ckpt/format/writer.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

// Consumes bytes without keeping them: reading a member through it checks its CRC.
class DiscardSink final : public ByteSink {
 public:
  Status write(std::span<const std::byte>) override { return {}; }
  Status finish() override { return {}; }
  const std::string& name() const override { return name_; }

 private:
  std::string name_ = "<discard>";
};

}  // namespace

Result<std::string> npz_variable_name(std::string_view member) {
  if (!member.ends_with(kNpyExtension)) {
    return Error(ErrorCode::kUnexpectedEntry, fmt::format("member {:?} is not an .npy file", member));
  }
  if (member.find('\\') != std::string_view::npos || member.starts_with('/')) {
    return Error(ErrorCode::kZipUnsafeName,
                 fmt::format("member {:?} is a path (backslash or leading '/'), not a plain name", member));
  }
  std::string_view name = member.substr(0, member.size() - kNpyExtension.size());
  if (Status valid = check_variable_name(name); !valid.ok()) {
    return Error(ErrorCode::kZipUnsafeName, fmt::format("member {:?}: {}", member, valid.error().message()));
  }
  return std::string(name);
}

Result<NpzReader> NpzReader::open(const fs::path& path, NpyReadOptions options) {
  CKPT_ASSIGN_OR_RETURN(FileSource opened, FileSource::open(path));
  auto file = std::make_unique<FileSource>(std::move(opened));
  CKPT_ASSIGN_OR_RETURN(ZipReader zip, ZipReader::open(*file));
  std::vector<std::string> names;
  for (const ZipEntry& entry : zip.entries()) {
    auto name = npz_variable_name(entry.name);
    if (!name.ok()) return std::move(name).error().in_file(path.string());
    names.push_back(std::move(name).value());
  }
  return NpzReader(std::move(file), std::move(zip), std::move(names), options);
}

Result<NpzArray> NpzReader::open_array(std::string_view name, std::vector<Error>* warnings) const {
  std::string member_name = fmt::format("{}{}", name, kNpyExtension);
  const ZipEntry* entry = zip_.find(member_name);
  if (entry == nullptr) {
    return std::move(Error(ErrorCode::kUnknownVariable, fmt::format("no member {:?}", member_name))
                         .in_file(path())
                         .in_variable(name));
  }
  auto array = [&]() -> Result<NpzArray> {
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> member, zip_.open_member(*entry));
    CKPT_ASSIGN_OR_RETURN(NpyHeader header, read_npy_header(*member, options_, warnings));
    return NpzArray{std::string(name), std::move(header), std::move(member)};
  }();
  if (!array.ok()) return std::move(std::move(array).error().in_variable(name));
  return array;
}

Result<NpzWriter> NpzWriter::create(const fs::path& destination, WriteOptions options, ZipMethod method) {
  CKPT_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(destination, std::move(options)));
  return NpzWriter(std::make_unique<AtomicFile>(std::move(file)), method);
}

Status NpzWriter::add(std::string_view name, const VariableMeta& meta, const ByteSource& data, std::uint64_t offset) {
  return add(name, meta, [&](ByteSink& sink) { return sink.write_from(data, offset, meta.byte_size()); });
}

Status NpzWriter::add(std::string_view name, const VariableMeta& meta,
                      const std::function<Status(ByteSink&)>& write_data) {
  auto status = [&]() -> Status {
    CKPT_TRY(check_variable_name(name));
    if (!names_.emplace(name).second) return Error(ErrorCode::kDuplicateName, "added twice to the same archive");
    CKPT_ASSIGN_OR_RETURN(std::string header, make_npy_header(meta));
    return zip_->add(fmt::format("{}{}", name, kNpyExtension), method_, [&](ByteSink& member) -> Status {
      CKPT_TRY(member.write(as_bytes(header)));
      CountingSink counted(member);
      CKPT_TRY(write_data(counted));
      return counted.check(meta);
    });
  }();
  if (!status.ok()) return std::move(std::move(status).error().in_file(file_->name()).in_variable(name));
  return {};
}

Status NpzWriter::commit() {
  CKPT_TRY(zip_->finish());
  return file_->commit();
}

ValidationReport validate_npz(const fs::path& path, const NpyReadOptions& options) {
  ValidationReport report;
  report.path = path;
  auto zip_file = FileSource::open(path);
  if (!zip_file.ok()) {
    report.issues.push_back(make_issue(zip_file.error(), Severity::kError));
    return report;
  }
  auto zip = ZipReader::open(*zip_file);
  if (!zip.ok()) {
    report.issues.push_back(make_issue(zip.error(), Severity::kError));
    return report;
  }
  for (const ZipEntry& entry : zip->entries()) {
    auto name = npz_variable_name(entry.name);
    if (!name.ok()) {
      Severity severity = name.error().code() == ErrorCode::kUnexpectedEntry ? Severity::kWarning : Severity::kError;
      report.issues.push_back(make_issue(Error(name.error()).in_file(path.string()), severity));
      continue;
    }
    auto checked = [&]() -> Result<NpyHeader> {
      CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> member, zip->open_member(entry));
      std::vector<Error> warnings;
      CKPT_ASSIGN_OR_RETURN(NpyHeader header, read_npy_header(*member, options, &warnings));
      for (Error& warning : warnings) report.issues.push_back(make_issue(warning.in_variable(*name), Severity::kWarning));
      DiscardSink discard;
      CKPT_TRY(discard.write_from(*member, 0, member->size()));
      return header;
    }();
    if (!checked.ok()) {
      Error error = std::move(checked).error();
      report.issues.push_back(make_issue(error.in_file(path.string()).in_variable(*name), Severity::kError));
      continue;
    }
    report.variables.push_back(VariableInfo{*name, checked->meta, checked->meta.byte_size()});
  }
  if (report.variables.empty() && report.count(Severity::kError) == 0) {
    report.issues.push_back(
        make_issue(Error(ErrorCode::kNotACheckpoint, "no .npy member").in_file(path.string()), Severity::kError));
  }
  return report;
}

}  // namespace ckpt
