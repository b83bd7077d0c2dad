#include "ckpt/format/safetensors.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <unordered_set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"
#include "core/posix_util.hpp"
#include "core/utf8.hpp"
#include "registry/formats.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::uint64_t kLengthFieldBytes = 8;
// The header is padded so the byte buffer starts 8-aligned.
constexpr std::uint64_t kHeaderAlignment = 8;

std::uint64_t load_le64(std::span<const std::byte, 8> bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = 8; i-- > 0;) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  return value;
}

std::array<std::byte, 8> store_le64(std::uint64_t value) {
  std::array<std::byte, 8> bytes{};
  for (auto& byte : bytes) {
    byte = static_cast<std::byte>(value & 0xFF);
    value >>= 8;
  }
  return bytes;
}

std::string supported_dtype_list() {
  std::vector<std::string_view> names;
  for (const auto& info : all_dtypes()) {
    if (!info.safetensors.empty() && info.dtype != DType::kChar) names.push_back(info.safetensors);
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

// Problems found while parsing; in fail-fast mode the first one ends the parse.
class Problems {
 public:
  Problems(bool fail_fast, std::string file) : fail_fast_(fail_fast), file_(std::move(file)) {}
  // Records `problem`; returns whether parsing goes on.
  bool add(Error problem) {
    list_.push_back(std::move(problem.in_file(file_)));
    return !fail_fast_;
  }
  bool add(ErrorCode code, std::string message, std::string_view variable = {}) {
    Error problem(code, std::move(message));
    if (!variable.empty()) problem.in_variable(variable);
    return add(std::move(problem));
  }
  std::vector<Error>& list() { return list_; }

 private:
  bool fail_fast_;
  std::string file_;
  std::vector<Error> list_;
};

// One tensor entry as written, before the offsets are checked against the others.
struct RawEntry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin;
  std::uint64_t end;
};

Result<RawEntry> parse_entry(const std::string& name, const json& value) {
  auto schema = [&](std::string why) { return Error(ErrorCode::kSafetensorsHeaderSchema, std::move(why)); };
  if (!value.is_object()) {
    return schema(fmt::format("expected {{\"dtype\", \"shape\", \"data_offsets\"}}, found a JSON {}", value.type_name()));
  }
  // Unknown fields are ignored, as the reference does (no deny_unknown_fields).
  auto dtype_field = value.find("dtype");
  if (dtype_field == value.end() || !dtype_field->is_string()) return schema("\"dtype\" missing or not a string");
  const auto& dtype_text = dtype_field->get_ref<const std::string&>();
  auto dtype = dtype_from_safetensors(dtype_text);
  if (!dtype) {
    return Error(ErrorCode::kSafetensorsUnknownDtype,
                 fmt::format("dtype '{}' is not one of {}", dtype_text, supported_dtype_list()));
  }
  auto shape_field = value.find("shape");
  if (shape_field == value.end() || !shape_field->is_array()) return schema("\"shape\" missing or not a list");
  Shape shape;
  for (const auto& dim : *shape_field) {
    if (!dim.is_number_unsigned()) return schema(fmt::format("shape {} holds {}, not a non-negative integer", shape_field->dump(), dim.dump()));
    auto size = dim.get<std::uint64_t>();
    if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return Error(ErrorCode::kSafetensorsSizeOverflow, fmt::format("dim {} does not fit in 63 bits", size));
    }
    shape.push_back(static_cast<std::int64_t>(size));
  }
  auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned()) {
    return schema(fmt::format("\"data_offsets\" must be [BEGIN, END] with non-negative integers, found {}",
                              offsets == value.end() ? "nothing" : offsets->dump()));
  }
  return RawEntry{name, *dtype, std::move(shape), (*offsets)[0].get<std::uint64_t>(), (*offsets)[1].get<std::uint64_t>()};
}

