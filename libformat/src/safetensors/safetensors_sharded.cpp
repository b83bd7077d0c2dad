#include "ckpt/format/safetensors_sharded.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <sys/stat.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/safetensors.hpp"
#include "core/posix_util.hpp"
#include "registry/formats.hpp"
#include "safetensors/safetensors_staging.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kFormatName = "safetensors-sharded";

struct ShardedSet {
  fs::path index_path;
  std::vector<std::shared_ptr<const FileSource>> shards;  // null where a shard could not be read
  std::vector<std::uint64_t> data_starts;                 // where each shard's data section starts
  std::vector<detail::PlacedTensor> tensors;              // sorted by name; `file` indexes shards
  TextMetadata metadata;                                  // the first shard's __metadata__
  std::vector<ChunkedTensor> chunked;                     // assembled from chunk tensors, sorted by name
};

bool is_index_name(const std::string& name) {
  return name.size() > kShardedIndexSuffix.size() && name.ends_with(kShardedIndexSuffix);
}

// The index `path` names: the file itself, or the one index in the directory.
Result<fs::path> locate_index(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Error(ErrorCode::kNotFound, "no such file or directory").in_file(path.string());
  if (!fs::is_directory(path, ec)) {
    if (fs::is_regular_file(path, ec) && is_index_name(path.filename().string())) return path;
    return Error(ErrorCode::kShardedIndex,
                 fmt::format("expected a directory holding *{} or that index file", kShardedIndexSuffix))
        .in_file(path.string());
  }
  std::vector<fs::path> found;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_index_name(it->path().filename().string())) found.push_back(it->path());
  }
  if (ec) return detail::io_error("list directory", path.string(), ec.value());
  if (found.empty()) {
    return Error(ErrorCode::kShardedIndex, fmt::format("no *{} in the directory", kShardedIndexSuffix))
        .in_file(path.string());
  }
  if (found.size() > 1) {
    std::sort(found.begin(), found.end());
    std::vector<std::string> names;
    for (const auto& index : found) names.push_back(index.filename().string());
    return Error(ErrorCode::kShardedIndex,
                 fmt::format("several indexes ({}); open the one meant", fmt::join(names, ", ")))
        .in_file(path.string());
  }
  return found.front();
}

// The index as JSON, refusing a key given twice in any object: Python's json
// keeps the last, so two readers could disagree on a tensor's shard.
Result<json> read_index(const fs::path& index_path) {
  auto fail = [&](std::string message) {
    return Error(ErrorCode::kShardedIndex, std::move(message)).in_file(index_path.string());
  };
  CKPT_ASSIGN_OR_RETURN(FileSource file, FileSource::open(index_path));
  if (file.size() > kShardedMaxIndexBytes) {
    return fail(fmt::format("{} bytes, over the cap of {}", file.size(), kShardedMaxIndexBytes));
  }
  std::string text(file.size(), '\0');
  CKPT_TRY(file.read_at(0, std::as_writable_bytes(std::span(text))));
  std::vector<std::unordered_set<std::string>> keys_of_open_objects;
  std::string duplicate;
  auto watch_keys = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      keys_of_open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end && !keys_of_open_objects.empty()) {
      keys_of_open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !keys_of_open_objects.empty() && duplicate.empty() &&
               !keys_of_open_objects.back().insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json document;
  try {
    document = json::parse(text, watch_keys);
  } catch (const json::exception& error) {
    return fail(fmt::format("not valid JSON: {}", error.what()));
  }
  if (!duplicate.empty()) return fail(fmt::format("the key '{}' appears twice", duplicate));
  if (!document.is_object()) return fail(fmt::format("expected a JSON object, found a JSON {}", document.type_name()));
  return document;
}

