// A NumPy .npz archive as a CheckpointReader/CheckpointWriter (format
// "npz"), and its validator.
#include "ckpt/format/npz.hpp"

#include <algorithm>
#include <array>
#include <set>

#include <fmt/format.h>

#include "ckpt/format/names.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/zip.hpp"
#include "core/little_endian.hpp"
#include "core/utf8.hpp"
#include "registry/formats.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

// Offsets in a zip local header (zip.hpp).
constexpr std::size_t kLocalNameLengthAt = 26;
constexpr std::size_t kLocalNameAt = 30;

// Consumes bytes without keeping them: reading a member through it checks its CRC.
class DiscardSink final : public ByteSink {
 public:
  Status write(std::span<const std::byte>) override { return {}; }
  Status finish() override { return {}; }
  const std::string& name() const override { return name_; }

 private:
  std::string name_ = "<discard>";
};


// The uncompressed bytes of `entry`, usable on their own: a slice of the
// archive when stored (a file slice, so copies stay copy_file_range), an
// inflating source when deflated.
Result<std::shared_ptr<const ByteSource>> member_bytes(const std::shared_ptr<const FileSource>& archive,
                                                       const ZipReader& zip, const ZipEntry& entry) {
  if (entry.method == ZipMethod::kStored) {
    CKPT_ASSIGN_OR_RETURN(std::uint64_t start, zip.data_offset(entry));
    CKPT_ASSIGN_OR_RETURN(SliceSource slice, SliceSource::make(archive, start, entry.size));
    return std::shared_ptr<const ByteSource>(std::make_shared<SliceSource>(std::move(slice)));
  }
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> inflating, zip.open_member(entry));
  // The inflating source reads the archive: its deleter keeps the archive open.
  return std::shared_ptr<const ByteSource>(inflating.release(), [archive](const ByteSource* source) { delete source; });
}

struct Member {
  ZipEntry entry;
  NpyHeader header;
};

// A member whose header was refused for its type: listed as unsupported
// rather than blocking the archive. Other header errors stay errors.
std::optional<UnsupportedTensor> as_unsupported(const std::string& name, const ByteSource& bytes, const Error& error) {
  if (error.code() != ErrorCode::kNpyUnsupportedDtype) return std::nullopt;
  return UnsupportedTensor{name, npy_header_descr(bytes), error.message()};
}

class NpzReader final : public CheckpointReader {
 public:
  NpzReader(fs::path path, std::shared_ptr<const FileSource> archive, ZipReader zip, std::vector<TensorInfo> tensors,
            std::vector<Member> members, std::vector<UnsupportedTensor> unsupported, NpyReadOptions options)
      : path_(std::move(path)), archive_(std::move(archive)), zip_(std::move(zip)), tensors_(std::move(tensors)),
        members_(std::move(members)), unsupported_(std::move(unsupported)), options_(options) {}