// Parses the JSON, refusing duplicate keys at any level: serde keeps the last
// of two equal keys, so other readers would see different tensors (TOB-SFTN-7).
Result<json> parse_json(const std::string& text, Problems& problems, bool& stop) {
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string entry;  // the top-level key being parsed, for messages
  std::vector<Error> duplicates;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end && !open_objects.empty()) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      bool top_level = open_objects.size() == 1;
      if (top_level) entry = key;
      if (!open_objects.back().insert(key).second) {
        Error duplicate(ErrorCode::kSafetensorsDuplicateKey,
                        top_level ? fmt::format("the name '{}' appears twice in the header", key)
                                  : fmt::format("the field '{}' appears twice", key));
        duplicates.push_back(std::move(duplicate.in_variable(entry)));
      }
    }
    return true;
  };
  json document;
  try {
    document = json::parse(text, on_event);
  } catch (const json::exception& error) {
    stop = true;
    return Error(ErrorCode::kSafetensorsHeaderJson, fmt::format("the header is not valid JSON: {}", error.what()));
  }
  if (!document.is_object()) {
    stop = true;
    return Error(ErrorCode::kSafetensorsHeaderJson,
                 fmt::format("the header must be a JSON object, found a JSON {}", document.type_name()));
  }
  for (auto& duplicate : duplicates) {
    if (!problems.add(std::move(duplicate))) {
      stop = true;
      break;
    }
  }
  return document;
}

void check_metadata(const json& value, SafetensorsHeader& header, Problems& problems, bool& stop) {
  if (value.is_null()) return;
  if (!value.is_object()) {
    stop = !problems.add(ErrorCode::kSafetensorsMetadata,
                         fmt::format("__metadata__ must be an object of strings, found a JSON {}", value.type_name()));
    return;
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      stop = !problems.add(ErrorCode::kSafetensorsMetadata,
                           fmt::format("__metadata__ value of '{}' must be a string, found {}", key, item.dump()));
      if (stop) return;
    } else {
      header.metadata.emplace(key, item.get<std::string>());
    }
  }
}