// metadata.total_size when given: Python writes an integer; a float with no
// fraction is read as one.
std::optional<std::uint64_t> read_total_size(const json& index, const std::string& index_name, ProblemSink& problems) {
  auto metadata = index.find("metadata");
  if (metadata == index.end() || metadata->is_null()) return std::nullopt;
  auto bad = [&](std::string why) {
    problems.error(Error(ErrorCode::kShardedIndex, std::move(why)).in_file(index_name));
    return std::nullopt;
  };
  if (!metadata->is_object()) return bad(fmt::format("\"metadata\" must be an object, found a JSON {}", metadata->type_name()));
  auto total = metadata->find("total_size");
  if (total == metadata->end()) return std::nullopt;
  if (total->is_number_unsigned()) return total->get<std::uint64_t>();
  if (total->is_number_float()) {
    double value = total->get<double>();
    if (value >= 0 && value < 0x1p64 && value == static_cast<double>(static_cast<std::uint64_t>(value))) {
      return static_cast<std::uint64_t>(value);
    }
  }
  return bad(fmt::format("\"total_size\" must be a non-negative integer, found {}", total->dump()));
}

// Opens shard `file` of `directory`: a plain name, a regular file, not a
// link out of the directory, never a FIFO (checked before opening).
Result<FileSource> open_shard(const fs::path& directory, const std::string& file, const std::string& index_name,
                              std::string_view example_tensor) {
  if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
      file.find('\0') != std::string::npos) {
    return Error(ErrorCode::kUnsafeName,
                 fmt::format("shard '{}' is not a plain file name inside the directory", file))
        .in_variable(example_tensor)
        .in_file(index_name);
  }
  const fs::path path = directory / file;
  struct stat link_info {};
  struct stat info {};
  if (::lstat(path.c_str(), &link_info) != 0 || ::stat(path.c_str(), &info) != 0) {
    if (errno != ENOENT) return detail::io_error("stat", path.string());
    return Error(ErrorCode::kShardedMissingShard, fmt::format("missing: the weight_map puts '{}' in it", example_tensor))
        .in_file(path.string());
  }
  if (S_ISLNK(link_info.st_mode)) {
    std::error_code ec;
    const fs::path root = fs::canonical(directory, ec);
    const fs::path target = fs::weakly_canonical(path, ec);
    auto [root_end, unused] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
    if (ec || root_end != root.end() || target == root) {
      return Error(ErrorCode::kEscapingSymlink,
                   fmt::format("symbolic link to '{}' leaves the directory; refused", target.string()))
          .in_file(path.string());
    }
  }
  if (!S_ISREG(info.st_mode)) return Error(ErrorCode::kDataNotFile, "not a regular file").in_file(path.string());
  return FileSource::open(path);
}

// The header of one shard: with every problem noted when collecting.
std::optional<SafetensorsHeader> read_shard_header(const FileSource& shard, ProblemSink& problems, bool& stop) {
  TrackingSink tracked(problems);
  auto header = read_safetensors_header(shard, tracked);
  stop = tracked.stopped();
  return header;
}

const SafetensorsEntry* find_entry(const SafetensorsHeader& header, std::string_view name) {
  auto it = std::lower_bound(header.entries.begin(), header.entries.end(), name,
                             [](const SafetensorsEntry& entry, std::string_view key) { return entry.name < key; });
  return it != header.entries.end() && it->name == name ? &*it : nullptr;
}