  std::string_view format_name() const override { return "npz"; }
  const fs::path& path() const override { return path_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::vector<UnsupportedTensor>& unsupported() const override { return unsupported_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    const TensorInfo* tensor = find(name);
    if (tensor == nullptr) {
      return std::move(Error(ErrorCode::kUnknownVariable, fmt::format("no member {:?}", std::string(name) + ".npy"))
                           .in_file(path_.string())
                           .in_variable(name));
    }
    const Member& member = members_[static_cast<std::size_t>(tensor - tensors_.data())];
    auto data = [&]() -> Result<std::unique_ptr<ByteSource>> {
      CKPT_ASSIGN_OR_RETURN(std::shared_ptr<const ByteSource> bytes, member_bytes(archive_, zip_, member.entry));
      return open_npy_data(std::move(bytes), member.header, options_);
    }();
    if (!data.ok()) return std::move(std::move(data).error().in_file(path_.string()).in_variable(name));
    return data;
  }

 private:
  fs::path path_;
  std::shared_ptr<const FileSource> archive_;
  ZipReader zip_;  // reads *archive_
  std::vector<TensorInfo> tensors_;
  std::vector<Member> members_;  // members_[i] holds tensors_[i]
  std::vector<UnsupportedTensor> unsupported_;
  NpyReadOptions options_;
};

class NpzWriter final : public CheckpointWriter {
 public:
  NpzWriter(std::unique_ptr<AtomicFile> file, ZipMethod method)
      : file_(std::move(file)), zip_(std::make_unique<ZipWriter>(*file_)), method_(method) {}

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    auto status = [&]() -> Status {
      // The reader's own test of a member name, so nothing is written it would refuse.
      CKPT_TRY(npz_variable_name(std::string(name) + std::string(kNpyExtension)));
      if (auto bad = detail::utf8_error_offset(name)) {
        // Member names are stored flagged as UTF-8; numpy decodes them so.
        return Error(ErrorCode::kUnstorableName,
                     fmt::format("the name {:?} is not valid UTF-8 (byte {}); a zip member name flagged UTF-8 must be",
                                 name, *bad));
      }
      CKPT_TRY(check_npy_data(meta, data));
      if (!names_.emplace(name).second) return Error(ErrorCode::kDuplicateName, "added twice to the same archive");
      return zip_->add(std::string(name) + std::string(kNpyExtension), method_,
                       [&](ByteSink& member) { return write_npy(member, meta, data); });
    }();
    if (!status.ok()) return std::move(std::move(status).error().in_file(file_->name()).in_variable(name));
    return {};
  }

  Status commit() override {
    CKPT_TRY(zip_->finish());
    return file_->commit();
  }

 private:
  std::unique_ptr<AtomicFile> file_;
  std::unique_ptr<ZipWriter> zip_;  // writes to *file_
  ZipMethod method_;
  std::set<std::string, std::less<>> names_;
};

// A zip whose first member is an .npy (numpy writes local headers first),
// or an empty zip named .npz. Other zips (PyTorch files) are not npz.
bool looks_like_npz(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto file = FileSource::open(path);
  if (!file.ok()) return false;
  const ZipStart start = sniff_zip(*file);
  if (start == ZipStart::kEmpty) return path.extension() == kNpzExtension;
  std::array<std::byte, kLocalNameAt> header{};
  if (start != ZipStart::kMember || file->size() < header.size() || !file->read_at(0, header).ok()) return false;
  const auto name_length =
      static_cast<std::size_t>(detail::load_le(std::span(header).subspan(kLocalNameLengthAt, 2)));
  if (name_length < kNpyExtension.size() || file->size() - kLocalNameAt < name_length) return false;
  std::string name(name_length, '\0');
  if (!file->read_at(kLocalNameAt, std::as_writable_bytes(std::span(name))).ok()) return false;
  return name.ends_with(kNpyExtension);
}

Result<std::unique_ptr<CheckpointReader>> open_npz(const fs::path& path, const OpenOptions& options) {
  CKPT_ASSIGN_OR_RETURN(FileSource file, FileSource::open(path));
  auto archive = std::make_shared<const FileSource>(std::move(file));
  CKPT_ASSIGN_OR_RETURN(ZipReader zip, ZipReader::open(*archive));
  std::vector<std::pair<TensorInfo, Member>> found;
  std::vector<UnsupportedTensor> unsupported;
  for (const ZipEntry& entry : zip.entries()) {
    auto name = npz_variable_name(entry.name);
    if (!name.ok()) return std::move(name).error().in_file(path.string());
    auto bytes = member_bytes(archive, zip, entry);
    if (!bytes.ok()) return std::move(std::move(bytes).error().in_file(path.string()).in_variable(*name));
    auto header = read_npy_header(**bytes, options.npy);
    if (!header.ok()) {
      if (auto listed = as_unsupported(*name, **bytes, header.error())) {
        unsupported.push_back(std::move(*listed));
        continue;
      }
      return std::move(std::move(header).error().in_file(path.string()).in_variable(*name));
    }
    found.push_back({TensorInfo{*name, header->meta}, Member{entry, std::move(header).value()}});
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first.name < b.first.name; });
  std::sort(unsupported.begin(), unsupported.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<TensorInfo> tensors;
  std::vector<Member> members;
  for (auto& [tensor, member] : found) {
    tensors.push_back(std::move(tensor));
    members.push_back(std::move(member));
  }
  return std::unique_ptr<CheckpointReader>(std::make_unique<NpzReader>(path, std::move(archive), std::move(zip),
                                                                       std::move(tensors), std::move(members),
                                                                       std::move(unsupported), options.npy));
}