// Checks the entries in offset order: contiguous from 0, each exactly its
// size, the last ending at the end of the file. Adds the sound ones to `header`.
void check_layout(std::vector<RawEntry> entries, std::uint64_t file_size, SafetensorsHeader& header,
                  Problems& problems) {
  std::sort(entries.begin(), entries.end(),
            [](const RawEntry& a, const RawEntry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t expected_begin = 0;
  for (auto& entry : entries) {
    std::string offsets = fmt::format("data_offsets [{}, {}]", entry.begin, entry.end);
    bool sound = true;
    if (entry.end < entry.begin) {
      sound = false;
      if (!problems.add(ErrorCode::kSafetensorsOffsets, offsets + ": the end is before the begin", entry.name)) return;
    } else if (entry.begin != expected_begin) {
      sound = false;
      std::string_view what = entry.begin > expected_begin ? "a hole" : "an overlap";
      if (!problems.add(ErrorCode::kSafetensorsOffsets,
                        fmt::format("{}: {}, the data before it ends at {}", offsets, what, expected_begin),
                        entry.name)) {
        return;
      }
    }
    expected_begin = entry.end;
    auto meta = VariableMeta::make(entry.dtype, entry.shape);
    if (!meta.ok()) {
      if (!problems.add(ErrorCode::kSafetensorsSizeOverflow, meta.error().message(), entry.name)) return;
      continue;
    }
    if (sound && entry.end - entry.begin != meta->byte_size()) {
      sound = false;
      if (!problems.add(ErrorCode::kSafetensorsTensorSize,
                        fmt::format("{}: expected {} bytes ({} x {}), found {}", offsets, meta->byte_size(),
                                    dtype_info(entry.dtype).safetensors, shape_to_string(entry.shape),
                                    entry.end - entry.begin),
                        entry.name)) {
        return;
      }
    }
    if (sound) header.entries.push_back({std::move(entry.name), std::move(meta).value(), entry.begin, entry.end});
  }
  std::uint64_t available = file_size - header.data_start;
  if (expected_begin != available) {
    problems.add(ErrorCode::kSafetensorsBufferEnd,
                 fmt::format("the tensors end at byte {} of the data, which has {} bytes ({})", expected_begin,
                             available, expected_begin < available ? "trailing bytes" : "truncated"));
  }
}

// Every rule, in the reference's order; `problems` decides whether to go on.
SafetensorsHeader parse_header(const ByteSource& file, Problems& problems) {
  SafetensorsHeader header;
  if (file.size() < kLengthFieldBytes) {
    problems.add(ErrorCode::kSafetensorsTooSmall,
                 fmt::format("{} bytes, shorter than the 8-byte header length", file.size()));
    return header;
  }
  std::array<std::byte, kLengthFieldBytes> length_field{};
  if (auto read = file.read_at(0, length_field); !read.ok()) {
    problems.add(std::move(read).error());
    return header;
  }
  std::uint64_t header_bytes = load_le64(length_field);
  if (header_bytes > kSafetensorsMaxHeaderBytes) {
    problems.add(ErrorCode::kSafetensorsHeaderTooLarge, fmt::format("header length {} is over the cap of {} bytes",
                                                                    header_bytes, kSafetensorsMaxHeaderBytes));
    return header;
  }
  if (header_bytes > file.size() - kLengthFieldBytes) {
    problems.add(ErrorCode::kSafetensorsHeaderLength,
                 fmt::format("header length {} runs past the end of the file ({} bytes follow the length)",
                             header_bytes, file.size() - kLengthFieldBytes));
    return header;
  }
  header.data_start = kLengthFieldBytes + header_bytes;
  std::string text(header_bytes, '\0');
  if (auto read = file.read_at(kLengthFieldBytes, std::as_writable_bytes(std::span(text))); !read.ok()) {
    problems.add(std::move(read).error());
    return header;
  }
  if (auto bad = detail::utf8_error_offset(text)) {
    problems.add(ErrorCode::kSafetensorsHeaderUtf8,
                 fmt::format("the header is not valid UTF-8 (byte {} of the header)", *bad));
    return header;
  }
  // nlohmann stops at a NUL as if the input ended, so "{}\0\0" would pass;
  // serde refuses it (NUL padding written by some third-party writers).
  if (auto nul = text.find('\0'); nul != std::string::npos) {
    problems.add(ErrorCode::kSafetensorsHeaderJson,
                 fmt::format("the header has a NUL byte at byte {} (JSON allows none; padding must be spaces)", nul));
    return header;
  }
  bool stop = false;
  auto document = parse_json(text, problems, stop);
  if (!document.ok()) problems.add(std::move(document).error());
  if (stop) return header;
  std::vector<RawEntry> entries;
  for (const auto& [key, value] : document->items()) {
    if (key == kSafetensorsMetadataKey) {
      check_metadata(value, header, problems, stop);
    } else if (auto entry = parse_entry(key, value); entry.ok()) {
      entries.push_back(std::move(entry).value());
    } else {
      stop = !problems.add(std::move(std::move(entry).error().in_variable(key)));
    }
    if (stop) return header;
  }
  check_layout(std::move(entries), file.size(), header, problems);
  std::sort(header.entries.begin(), header.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  return header;
}

// ---- reading through the generic interface ----

// One tensor: a slice of the shared file.
class TensorBytes final : public ByteSource {
 public:
  TensorBytes(std::shared_ptr<const FileSource> file, std::uint64_t start, std::uint64_t size)
      : file_(std::move(file)), start_(start), size_(size) {}
  std::uint64_t size() const override { return size_; }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    CKPT_TRY(check_range(*this, offset, out.size()));
    return file_->read_at(start_ + offset, out);
  }
  const std::string& name() const override { return file_->name(); }
  int file_descriptor() const override { return file_->file_descriptor(); }
  std::uint64_t file_offset() const override { return start_; }

 private:
  std::shared_ptr<const FileSource> file_;
  std::uint64_t start_;
  std::uint64_t size_;
};

class SafetensorsReader final : public CheckpointReader {
 public:
  SafetensorsReader(fs::path path, std::shared_ptr<const FileSource> file, SafetensorsHeader header)
      : path_(std::move(path)), file_(std::move(file)), header_(std::move(header)) {
    for (const auto& entry : header_.entries) tensors_.push_back({entry.name, entry.meta});
  }

  std::string_view format_name() const override { return "safetensors"; }
  const fs::path& path() const override { return path_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    const TensorInfo* info = find(name);
    if (info == nullptr) {
      return Error(ErrorCode::kUnknownVariable, "no tensor of that name").in_variable(name).in_file(path_.string());
    }
    const auto& entry = header_.entries[static_cast<std::size_t>(info - tensors_.data())];
    return std::unique_ptr<ByteSource>(
        std::make_unique<TensorBytes>(file_, header_.data_start + entry.begin, entry.end - entry.begin));
  }

 private:
  fs::path path_;
  std::shared_ptr<const FileSource> file_;
  SafetensorsHeader header_;  // entries in the same (name) order as tensors_
  std::vector<TensorInfo> tensors_;
};

// A cheap look: a plain file whose length field fits and whose JSON starts with '{'.
bool looks_like_safetensors(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto file = FileSource::open(path);
  if (!file.ok() || file->size() < kLengthFieldBytes + 2) return false;
  std::array<std::byte, kLengthFieldBytes + 64> start{};
  auto length = std::min<std::uint64_t>(start.size(), file->size());
  if (!file->read_at(0, std::span(start).first(length)).ok()) return false;
  std::uint64_t header_bytes = load_le64(std::span(start).first<kLengthFieldBytes>());
  if (header_bytes < 2 || header_bytes > kSafetensorsMaxHeaderBytes || header_bytes > file->size() - kLengthFieldBytes) {
    return false;
  }
  for (std::size_t i = kLengthFieldBytes; i < length; ++i) {
    auto c = std::to_integer<char>(start[i]);
    if (c == '{') return true;
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return false;
}

Result<std::unique_ptr<CheckpointReader>> open_safetensors(const fs::path& path, const OpenOptions& /*options*/) {
  CKPT_ASSIGN_OR_RETURN(FileSource file, FileSource::open(path));
  CKPT_ASSIGN_OR_RETURN(SafetensorsHeader header, read_safetensors_header(file));
  auto shared = std::make_shared<const FileSource>(std::move(file));
  return std::unique_ptr<CheckpointReader>(
      std::make_unique<SafetensorsReader>(path, std::move(shared), std::move(header)));
}

// ---- writing ----

// An unnamed read-write file beside the destination: tensors are staged here
// because the header, written first, needs every tensor's size. It is
// unlinked at once, so nothing is left behind even after a crash.
class ScratchFile final : public ByteSink, public ByteSource {
 public:
  static Result<std::unique_ptr<ScratchFile>> create(const fs::path& destination) {
    fs::path directory = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    std::string pattern =
        (directory / fmt::format(".{}{}data-XXXXXX", destination.filename().string(), kStagingMarker)).string();
    int fd = ::mkstemp(pattern.data());
    if (fd < 0) return detail::io_error("create scratch file", pattern);
    ::unlink(pattern.c_str());
    return std::unique_ptr<ScratchFile>(new ScratchFile(fd, destination.string() + " (staged tensor data)"));
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  ~ScratchFile() override { ::close(fd_); }

  Status write(std::span<const std::byte> bytes) override {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(size_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return detail::io_error("write", name_);
      done += static_cast<std::size_t>(n);
    }
    size_ += bytes.size();
    return {};
  }
  // Staged data needs no durability: the published file is fsynced.
  Status finish() override { return {}; }
  std::uint64_t size() const override { return size_; }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    CKPT_TRY(check_range(*this, offset, out.size()));
    std::size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return detail::io_error("read", name_, n == 0 ? EIO : errno);
      done += static_cast<std::size_t>(n);
    }
    return {};
  }
  const std::string& name() const override { return name_; }
  int file_descriptor() const override { return fd_; }

 private:
  ScratchFile(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  int fd_;
  std::string name_;
  std::uint64_t size_ = 0;
};

class SafetensorsWriter final : public CheckpointWriter {
 public:
  SafetensorsWriter(AtomicFile output, std::unique_ptr<ScratchFile> scratch)
      : output_(std::move(output)), scratch_(std::move(scratch)) {}

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    auto fail = [&](ErrorCode code, std::string message) {
      return std::move(Error(code, std::move(message)).in_variable(name).in_file(output_.name()));
    };
    if (committed_) return fail(ErrorCode::kInvalidArgument, "the writer has already committed");
    if (dtype_info(meta.dtype()).safetensors.empty()) {
      return fail(ErrorCode::kSafetensorsUnknownDtype,
                  fmt::format("{} has no safetensors dtype (supported: {})", dtype_name(meta.dtype()),
                              supported_dtype_list()));
    }
    if (!is_valid_utf8(name)) return fail(ErrorCode::kSafetensorsHeaderUtf8, "the name is not valid UTF-8");
    if (name == kSafetensorsMetadataKey) return fail(ErrorCode::kInvalidArgument, "the name is reserved for metadata");
    if (data.size() != meta.byte_size()) {
      return fail(ErrorCode::kBufferSizeMismatch,
                  fmt::format("expected {} bytes ({} {}), the data has {}", meta.byte_size(), dtype_name(meta.dtype()),
                              shape_to_string(meta.shape()), data.size()));
    }
    if (!names_.emplace(name).second) return fail(ErrorCode::kDuplicateName, "added twice");
    staged_.push_back({std::string(name), meta, scratch_->size()});
    return scratch_->write_from(data, 0, data.size());
  }

  Status commit() override {
    if (committed_) return Error(ErrorCode::kInvalidArgument, "already committed").in_file(output_.name());
    // The reference's order: widest elements first, then by name, so every
    // tensor starts at a multiple of its element size.
    std::sort(staged_.begin(), staged_.end(), [](const Staged& a, const Staged& b) {
      auto a_size = dtype_size(a.meta.dtype());
      auto b_size = dtype_size(b.meta.dtype());
      return a_size != b_size ? a_size > b_size : a.name < b.name;
    });
    nlohmann::ordered_json document = nlohmann::ordered_json::object();
    std::uint64_t offset = 0;
    for (const auto& tensor : staged_) {
      document[tensor.name] = {{"dtype", dtype_info(tensor.meta.dtype()).safetensors},
                               {"shape", tensor.meta.shape()},
                               {"data_offsets", {offset, offset + tensor.meta.byte_size()}}};
      offset += tensor.meta.byte_size();
    }
    std::string text = document.dump();
    text.append((kHeaderAlignment - text.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
    if (text.size() > kSafetensorsMaxHeaderBytes) {
      return Error(ErrorCode::kSafetensorsHeaderTooLarge,
                   fmt::format("the header would be {} bytes, over the cap of {}", text.size(),
                               kSafetensorsMaxHeaderBytes))
          .in_file(output_.name());
    }
    auto length_field = store_le64(text.size());
    CKPT_TRY(output_.write(length_field));
    CKPT_TRY(output_.write(as_bytes(text)));
    for (const auto& tensor : staged_) {
      CKPT_TRY(output_.write_from(*scratch_, tensor.scratch_offset, tensor.meta.byte_size()));
    }
    CKPT_TRY(output_.commit());
    committed_ = true;
    return {};
  }

 private:
  struct Staged {
    std::string name;
    VariableMeta meta;
    std::uint64_t scratch_offset;
  };
  AtomicFile output_;
  std::unique_ptr<ScratchFile> scratch_;
  std::vector<Staged> staged_;
  std::unordered_set<std::string> names_;
  bool committed_ = false;
};

Result<std::unique_ptr<CheckpointWriter>> create_safetensors(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(AtomicFile output, AtomicFile::create(path, std::move(options)));
  CKPT_ASSIGN_OR_RETURN(auto scratch, ScratchFile::create(path));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<SafetensorsWriter>(std::move(output), std::move(scratch)));
}

// Every problem of the header (check_safetensors), then the tensors it
// describes when there was none.
ValidationReport validate_safetensors(const fs::path& path, const OpenOptions& options) {
  auto file = FileSource::open(path);
  if (!file.ok()) return detail::unreadable_report(path, file.error());
  std::vector<Error> problems = check_safetensors(*file);
  if (problems.empty()) return detail::validate_through_reader(path, options, open_safetensors);
  ValidationReport report;
  report.path = path;
  for (const Error& problem : problems) report.issues.push_back(make_issue(problem, Severity::kError));
  return report;
}

}  // namespace

bool is_valid_utf8(std::string_view text) { return detail::is_strict_utf8(text); }

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& info : all_dtypes()) {
    // kChar shares I8 with kInt8; I8 reads as kInt8.
    if (info.dtype != DType::kChar && !info.safetensors.empty() && info.safetensors == name) return info.dtype;
  }
  return std::nullopt;
}

Result<SafetensorsHeader> read_safetensors_header(const ByteSource& file) {
  Problems problems(/*fail_fast=*/true, file.name());
  SafetensorsHeader header = parse_header(file, problems);
  if (!problems.list().empty()) return std::move(problems.list().front());
  return header;
}

std::vector<Error> check_safetensors(const ByteSource& file) {
  Problems problems(/*fail_fast=*/false, file.name());
  parse_header(file, problems);
  return std::move(problems.list());
}

namespace detail {

const FormatHandler& safetensors_format() {
  static const FormatHandler handler{"safetensors", looks_like_safetensors, open_safetensors, create_safetensors,
                                     validate_safetensors};
  return handler;
}

}  // namespace detail
}  // namespace ckpt