std::optional<Shape> read_dims(const json& value) {
  if (!value.is_array()) return std::nullopt;
  Shape dims;
  for (const auto& dim : value) {
    if (!dim.is_number_unsigned() || dim.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    dims.push_back(dim.get<std::int64_t>());
  }
  return dims;
}

// One entry of chunked_tensors: the tensor assembled from its chunk tensors
// (taken from `set.tensors`, marked in `used`), or the reason it cannot be.
Result<ChunkedTensor> read_chunked_entry(const std::string& name, const json& entry, const std::vector<std::string>& files,
                                         const std::map<std::string_view, std::size_t>& stored, std::vector<bool>& used,
                                         const ShardedSet& set) {
  auto bad = [&](std::string why) { return Error(ErrorCode::kShardedChunks, std::move(why)).in_variable(name); };
  if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() || !entry.contains("chunks") ||
      !entry["chunks"].is_array() || entry["chunks"].empty()) {
    return bad("expected {\"dtype\": \"F32\", \"shape\": [...], \"chunks\": [...]} with at least one chunk");
  }
  const auto dtype = dtype_from_safetensors(entry["dtype"].get<std::string>());
  const auto shape = entry.contains("shape") ? read_dims(entry["shape"]) : std::nullopt;
  if (!dtype || !shape) return bad(fmt::format("dtype {} or shape {} unusable", entry["dtype"].dump(), entry.value("shape", json()).dump()));
  auto meta = VariableMeta::make(*dtype, *shape);
  if (!meta.ok()) return bad(meta.error().message());
  if (stored.contains(name)) return bad("stored whole as well as in chunks");
  ChunkedTensor tensor{name, std::move(meta).value(), {}};
  std::vector<TensorBox> boxes;
  for (const auto& chunk : entry["chunks"]) {
    const auto offset = chunk.is_object() && chunk.contains("offset") ? read_dims(chunk["offset"]) : std::nullopt;
    const auto chunk_shape = chunk.is_object() && chunk.contains("shape") ? read_dims(chunk["shape"]) : std::nullopt;
    const auto range = chunk.is_object() && chunk.contains("data_offsets") ? read_dims(chunk["data_offsets"]) : std::nullopt;
    if (!offset || !chunk_shape || !range || range->size() != 2 || !chunk.contains("tensor") ||
        !chunk["tensor"].is_string() || !chunk.contains("file") || !chunk["file"].is_string()) {
      return bad(fmt::format("a chunk must be {{\"tensor\", \"offset\", \"shape\", \"file\", \"data_offsets\"}}, found {}", chunk.dump()));
    }
    const std::string stored_name = chunk["tensor"].get<std::string>();
    auto found = stored.find(stored_name);
    if (found == stored.end()) return bad(fmt::format("chunk '{}' is not a tensor of the weight_map's shards", stored_name));
    if (used[found->second]) return bad(fmt::format("chunk '{}' is used twice", stored_name));
    used[found->second] = true;
    const detail::PlacedTensor& placed = set.tensors[found->second];
    const std::uint64_t begin = placed.start - set.data_starts[placed.file];
    const std::string expected_file = files[placed.file];
    if (chunk["file"].get<std::string>() != expected_file || placed.meta.dtype() != *dtype ||
        placed.meta.shape() != *chunk_shape || static_cast<std::uint64_t>((*range)[0]) != begin ||
        static_cast<std::uint64_t>((*range)[1]) != begin + placed.meta.byte_size()) {
      return bad(fmt::format("chunk '{}' is stored as {} {} at [{}, {}) of {}; the index says {} {} at {} of {}", stored_name,
                             dtype_info(placed.meta.dtype()).safetensors,
                             shape_to_string(placed.meta.shape()), begin, begin + placed.meta.byte_size(), expected_file,
                             entry["dtype"].get<std::string>(), shape_to_string(*chunk_shape), chunk["data_offsets"].dump(),
                             chunk["file"].get<std::string>()));
    }
    boxes.push_back({*offset, *chunk_shape});
    tensor.chunks.push_back({boxes.back(), set.shards[placed.file], placed.start});
  }
  if (auto problem = tiling_problem(tensor.meta.shape(), boxes); !problem.empty()) return bad("chunks: " + problem);
  return tensor;
}

