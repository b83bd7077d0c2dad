#include "ckpt/format/safetensors.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <unordered_set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/problems.hpp"
#include "registry/formats.hpp"
#include "core/little_endian.hpp"
#include "core/posix_util.hpp"
#include "core/utf8.hpp"
#include "safetensors/safetensors_staging.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::uint64_t kLengthFieldBytes = 8;
// The header is padded so the byte buffer starts 8-aligned.
constexpr std::uint64_t kHeaderAlignment = 8;

std::string supported_dtype_list() {
  std::vector<std::string_view> names;
  for (const auto& info : all_dtypes()) {
    if (!info.safetensors.empty() && info.dtype != DType::kChar) names.push_back(info.safetensors);
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

// Every problem of a header is an error; returns whether parsing goes on.
bool add(ProblemSink& problems, Error problem) { return problems.error(std::move(problem)); }
bool add(ProblemSink& problems, ErrorCode code, std::string message, std::string_view variable = {}) {
  Error problem(code, std::move(message));
  if (!variable.empty()) problem.in_variable(variable);
  return problems.error(std::move(problem));
}

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
    // nlohmann reads an integer beyond 64 bits as a float: too big, not malformed.
    if (dim.is_number_float() && dim.get<double>() >= 0x1p63 && std::trunc(dim.get<double>()) == dim.get<double>()) {
      return Error(ErrorCode::kSafetensorsSizeOverflow, fmt::format("dim {} does not fit in 63 bits", dim.dump()));
    }
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

// Builds the document from nlohmann's SAX events, finding a key given twice
// in one object by the insertion itself (std::map::try_emplace): one pass,
// no extra set per object. (A callback passed to json::parse rescans the
// parent object at each inner object's end: quadratic in the entries.)
class HeaderBuilder {
 public:
  explicit HeaderBuilder(json& root) : root_(root) {}

  bool null() { return place(nullptr) != nullptr; }
  bool boolean(bool value) { return place(value) != nullptr; }
  bool number_integer(json::number_integer_t value) { return place(value) != nullptr; }
  bool number_unsigned(json::number_unsigned_t value) { return place(value) != nullptr; }
  bool number_float(json::number_float_t value, const json::string_t& /*text*/) { return place(value) != nullptr; }
  bool string(json::string_t& value) { return place(std::move(value)) != nullptr; }
  bool binary(json::binary_t& value) { return place(json::binary(std::move(value))) != nullptr; }
  bool start_array(std::size_t /*size*/) {
    open_.push_back(place(json::array()));
    return true;
  }
  bool start_object(std::size_t /*size*/) {
    open_.push_back(place(json::object()));
    return true;
  }
  bool end_array() {
    open_.pop_back();
    return true;
  }
  bool end_object() {
    open_.pop_back();
    return true;
  }
  bool key(json::string_t& key) {
    bool top_level = open_.size() == 1;
    if (top_level) entry_ = key;
    auto [slot, inserted] = open_.back()->get_ref<json::object_t&>().try_emplace(key);
    if (!inserted) {
      Error duplicate(ErrorCode::kSafetensorsDuplicateKey,
                      top_level ? fmt::format("the name '{}' appears twice in the header", key)
                                : fmt::format("the field '{}' appears twice", key));
      duplicates_.push_back(std::move(duplicate.in_variable(entry_)));
    }
    slot_ = &slot->second;
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/, const Exception& error) {
    throw error;
  }

  std::vector<Error>& duplicates() { return duplicates_; }

 private:
  // Puts `value` where the parse is: the root, the end of the open array, or
  // the slot of the last key. Map nodes never move, and an array only grows
  // after its last element is finished, so the pointers in open_ stay valid.
  json* place(json value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    if (open_.back()->is_array()) {
      auto& array = open_.back()->get_ref<json::array_t&>();
      array.push_back(std::move(value));
      return &array.back();
    }
    *slot_ = std::move(value);
    return slot_;
  }

  json& root_;
  std::vector<json*> open_;  // the arrays and objects being filled, innermost last
  json* slot_ = nullptr;     // the value of the last key read
  std::string entry_;        // the top-level key being parsed, for messages
  std::vector<Error> duplicates_;
};

// Parses the JSON, refusing duplicate keys at any level: serde keeps the last
// of two equal keys, so other readers would see different tensors (TOB-SFTN-7).
Result<json> parse_json(const std::string& text, ProblemSink& problems, bool& stop) {
  json document;
  HeaderBuilder builder(document);
  try {
    json::sax_parse(text, &builder);
  } catch (const json::exception& error) {
    stop = true;
    return Error(ErrorCode::kSafetensorsHeaderJson, fmt::format("the header is not valid JSON: {}", error.what()));
  }
  if (!document.is_object()) {
    stop = true;
    return Error(ErrorCode::kSafetensorsHeaderJson,
                 fmt::format("the header must be a JSON object, found a JSON {}", document.type_name()));
  }
  for (auto& duplicate : builder.duplicates()) {
    if (!add(problems, std::move(duplicate))) {
      stop = true;
      break;
    }
  }
  return document;
}

// The common header read straight into entries, without the JSON document
// (a dozen allocations per tensor, most of the time of opening thousands of
// them): entry objects of exactly "dtype" (a known name), "shape" and
// "data_offsets" (plain unsigned integers), and a "__metadata__" object of
// strings. At anything else (a field missing, repeated or unknown, another
// type, invalid JSON) it gives up, and the full parse below finds and words
// the problem.
class PlainHeaderParser {
 public:
  struct Parsed {
    std::vector<RawEntry> entries;  // sorted by name, none twice
    std::map<std::string, std::string> metadata;
  };

  static std::optional<Parsed> parse(const std::string& text) {
    PlainHeaderParser parser;
    bool parsed = false;
    try {
      parsed = json::sax_parse(text, &parser);
    } catch (const json::exception&) {
      return std::nullopt;
    }
    if (!parsed || parser.state_ != State::kDone) return std::nullopt;
    auto& entries = parser.parsed_.entries;
    std::sort(entries.begin(), entries.end(), [](const RawEntry& a, const RawEntry& b) { return a.name < b.name; });
    auto same_name = [](const RawEntry& a, const RawEntry& b) { return a.name == b.name; };
    if (std::adjacent_find(entries.begin(), entries.end(), same_name) != entries.end()) return std::nullopt;
    return std::move(parser.parsed_);
  }

  bool null() { return false; }
  bool boolean(bool /*value*/) { return false; }
  bool number_integer(json::number_integer_t /*value*/) { return false; }
  bool number_float(json::number_float_t /*value*/, const json::string_t& /*text*/) { return false; }
  bool binary(json::binary_t& /*value*/) { return false; }
  bool number_unsigned(json::number_unsigned_t value) {
    if (state_ == State::kInShape) {
      if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
      entry_.shape.push_back(static_cast<std::int64_t>(value));
      return true;
    }
    if (state_ == State::kInOffsets && offsets_read_ < 2) {
      (offsets_read_++ == 0 ? entry_.begin : entry_.end) = value;
      return true;
    }
    return false;
  }
  bool string(json::string_t& value) {
    if (state_ == State::kInMetadata) return parsed_.metadata.emplace(std::move(metadata_key_), std::move(value)).second;
    if (state_ != State::kInEntry || field_ != Field::kDtype) return false;
    auto dtype = dtype_from_safetensors(value);
    if (!dtype) return false;
    entry_.dtype = *dtype;
    return true;
  }
  bool start_object(std::size_t /*size*/) {
    if (state_ == State::kStart) {
      state_ = State::kTop;
      return true;
    }
    if (state_ != State::kTop || !after_key_) return false;
    after_key_ = false;
    state_ = in_metadata_ ? State::kInMetadata : State::kInEntry;
    return true;
  }
  bool end_object() {
    if (state_ == State::kInMetadata) {
      state_ = State::kTop;
      return true;
    }
    if (state_ == State::kInEntry) {
      if (fields_seen_ != kAllFields) return false;
      parsed_.entries.push_back(std::move(entry_));
      state_ = State::kTop;
      return true;
    }
    if (state_ != State::kTop) return false;
    state_ = State::kDone;
    return true;
  }
  bool start_array(std::size_t /*size*/) {
    if (state_ != State::kInEntry) return false;
    if (field_ == Field::kShape) {
      state_ = State::kInShape;
      return true;
    }
    if (field_ != Field::kOffsets) return false;
    state_ = State::kInOffsets;
    offsets_read_ = 0;
    return true;
  }
  bool end_array() {
    if (state_ == State::kInShape || (state_ == State::kInOffsets && offsets_read_ == 2)) {
      state_ = State::kInEntry;
      return true;
    }
    return false;
  }
  bool key(json::string_t& key) {
    if (state_ == State::kInMetadata) {
      metadata_key_ = std::move(key);
      return true;
    }
    if (state_ == State::kTop) {
      after_key_ = true;
      in_metadata_ = key == kSafetensorsMetadataKey;
      if (in_metadata_) return !std::exchange(metadata_seen_, true);
      entry_ = RawEntry{};
      entry_.name = std::move(key);
      fields_seen_ = 0;
      return true;
    }
    if (state_ != State::kInEntry) return false;
    field_ = key == "dtype" ? Field::kDtype : key == "shape" ? Field::kShape : key == "data_offsets" ? Field::kOffsets
                                                                                                     : Field::kOther;
    const unsigned bit = 1u << static_cast<unsigned>(field_);
    if (field_ == Field::kOther || (fields_seen_ & bit) != 0) return false;
    fields_seen_ |= bit;
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/, const Exception& /*error*/) {
    return false;
  }

 private:
  enum class State { kStart, kTop, kInMetadata, kInEntry, kInShape, kInOffsets, kDone };
  enum class Field : unsigned { kDtype, kShape, kOffsets, kOther };
  static constexpr unsigned kAllFields = 0b111;

  State state_ = State::kStart;
  bool after_key_ = false;  // at the top level, a key was read and its value is next
  bool in_metadata_ = false;
  bool metadata_seen_ = false;
  Field field_ = Field::kOther;
  unsigned fields_seen_ = 0;
  int offsets_read_ = 0;
  RawEntry entry_{};
  std::string metadata_key_;
  Parsed parsed_;
};

void check_metadata(const json& value, SafetensorsHeader& header, ProblemSink& problems, bool& stop) {
  if (value.is_null()) return;
  if (!value.is_object()) {
    stop = !add(problems, ErrorCode::kSafetensorsMetadata,
                         fmt::format("__metadata__ must be an object of strings, found a JSON {}", value.type_name()));
    return;
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      stop = !add(problems, ErrorCode::kSafetensorsMetadata,
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
                  ProblemSink& problems) {
  std::sort(entries.begin(), entries.end(),
            [](const RawEntry& a, const RawEntry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t expected_begin = 0;
  for (auto& entry : entries) {
    std::string offsets = fmt::format("data_offsets [{}, {}]", entry.begin, entry.end);
    bool sound = true;
    if (entry.end < entry.begin) {
      sound = false;
      if (!add(problems, ErrorCode::kSafetensorsOffsets, offsets + ": the end is before the begin", entry.name)) return;
    } else if (entry.begin != expected_begin) {
      sound = false;
      std::string_view what = entry.begin > expected_begin ? "a hole" : "an overlap";
      if (!add(problems, ErrorCode::kSafetensorsOffsets,
                        fmt::format("{}: {}, the data before it ends at {}", offsets, what, expected_begin),
                        entry.name)) {
        return;
      }
    }
    expected_begin = entry.end;
    auto meta = VariableMeta::make(entry.dtype, entry.shape);
    if (!meta.ok()) {
      if (!add(problems, ErrorCode::kSafetensorsSizeOverflow, meta.error().message(), entry.name)) return;
      continue;
    }
    if (sound && entry.end - entry.begin != meta->byte_size()) {
      sound = false;
      if (!add(problems, ErrorCode::kSafetensorsTensorSize,
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
    add(problems, ErrorCode::kSafetensorsBufferEnd,
                 fmt::format("the tensors end at byte {} of the data, which has {} bytes ({})", expected_begin,
                             available, expected_begin < available ? "trailing bytes" : "truncated"));
  }
}

// The header as a JSON document: every problem found and worded. Adds the
// entries and metadata; false when `problems` said stop.
bool parse_document(const std::string& text, SafetensorsHeader& header, std::vector<RawEntry>& entries,
                    ProblemSink& problems) {
  bool stop = false;
  auto document = parse_json(text, problems, stop);
  if (!document.ok()) add(problems, std::move(document).error());
  if (stop) return false;
  for (const auto& [key, value] : document->items()) {
    if (key == kSafetensorsMetadataKey) {
      check_metadata(value, header, problems, stop);
    } else if (auto entry = parse_entry(key, value); entry.ok()) {
      entries.push_back(std::move(entry).value());
    } else {
      stop = !add(problems, std::move(std::move(entry).error().in_variable(key)));
    }
    if (stop) return false;
  }
  return true;
}

// Every rule, in the reference's order; `problems` decides whether to go on.
SafetensorsHeader parse_header(const ByteSource& file, ProblemSink& problems) {
  SafetensorsHeader header;
  if (file.size() < kLengthFieldBytes) {
    add(problems, ErrorCode::kSafetensorsTooSmall,
                 fmt::format("{} bytes, shorter than the 8-byte header length", file.size()));
    return header;
  }
  std::array<std::byte, kLengthFieldBytes> length_field{};
  if (auto read = file.read_at(0, length_field); !read.ok()) {
    add(problems, std::move(read).error());
    return header;
  }
  std::uint64_t header_bytes = detail::load_le(length_field);
  if (header_bytes > kSafetensorsMaxHeaderBytes) {
    add(problems, ErrorCode::kSafetensorsHeaderTooLarge, fmt::format("header length {} is over the cap of {} bytes",
                                                                    header_bytes, kSafetensorsMaxHeaderBytes));
    return header;
  }
  if (header_bytes > file.size() - kLengthFieldBytes) {
    add(problems, ErrorCode::kSafetensorsHeaderLength,
                 fmt::format("header length {} runs past the end of the file ({} bytes follow the length)",
                             header_bytes, file.size() - kLengthFieldBytes));
    return header;
  }
  header.data_start = kLengthFieldBytes + header_bytes;
  std::string text(header_bytes, '\0');
  if (auto read = file.read_at(kLengthFieldBytes, std::as_writable_bytes(std::span(text))); !read.ok()) {
    add(problems, std::move(read).error());
    return header;
  }
  if (auto bad = detail::utf8_error_offset(text)) {
    add(problems, ErrorCode::kSafetensorsHeaderUtf8,
                 fmt::format("the header is not valid UTF-8 (byte {} of the header)", *bad));
    return header;
  }
  // nlohmann stops at a NUL as if the input ended, so "{}\0\0" would pass;
  // serde refuses it (NUL padding written by some third-party writers).
  if (auto nul = text.find('\0'); nul != std::string::npos) {
    add(problems, ErrorCode::kSafetensorsHeaderJson,
                 fmt::format("the header has a NUL byte at byte {} (JSON allows none; padding must be spaces)", nul));
    return header;
  }
  std::vector<RawEntry> entries;
  if (auto plain = PlainHeaderParser::parse(text)) {
    header.metadata = std::move(plain->metadata);
    entries = std::move(plain->entries);
  } else if (!parse_document(text, header, entries, problems)) {
    return header;
  }
  check_layout(std::move(entries), file.size(), header, problems);
  std::sort(header.entries.begin(), header.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  return header;
}

// ---- reading through the generic interface ----

// Tensors lying in one or more safetensors files: the single-file format
// and sharded sets (chunked or not) read the same way.
class PlacedReader final : public CheckpointReader {
 public:
  PlacedReader(std::string_view format, fs::path path, std::vector<std::shared_ptr<const FileSource>> files,
               std::vector<detail::PlacedTensor> placed, TextMetadata metadata)
      : format_(format), path_(std::move(path)), files_(std::move(files)), placed_(std::move(placed)),
        metadata_(std::move(metadata)) {
    for (const auto& tensor : placed_) tensors_.push_back({tensor.name, tensor.meta});
  }

  std::string_view format_name() const override { return format_; }
  const fs::path& path() const override { return path_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TextMetadata& metadata() const override { return metadata_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    const TensorInfo* info = find(name);
    if (info == nullptr) {
      return Error(ErrorCode::kUnknownVariable, "no tensor of that name").in_variable(name).in_file(path_.string());
    }
    const auto& tensor = placed_[static_cast<std::size_t>(info - tensors_.data())];
    if (!tensor.chunks.empty()) {
      return chunked_source(tensor.chunks, tensor.meta, fmt::format("{} (tensor '{}')", path_.string(), tensor.name));
    }
    CKPT_ASSIGN_OR_RETURN(SliceSource slice, SliceSource::make(files_[tensor.file], tensor.start, tensor.meta.byte_size()));
    return std::unique_ptr<ByteSource>(std::make_unique<SliceSource>(std::move(slice)));
  }

 private:
  std::string_view format_;
  fs::path path_;
  std::vector<std::shared_ptr<const FileSource>> files_;
  std::vector<detail::PlacedTensor> placed_;  // in the same (name) order as tensors_
  std::vector<TensorInfo> tensors_;
  TextMetadata metadata_;
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
  std::uint64_t header_bytes = detail::load_le(std::span(start).first<kLengthFieldBytes>());
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
  std::vector<detail::PlacedTensor> placed;
  for (auto& entry : header.entries) {
    placed.push_back({std::move(entry.name), std::move(entry.meta), 0, header.data_start + entry.begin});
  }
  return detail::placed_reader("safetensors", path, {std::make_shared<const FileSource>(std::move(file))},
                               std::move(placed), std::move(header.metadata));
}

// ---- writing ----

class SafetensorsWriter final : public CheckpointWriter {
 public:
  SafetensorsWriter(AtomicFile output, detail::SafetensorsStaging staging)
      : output_(std::move(output)), staging_(std::move(staging)) {}

  // The layout is known from the plan: each tensor is written once, in
  // place, and the scratch file stays empty.
  Status plan(std::span<const TensorInfo> tensors) override {
    if (committed_ || planned_ || !staging_.tensors().empty()) {
      return Error(ErrorCode::kInvalidArgument, "plan() must come before the first add()").in_file(output_.name());
    }
    CKPT_ASSIGN_OR_RETURN(detail::PlannedTensors planned, detail::PlannedTensors::create(tensors, output_.name()));
    std::vector<std::size_t> members(planned.tensors().size());
    for (std::size_t i = 0; i < members.size(); ++i) members[i] = i;
    CKPT_TRY(planned.place_in(output_.file(), members, staging_.metadata()));
    planned_ = std::move(planned);
    return {};
  }
  bool concurrent_adds() const override { return planned_.has_value(); }

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    if (committed_) {
      return Error(ErrorCode::kInvalidArgument, "the writer has already committed").in_variable(name).in_file(output_.name());
    }
    if (planned_) return planned_->add(name, meta, data);
    return staging_.add(name, meta, data, output_.name());
  }

  bool stores_metadata() const override { return true; }
  Status set_metadata(const TextMetadata& entries) override {
    if (committed_) return Error(ErrorCode::kInvalidArgument, "the writer has already committed").in_file(output_.name());
    if (planned_) return Error(ErrorCode::kInvalidArgument, "metadata must be set before plan()").in_file(output_.name());
    return staging_.set_metadata(entries, output_.name());
  }

  Status commit() override {
    if (committed_) return Error(ErrorCode::kInvalidArgument, "already committed").in_file(output_.name());
    if (planned_) {
      CKPT_TRY(planned_->check_complete());
    } else {
      CKPT_TRY(staging_.write_file(output_, staging_.tensors()));
    }
    CKPT_TRY(output_.commit());
    committed_ = true;
    return {};
  }

 private:
  AtomicFile output_;
  detail::SafetensorsStaging staging_;
  std::optional<detail::PlannedTensors> planned_;
  bool committed_ = false;
};

Result<std::unique_ptr<CheckpointWriter>> create_safetensors(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(AtomicFile output, AtomicFile::create(path, std::move(options)));
  CKPT_ASSIGN_OR_RETURN(auto staging, detail::SafetensorsStaging::create(path));
  return std::unique_ptr<CheckpointWriter>(std::make_unique<SafetensorsWriter>(std::move(output), std::move(staging)));
}

// Every problem of the header, and the tensors it describes when there was none.
ValidationReport validate_safetensors(const fs::path& path, const OpenOptions& /*options*/) {
  auto file = FileSource::open(path);
  if (!file.ok()) return detail::unreadable_report(path, file.error());
  CollectAll problems;
  auto header = read_safetensors_header(*file, problems);
  ValidationReport report;
  report.path = path;
  if (header) {
    for (const auto& entry : header->entries) report.variables.push_back({entry.name, entry.meta, entry.meta.byte_size()});
  }
  report.issues = std::move(problems.issues());
  return report;
}

}  // namespace

bool is_valid_utf8(std::string_view text) { return !detail::utf8_error_offset(text).has_value(); }

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& info : all_dtypes()) {
    // kChar shares I8 with kInt8; I8 reads as kInt8.
    if (info.dtype != DType::kChar && !info.safetensors.empty() && info.safetensors == name) return info.dtype;
  }
  return std::nullopt;
}

std::optional<SafetensorsHeader> read_safetensors_header(const ByteSource& file, ProblemSink& problems) {
  InContext in_file(problems, file.name());
  TrackingSink tracked(in_file);
  SafetensorsHeader header = parse_header(file, tracked);
  if (tracked.failed()) return std::nullopt;
  return header;
}

Result<SafetensorsHeader> read_safetensors_header(const ByteSource& file) {
  FailFast problems;
  auto header = read_safetensors_header(file, problems);
  CKPT_TRY(problems.status());
  return std::move(*header);
}

namespace detail {

std::unique_ptr<CheckpointReader> placed_reader(std::string_view format, const fs::path& path,
                                                std::vector<std::shared_ptr<const FileSource>> files,
                                                std::vector<PlacedTensor> tensors, TextMetadata metadata) {
  return std::make_unique<PlacedReader>(format, path, std::move(files), std::move(tensors), std::move(metadata));
}

// An unnamed read-write file beside the destination: tensors are staged here
// because the header, written first, needs every tensor's size. It is
// unlinked at once, so nothing is left behind even after a crash.
class ScratchFile final : public ByteSink, public ByteSource {
 public:
  static Result<std::unique_ptr<ScratchFile>> create(const fs::path& requested) {
    const fs::path destination = without_trailing_separator(requested);
    fs::path directory = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    std::string pattern =
        (directory / fmt::format(".{}{}data-XXXXXX", destination.filename().string(), kStagingMarker)).string();
    int fd = ::mkstemp(pattern.data());
    if (fd < 0) return detail::io_error("create a scratch file beside", destination.string());
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
    return detail::pread_full(fd_, offset, out, name_);
  }
  const std::string& name() const override { return name_; }
  int file_descriptor() const override { return fd_; }

 private:
  ScratchFile(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  int fd_;
  std::string name_;
  std::uint64_t size_ = 0;
};

SafetensorsStaging::SafetensorsStaging(std::unique_ptr<ScratchFile> scratch) : scratch_(std::move(scratch)) {}
SafetensorsStaging::SafetensorsStaging(SafetensorsStaging&& other) noexcept = default;
SafetensorsStaging::~SafetensorsStaging() = default;

Result<SafetensorsStaging> SafetensorsStaging::create(const fs::path& destination) {
  CKPT_ASSIGN_OR_RETURN(auto scratch, ScratchFile::create(destination));
  return SafetensorsStaging(std::move(scratch));
}

Status check_safetensors_tensor(std::string_view name, const VariableMeta& meta, const std::string& output) {
  auto fail = [&](ErrorCode code, std::string message) {
    return std::move(Error(code, std::move(message)).in_variable(name).in_file(output));
  };
  if (dtype_info(meta.dtype()).safetensors.empty()) {
    return fail(ErrorCode::kSafetensorsUnknownDtype,
                fmt::format("{} has no safetensors dtype (supported: {})", dtype_name(meta.dtype()),
                            supported_dtype_list()));
  }
  if (!is_valid_utf8(name)) return fail(ErrorCode::kSafetensorsHeaderUtf8, "the name is not valid UTF-8");
  if (name == kSafetensorsMetadataKey) return fail(ErrorCode::kInvalidArgument, "the name is reserved for metadata");
  return {};
}

namespace {

Status check_data_size(std::string_view name, const VariableMeta& meta, const ByteSource& data,
                       const std::string& output) {
  if (data.size() == meta.byte_size()) return {};
  return Error(ErrorCode::kBufferSizeMismatch,
               fmt::format("expected {} bytes ({} {}), the data has {}", meta.byte_size(), dtype_name(meta.dtype()),
                           shape_to_string(meta.shape()), data.size()))
      .in_variable(name)
      .in_file(output);
}

}  // namespace

Status SafetensorsStaging::add(std::string_view name, const VariableMeta& meta, const ByteSource& data,
                               const std::string& output) {
  CKPT_TRY(check_safetensors_tensor(name, meta, output));
  CKPT_TRY(check_data_size(name, meta, data, output));
  if (!names_.emplace(name).second) {
    return Error(ErrorCode::kDuplicateName, "added twice").in_variable(name).in_file(output);
  }
  tensors_.push_back({std::string(name), meta, scratch_->size()});
  return scratch_->write_from(data, 0, data.size());
}

Status SafetensorsStaging::set_metadata(const TextMetadata& entries, const std::string& output) {
  for (const auto& [key, value] : entries) {
    if (!is_valid_utf8(key) || !is_valid_utf8(value)) {
      return Error(ErrorCode::kSafetensorsHeaderUtf8, fmt::format("the __metadata__ entry '{}' is not valid UTF-8",
                                                                  printable(key)))
          .in_file(output);
    }
  }
  for (const auto& [key, value] : entries) metadata_[key] = value;
  return {};
}

Result<std::string> safetensors_header_bytes(const std::vector<HeaderEntry>& tensors,
                                             const std::map<std::string, std::string>& metadata,
                                             const std::string& file) {
  nlohmann::ordered_json document = nlohmann::ordered_json::object();
  if (!metadata.empty()) document[std::string(kSafetensorsMetadataKey)] = metadata;
  std::uint64_t offset = 0;
  for (const auto& tensor : tensors) {
    document[std::string(tensor.name)] = {{"dtype", dtype_info(tensor.meta->dtype()).safetensors},
                                          {"shape", tensor.meta->shape()},
                                          {"data_offsets", {offset, offset + tensor.meta->byte_size()}}};
    offset += tensor.meta->byte_size();
  }
  std::string text = document.dump();
  text.append((kHeaderAlignment - text.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
  if (text.size() > kSafetensorsMaxHeaderBytes) {
    return Error(ErrorCode::kSafetensorsHeaderTooLarge,
                 fmt::format("the header would be {} bytes, over the cap of {}", text.size(), kSafetensorsMaxHeaderBytes))
        .in_file(file);
  }
  std::string bytes;
  detail::append_le(bytes, text.size(), kLengthFieldBytes);
  return bytes + text;
}

Result<SafetensorsLayout> layout_safetensors_file(std::span<const TensorInfo> tensors,
                                                  const std::map<std::string, std::string>& metadata,
                                                  const std::string& output) {
  // The reference's order: widest elements first, then by name, so every
  // tensor starts at a multiple of its element size.
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    auto a_size = dtype_size(tensors[a].meta.dtype());
    auto b_size = dtype_size(tensors[b].meta.dtype());
    return a_size != b_size ? a_size > b_size : tensors[a].name < tensors[b].name;
  });
  std::vector<HeaderEntry> entries;
  entries.reserve(order.size());
  for (std::size_t i : order) entries.push_back({tensors[i].name, &tensors[i].meta});
  SafetensorsLayout layout;
  CKPT_ASSIGN_OR_RETURN(layout.header, safetensors_header_bytes(entries, metadata, output));
  layout.start.resize(tensors.size());
  std::uint64_t offset = layout.header.size();
  for (std::size_t i : order) {
    layout.start[i] = offset;
    offset += tensors[i].meta.byte_size();
  }
  return layout;
}

Status SafetensorsStaging::write_file(ByteSink& out, std::vector<StagedTensor> tensors) const {
  std::vector<TensorInfo> infos;
  for (const auto& tensor : tensors) infos.push_back({tensor.name, tensor.meta});
  CKPT_ASSIGN_OR_RETURN(SafetensorsLayout layout, layout_safetensors_file(infos, metadata_, out.name()));
  // Written in file order: the sink appends.
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return layout.start[a] < layout.start[b]; });
  CKPT_TRY(out.write(as_bytes(layout.header)));
  for (std::size_t i : order) {
    CKPT_TRY(out.write_from(*scratch_, tensors[i].scratch_offset, tensors[i].meta.byte_size()));
  }
  return {};
}

PlannedTensors::PlannedTensors(std::vector<TensorInfo> tensors, std::string output)
    : tensors_(std::move(tensors)), places_(tensors_.size()), mutex_(std::make_unique<std::mutex>()),
      added_(tensors_.size(), false), output_(std::move(output)) {}

Result<PlannedTensors> PlannedTensors::create(std::span<const TensorInfo> tensors, const std::string& output) {
  PlannedTensors planned({tensors.begin(), tensors.end()}, output);
  for (std::size_t i = 0; i < planned.tensors_.size(); ++i) {
    const TensorInfo& tensor = planned.tensors_[i];
    CKPT_TRY(check_safetensors_tensor(tensor.name, tensor.meta, output));
    if (!planned.index_.emplace(tensor.name, i).second) {
      return Error(ErrorCode::kDuplicateName, "planned twice").in_variable(tensor.name).in_file(output);
    }
  }
  return planned;
}

Status PlannedTensors::place_in(const FileSink& file, std::span<const std::size_t> members,
                                const std::map<std::string, std::string>& metadata) {
  std::vector<TensorInfo> infos;
  for (std::size_t i : members) infos.push_back(tensors_[i]);
  CKPT_ASSIGN_OR_RETURN(SafetensorsLayout layout, layout_safetensors_file(infos, metadata, file.name()));
  CKPT_TRY(file.write_at(0, as_bytes(layout.header)));
  for (std::size_t k = 0; k < members.size(); ++k) places_[members[k]] = {&file, layout.start[k]};
  return {};
}

Status PlannedTensors::add(std::string_view name, const VariableMeta& meta, const ByteSource& data) {
  auto fail = [&](std::string message) {
    return std::move(Error(ErrorCode::kInvalidArgument, std::move(message)).in_variable(name).in_file(output_));
  };
  auto found = index_.find(std::string(name));
  if (found == index_.end()) return fail("the writer's plan has no tensor of that name");
  const std::size_t i = found->second;
  if (!(meta == tensors_[i].meta)) {
    return fail(fmt::format("planned as {} {}, added as {} {}", dtype_name(tensors_[i].meta.dtype()),
                            shape_to_string(tensors_[i].meta.shape()), dtype_name(meta.dtype()),
                            shape_to_string(meta.shape())));
  }
  CKPT_TRY(check_data_size(name, meta, data, output_));
  const Place& place = places_[i];
  if (place.file == nullptr) return fail("the writer placed no file for it");
  {
    std::lock_guard lock(*mutex_);
    if (added_[i]) return Error(ErrorCode::kDuplicateName, "added twice").in_variable(name).in_file(output_);
    added_[i] = true;
  }
  Status written = place.file->write_from_at(place.start, data, 0, data.size());
  if (!written.ok()) {
    std::lock_guard lock(*mutex_);
    added_[i] = false;
  }
  return written;
}

Status PlannedTensors::check_complete() const {
  std::lock_guard lock(*mutex_);
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    if (!added_[i]) {
      return Error(ErrorCode::kInvalidArgument, "planned but never added (or its add failed)")
          .in_variable(tensors_[i].name)
          .in_file(output_);
    }
  }
  return {};
}

const FormatHandler& safetensors_format() {
  static constexpr std::string_view kExtensions[] = {".safetensors"};
  static const FormatHandler handler{.name = "safetensors",
                                     .summary = "a safetensors file (Hugging Face)",
                                     .extensions = kExtensions,
                                     .kind = FormatKind::kFile,
                                     .detect = looks_like_safetensors,
                                     .open = open_safetensors,
                                     .create = create_safetensors,
                                     .validate = validate_safetensors,
                                     .dtype_label = [](DType dtype) { return dtype_info(dtype).safetensors; }};
  return handler;
}

}  // namespace detail
}  // namespace ckpt