Result<std::unique_ptr<CheckpointWriter>> create_npz(const fs::path& path, WriteOptions options) {
  const ZipMethod method = options.compress ? ZipMethod::kDeflate : ZipMethod::kStored;
  CKPT_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(path, std::move(options)));
  return std::unique_ptr<CheckpointWriter>(
      std::make_unique<NpzWriter>(std::make_unique<AtomicFile>(std::move(file)), method));
}

ValidationReport validate_with_options(const fs::path& path, const OpenOptions& options) {
  return validate_npz(path, options.npy);
}

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
  if (Status valid = check_entry_name(name); !valid.ok()) {
    return Error(ErrorCode::kZipUnsafeName, fmt::format("member {:?}: {}", member, valid.error().message()));
  }
  return std::string(name);
}

ValidationReport validate_npz(const fs::path& path, const NpyReadOptions& options) {
  auto zip_file = FileSource::open(path);
  if (!zip_file.ok()) return detail::unreadable_report(path, zip_file.error());
  auto zip = ZipReader::open(*zip_file);
  if (!zip.ok()) return detail::unreadable_report(path, zip.error());
  ValidationReport report;
  report.path = path;
  CollectAll problems;
  for (const ZipEntry& entry : zip->entries()) {
    auto name = npz_variable_name(entry.name);
    if (!name.ok()) {
      Severity severity = name.error().code() == ErrorCode::kUnexpectedEntry ? Severity::kWarning : Severity::kError;
      problems.report(severity, std::move(std::move(name).error().in_file(path.string())));
      continue;
    }
    InContext in_member(problems, path.string(), *name);
    auto member = zip->open_member(entry);
    if (!member.ok()) {
      in_member.error(std::move(member).error());
      continue;
    }
    std::optional<UnsupportedTensor> listed;
    if (auto probe = read_npy_header(**member, options); !probe.ok()) listed = as_unsupported(*name, **member, probe.error());
    std::optional<NpyHeader> header;
    if (listed) {
      // Most reasons quote the descr already; a structured one does not.
      const bool quoted = listed->reason.find(listed->descr) != std::string::npos;
      in_member.warning(Error(ErrorCode::kNpyUnsupportedMember,
                              fmt::format("{}{}; listed as unsupported, not read",
                                          quoted ? "" : fmt::format("descr {}: ", listed->descr), listed->reason)));
    } else {
      header = read_npy_header(**member, options, in_member);
      if (!header) continue;
    }
    DiscardSink discard;  // reading every byte checks the CRC, of unsupported members too
    if (auto read = discard.write_from(**member, 0, (*member)->size()); !read.ok()) {
      in_member.error(std::move(read).error());
      continue;
    }
    if (header) report.variables.push_back(VariableInfo{*name, header->meta, header->meta.byte_size()});
  }
  report.issues = std::move(problems.issues());
  detail::require_some_variable(report, ".npy member");
  return report;
}

namespace detail {

const FormatHandler& npz_format() {
  static constexpr std::string_view kExtensions[] = {kNpzExtension};
  static const FormatHandler handler{.name = "npz",
                                     .summary = "a NumPy .npz archive of <variable>.npy members",
                                     .extensions = kExtensions,
                                     .kind = FormatKind::kFile,
                                     .detect = looks_like_npz,
                                     .open = open_npz,
                                     .create = create_npz,
                                     .validate = validate_with_options,
                                     .dtype_label = npy_descr};
  return handler;
}

}  // namespace detail
}  // namespace ckpt