// Replaces the chunk tensors the index's chunked_tensors name by the whole
// tensors they tile (spec/collective.md).
void gather_chunks(const json& index, const std::vector<std::string>& files, const std::string& index_name,
                   ShardedSet& set, ProblemSink& problems) {
  auto listed = index.find(kChunkedTensorsKey);
  if (listed == index.end()) return;
  if (!listed->is_object()) {
    problems.error(Error(ErrorCode::kShardedChunks, fmt::format("\"{}\" must be an object, found a JSON {}",
                                                                 kChunkedTensorsKey, listed->type_name()))
                       .in_file(index_name));
    return;
  }
  std::map<std::string_view, std::size_t> stored;
  for (std::size_t i = 0; i < set.tensors.size(); ++i) stored.emplace(set.tensors[i].name, i);
  std::vector<bool> used(set.tensors.size());
  for (const auto& [name, entry] : listed->items()) {
    auto tensor = read_chunked_entry(name, entry, files, stored, used, set);
    if (!tensor.ok()) {
      if (!problems.error(std::move(std::move(tensor).error().in_file(index_name)))) return;
      continue;
    }
    set.chunked.push_back(std::move(tensor).value());
  }
  std::vector<detail::PlacedTensor> whole;
  for (std::size_t i = 0; i < set.tensors.size(); ++i) {
    if (!used[i]) whole.push_back(std::move(set.tensors[i]));
  }
  set.tensors = std::move(whole);
  std::sort(set.chunked.begin(), set.chunked.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
}

// The one walk behind both open (stops at the first problem) and validate
// (collects them all): the index, every shard it names, and the checks
// across them (spec/safetensors-sharded.md).
ShardedSet scan_set(const fs::path& path, ProblemSink& problems) {
  ShardedSet set;
  auto index_path = locate_index(path);
  if (!index_path.ok()) {
    problems.error(std::move(index_path).error());
    return set;
  }
  set.index_path = std::move(index_path).value();
  const std::string index_name = set.index_path.string();
  auto index = read_index(set.index_path);
  if (!index.ok()) {
    problems.error(std::move(index).error());
    return set;
  }
  auto index_error = [&](std::string message) {
    return std::move(Error(ErrorCode::kShardedIndex, std::move(message)).in_file(index_name));
  };
  auto weight_map = index->find("weight_map");
  if (weight_map == index->end() || !weight_map->is_object() || weight_map->empty()) {
    problems.error(index_error("expected \"weight_map\": {\"tensor name\": \"shard file name\", ...}, not empty"));
    return set;
  }
  TrackingSink total_size_problems(problems);
  const std::optional<std::uint64_t> total_size = read_total_size(*index, index_name, total_size_problems);
  if (total_size_problems.stopped()) return set;

  // The shards in order of first mention, and where the index puts each tensor.
  std::vector<std::string> files;
  std::unordered_map<std::string, std::size_t> file_numbers;
  std::map<std::string, std::size_t, std::less<>> placement;
  std::vector<std::string> example_tensors;
  for (const auto& [name, file] : weight_map->items()) {
    if (!file.is_string()) {
      if (!problems.error(index_error(fmt::format("the shard must be a file name, found {}", file.dump())).in_variable(name))) {
        return set;
      }
      continue;
    }
    auto [it, added] = file_numbers.emplace(file.get<std::string>(), files.size());
    if (added) {
      files.push_back(it->first);
      example_tensors.push_back(name);
    }
    placement.emplace(name, it->second);
  }

  const fs::path directory = set.index_path.has_parent_path() ? set.index_path.parent_path() : fs::path(".");
  std::vector<std::optional<SafetensorsHeader>> headers(files.size());
  set.shards.resize(files.size());
  set.data_starts.resize(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    auto shard = open_shard(directory, files[i], index_name, example_tensors[i]);
    if (!shard.ok()) {
      if (!problems.error(std::move(shard).error())) return set;
      continue;
    }
    bool stop = false;
    headers[i] = read_shard_header(*shard, problems, stop);
    if (stop) return set;
    if (headers[i]) {
      set.shards[i] = std::make_shared<const FileSource>(std::move(shard).value());
      set.data_starts[i] = headers[i]->data_start;
    }
  }
  if (!headers.empty() && headers.front()) set.metadata = headers.front()->metadata;

  // Each tensor the index places must be in its shard...
  std::map<std::string_view, std::vector<std::size_t>> holders;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (!headers[i]) continue;
    for (const auto& entry : headers[i]->entries) holders[entry.name].push_back(i);
  }
  bool every_tensor_found = std::all_of(headers.begin(), headers.end(), [](const auto& h) { return h.has_value(); });
  std::uint64_t found_bytes = 0;
  for (const auto& [name, shard] : placement) {
    if (!headers[shard]) continue;
    const SafetensorsEntry* entry = find_entry(*headers[shard], name);
    if (entry == nullptr) {
      every_tensor_found = false;
      auto elsewhere = holders.find(name);
      std::string where = elsewhere == holders.end() ? "no shard holds it"
                                                     : fmt::format("it is in {}", files[elsewhere->second.front()]);
      Error misplaced(ErrorCode::kShardedMisplacedTensor,
                      fmt::format("the weight_map puts it in {}, which does not hold it; {}", files[shard], where));
      if (!problems.error(std::move(misplaced.in_variable(name).in_file(index_name)))) return set;
      continue;
    }
    found_bytes += entry->meta.byte_size();
    set.tensors.push_back({name, entry->meta, shard, headers[shard]->data_start + entry->begin});
  }
  // ...in that shard only, and no shard may hold more than the index names.
  for (const auto& [name, shards] : holders) {
    if (shards.size() > 1) {
      Error twice(ErrorCode::kShardedDuplicateTensor,
                  fmt::format("held by both {} and {}", files[shards[0]], files[shards[1]]));
      if (!problems.error(std::move(twice.in_variable(name).in_file((directory / files[shards[1]]).string())))) return set;
    } else if (!placement.contains(name)) {
      Error unlisted(ErrorCode::kShardedUnlistedTensor, "the shard holds it, the weight_map does not name it");
      if (!problems.error(std::move(unlisted.in_variable(name).in_file((directory / files[shards[0]]).string())))) {
        return set;
      }
    }
  }
  if (total_size && every_tensor_found && *total_size != found_bytes) {
    problems.error(Error(ErrorCode::kShardedTotalSize,
                        fmt::format("metadata.total_size is {}, the tensors hold {} bytes", *total_size, found_bytes))
                      .in_file(index_name));
  }
  gather_chunks(*index, files, index_name, set, problems);
  return set;
}

bool looks_like_sharded(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return is_index_name(path.filename().string());
  if (!fs::is_directory(path, ec)) return false;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_index_name(it->path().filename().string())) return true;
  }
  return false;
}

// Every tensor of the set as its stored boxes, sorted by name.
std::vector<ChunkedTensor> all_as_chunks(ShardedSet set) {
  std::vector<ChunkedTensor> tensors = std::move(set.chunked);
  for (auto& placed : set.tensors) {
    TensorBox whole{Shape(placed.meta.shape().size(), 0), placed.meta.shape()};
    tensors.push_back({std::move(placed.name), placed.meta, {{std::move(whole), set.shards[placed.file], placed.start}}});
  }
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return tensors;
}

Result<std::unique_ptr<CheckpointReader>> open_sharded(const fs::path& path, const OpenOptions& /*options*/) {
  FailFast problems;
  ShardedSet set = scan_set(path, problems);
  CKPT_TRY(problems.status());
  if (!set.chunked.empty()) {
    for (auto& tensor : set.chunked) set.tensors.push_back({tensor.name, tensor.meta, 0, 0, std::move(tensor.chunks)});
    std::sort(set.tensors.begin(), set.tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  }
  return detail::placed_reader(kFormatName, path, std::move(set.shards), std::move(set.tensors),
                               std::move(set.metadata));
}

ValidationReport validate_sharded(const fs::path& path, const OpenOptions& /*options*/) {
  CollectAll problems;
  ShardedSet set = scan_set(path, problems);
  ValidationReport report;
  report.path = path;
  report.issues = std::move(problems.issues());
  for (const auto& tensor : all_as_chunks(std::move(set))) {
    report.variables.push_back(VariableInfo{tensor.name, tensor.meta, tensor.meta.byte_size()});
  }
  detail::require_some_variable(report, "tensor in the weight_map");
  return report;
}

// ---- writing ----

// Splits the tensors as huggingface_hub does, writes the shards and the
// index (last) into a staging directory, and renames that directory into
// place: the set appears whole or not at all. With a plan the shards are
// laid out at once and each tensor is written once, into its shard;
// without one every tensor is staged and the shards are written at commit.
class ShardedWriter final : public CheckpointWriter {
 public:
  ShardedWriter(AtomicDirectory directory, detail::SafetensorsStaging staging, std::uint64_t max_shard_bytes)
      : directory_(std::move(directory)), staging_(std::move(staging)), max_shard_bytes_(max_shard_bytes) {}

  Status plan(std::span<const TensorInfo> tensors) override {
    if (committed_ || planned_ || !staging_.tensors().empty()) return refuse("plan() must come before the first add()");
    if (tensors.empty()) return refuse("a sharded set needs at least one tensor");
    CKPT_ASSIGN_OR_RETURN(detail::PlannedTensors planned,
                          detail::PlannedTensors::create(tensors, directory_.destination().string()));
    const auto shards = plan_of(tensors);
    shard_files_.reserve(shards.size());  // PlannedTensors keeps pointers to them
    for (std::size_t shard = 0; shard < shards.size(); ++shard) {
      CKPT_ASSIGN_OR_RETURN(FileSink sink, directory_.create_file(shard_file_name(shard, shards.size())));
      shard_files_.push_back(std::move(sink));
      CKPT_TRY(planned.place_in(shard_files_.back(), shards[shard], staging_.metadata()));
    }
    planned_ = std::move(planned);
    return {};
  }
  bool concurrent_adds() const override { return planned_.has_value(); }

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    if (committed_) return refuse("the writer has already committed");
    if (planned_) return planned_->add(name, meta, data);
    return staging_.add(name, meta, data, directory_.destination().string());
  }

  bool stores_metadata() const override { return true; }
  Status set_metadata(const TextMetadata& entries) override {
    if (committed_) return refuse("the writer has already committed");
    if (planned_) return refuse("metadata must be set before plan()");
    return staging_.set_metadata(entries, directory_.destination().string());
  }

  Status commit() override {
    if (committed_) return refuse("already committed");
    if (planned_) {
      CKPT_TRY(planned_->check_complete());
      for (FileSink& shard : shard_files_) CKPT_TRY(shard.finish());
      CKPT_TRY(write_index(planned_->tensors(), plan_of(planned_->tensors())));
    } else {
      const auto& staged = staging_.tensors();
      if (staged.empty()) return refuse("a sharded set needs at least one tensor");
      std::vector<TensorInfo> tensors;
      for (const auto& tensor : staged) tensors.push_back({tensor.name, tensor.meta});
      const auto shards = plan_of(tensors);
      for (std::size_t shard = 0; shard < shards.size(); ++shard) {
        std::vector<detail::StagedTensor> members;
        for (std::size_t index : shards[shard]) members.push_back(staged[index]);
        CKPT_ASSIGN_OR_RETURN(FileSink sink, directory_.create_file(shard_file_name(shard, shards.size())));
        CKPT_TRY(staging_.write_file(sink, std::move(members)));
        CKPT_TRY(sink.finish());
      }
      CKPT_TRY(write_index(tensors, shards));
    }
    CKPT_TRY(directory_.commit());
    committed_ = true;
    return {};
  }

 private:
  std::vector<std::vector<std::size_t>> plan_of(std::span<const TensorInfo> tensors) const {
    std::vector<std::uint64_t> sizes;
    for (const auto& tensor : tensors) sizes.push_back(tensor.meta.byte_size());
    return plan_shards(sizes, max_shard_bytes_);
  }

  Status write_index(std::span<const TensorInfo> tensors, const std::vector<std::vector<std::size_t>>& shards) {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    std::uint64_t total_size = 0;
    for (std::size_t shard = 0; shard < shards.size(); ++shard) {
      const std::string file = shard_file_name(shard, shards.size());
      for (std::size_t index : shards[shard]) {
        weight_map[tensors[index].name] = file;
        total_size += tensors[index].meta.byte_size();
      }
    }
    nlohmann::ordered_json index = nlohmann::ordered_json::object();
    index["metadata"]["total_size"] = total_size;
    index["weight_map"] = std::move(weight_map);
    // json.dump(index, f, indent=2) in Python: two-space indent, non-ASCII escaped.
    const std::string text = index.dump(2, ' ', /*ensure_ascii=*/true);
    if (text.size() > kShardedMaxIndexBytes) {
      return Error(ErrorCode::kShardedIndex,
                   fmt::format("the index would be {} bytes, over the cap of {}", text.size(), kShardedMaxIndexBytes))
          .in_file(directory_.destination().string());
    }
    CKPT_ASSIGN_OR_RETURN(FileSink index_sink, directory_.create_file(std::string(kShardedIndexName)));
    CKPT_TRY(index_sink.write(as_bytes(text)));
    return index_sink.finish();
  }

  Error refuse(std::string_view why) const {
    return std::move(Error(ErrorCode::kInvalidArgument, std::string(why)).in_file(directory_.destination().string()));
  }

  AtomicDirectory directory_;
  detail::SafetensorsStaging staging_;
  std::uint64_t max_shard_bytes_;
  std::optional<detail::PlannedTensors> planned_;
  std::vector<FileSink> shard_files_;  // with a plan: written in place, finished at commit
  bool committed_ = false;
};

Result<std::unique_ptr<CheckpointWriter>> create_sharded(const fs::path& path, WriteOptions options) {
  if (options.max_shard_bytes == 0) return Error(ErrorCode::kInvalidArgument, "the maximum shard size must be over 0");
  const std::uint64_t max_shard_bytes = options.max_shard_bytes;
  CKPT_ASSIGN_OR_RETURN(AtomicDirectory directory, AtomicDirectory::create(path, std::move(options)));
  CKPT_ASSIGN_OR_RETURN(auto staging, detail::SafetensorsStaging::create(directory.destination()));
  return std::unique_ptr<CheckpointWriter>(
      std::make_unique<ShardedWriter>(std::move(directory), std::move(staging), max_shard_bytes));
}

}  // namespace

Result<std::uint64_t> parse_byte_size(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("size '{}': {}; expected a number and KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, "
                             "TiB or no unit (bytes), such as 5GB or 500MB",
                             text, why));
  };
  auto trimmed = text;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.remove_prefix(1);
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.remove_suffix(1);
  const auto number_end = std::min(trimmed.find_first_not_of("0123456789."), trimmed.size());
  const std::string_view number = trimmed.substr(0, number_end);
  std::string unit(trimmed.substr(number_end));
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1},          {"B", 1},          {"KB", 1'000},       {"MB", 1'000'000}, {"GB", 1'000'000'000},
      {"TB", 1'000'000'000'000}, {"KIB", 1ULL << 10}, {"MIB", 1ULL << 20}, {"GIB", 1ULL << 30}, {"TIB", 1ULL << 40}};
  const auto* found = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const auto& u) { return u.first == unit; });
  if (found == std::end(kUnits)) return bad(fmt::format("unknown unit '{}'", unit));
  const auto dot = number.find('.');
  const std::string_view whole = number.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? std::string_view() : number.substr(dot + 1);
  if ((whole.empty() && fraction.empty()) || fraction.find('.') != std::string_view::npos) return bad("not a number");
  // Digits past the 18th cannot change a whole byte count below 2^64 by much
  // more than truncation does; dropping them keeps the arithmetic in 128 bits.
  fraction = fraction.substr(0, 18);
  unsigned __int128 whole_value = 0;
  for (char c : whole) {
    whole_value = whole_value * 10 + static_cast<unsigned>(c - '0');
    if (whole_value > UINT64_MAX) return bad("too large");
  }
  unsigned __int128 fraction_value = 0, scale = 1;
  for (char c : fraction) {
    fraction_value = fraction_value * 10 + static_cast<unsigned>(c - '0');
    scale *= 10;
  }
  const unsigned __int128 bytes = whole_value * found->second + fraction_value * found->second / scale;
  if (bytes > UINT64_MAX) return bad("too large");
  if (bytes == 0) return bad("the size must be at least one byte");
  return static_cast<std::uint64_t>(bytes);
}

std::vector<std::vector<std::size_t>> plan_shards(std::span<const std::uint64_t> tensor_bytes,
                                                  std::uint64_t max_shard_bytes) {
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_bytes = 0;
  for (std::size_t i = 0; i < tensor_bytes.size(); ++i) {
    if (tensor_bytes[i] > max_shard_bytes) {
      shards.push_back({i});
      continue;
    }
    if (tensor_bytes[i] > max_shard_bytes - current_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes += tensor_bytes[i];
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

std::string chunk_tensor_name(std::string_view name, const Shape& offset) {
  return fmt::format("{}@{}", name, fmt::join(offset, ","));
}

Result<std::vector<ChunkedTensor>> open_sharded_chunks(const fs::path& path) {
  FailFast problems;
  ShardedSet set = scan_set(path, problems);
  CKPT_TRY(problems.status());
  return all_as_chunks(std::move(set));
}

std::string shard_file_name(std::size_t index, std::size_t count) {
  if (count == 1) return "model.safetensors";
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

namespace detail {

const FormatHandler& safetensors_sharded_format() {
  static const FormatHandler handler{.name = kFormatName,
                                     .summary = "a Hugging Face sharded safetensors set: shards + model.safetensors.index.json",
                                     .extensions = {},
                                     .kind = FormatKind::kDirectory,
                                     .detect = looks_like_sharded,
                                     .open = open_sharded,
                                     .create = create_sharded,
                                     .validate = validate_sharded,
                                     .dtype_label = [](DType dtype) { return dtype_info(dtype).safetensors; }};
  return handler;
}

}  // namespace detail
}  // namespace ckpt
