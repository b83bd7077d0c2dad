#include "ckpt/format/torch_file.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "ckpt/format/npy.hpp"
#include "ckpt/format/problems.hpp"
#include "pickle/pickle_allowlist.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kRecordAlignment = 64;  // torch's kFieldAlignment
constexpr std::uint64_t kMaxSmallRecord = 1 << 20;  // byteorder, version: a few bytes

Error torch_error(ErrorCode code, std::string message, const fs::path& path) {
  return Error(code, std::move(message)).in_file(path.string());
}

Result<std::string> read_record(const ZipReader& zip, const ZipEntry& entry, std::uint64_t limit) {
  if (entry.size > limit) return Error(ErrorCode::kPickleLimit, fmt::format("record '{}' is {} bytes, the limit is {}", entry.name, entry.size, limit));
  CKPT_ASSIGN_OR_RETURN(auto source, zip.open_member(entry));
  std::string text(static_cast<std::size_t>(entry.size), '\0');
  CKPT_TRY(source->read_at(0, std::as_writable_bytes(std::span(text))));
  return text;
}

// Records must not overlap: a stored member is its local header and data.
Status check_no_overlap(const std::vector<ZipEntry>& entries, const fs::path& path) {
  std::vector<const ZipEntry*> sorted;
  for (const ZipEntry& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->local_header_offset < b->local_header_offset; });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    const ZipEntry& before = *sorted[i - 1];
    if (before.local_header_offset + 30 + before.compressed_size > sorted[i]->local_header_offset) {
      return torch_error(ErrorCode::kZipFormat,
                         fmt::format("members '{}' and '{}' overlap", before.name, sorted[i]->name), path);
    }
  }
  return {};
}

// Highest element index a view touches + 1, or nullopt on overflow.
std::optional<std::uint64_t> view_extent(const pickle::TorchTensorInfo& view) {
  unsigned __int128 last = view.storage_offset;
  for (std::size_t d = 0; d < view.shape.size(); ++d) {
    if (view.shape[d] == 0) return view.storage_offset;  // empty: touches nothing
    last += static_cast<unsigned __int128>(view.shape[d] - 1) * static_cast<std::uint64_t>(view.stride[d]);
  }
  if (last >= UINT64_MAX) return std::nullopt;
  return static_cast<std::uint64_t>(last + 1);
}

bool is_contiguous(const pickle::TorchTensorInfo& view) {
  std::int64_t expected = 1;
  for (std::size_t d = view.shape.size(); d-- > 0;) {
    if (view.shape[d] != 1 && view.stride[d] != expected) return false;
    expected *= view.shape[d];
  }
  return true;
}

// A strided view read in C order without materialising it: each read gathers
// the elements it covers through a window of the storage. The window is the
// whole span the view covers when that is small (one load serves every read,
// transposes included), else a small sliding one, so memory stays bounded
// by kMaxWindowBytes whatever the view's size (a stride-0 view of 128 GiB
// over 16 bytes costs 16 bytes). Like a zip member, not for concurrent reads.
class StridedViewSource final : public ByteSource {
 public:
  StridedViewSource(std::shared_ptr<const ByteSource> storage, const pickle::TorchTensorInfo& view, std::size_t element,
                    std::uint64_t size, std::string name)
      : storage_(std::move(storage)), view_(view), element_(element), size_(size), name_(std::move(name)) {
    std::uint64_t covered = (*view_extent(view_) - view_.storage_offset) * element_;
    window_limit_ = covered <= kMaxCoveredBytes ? covered : kSlidingWindowBytes;
  }

  std::uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }

  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    CKPT_TRY(check_range(*this, offset, out.size()));
    if (out.empty()) return {};
    // The multi-index of the first element, then an odometer in C order.
    std::vector<std::int64_t> index(view_.shape.size(), 0);
    std::uint64_t first = offset / element_;
    for (std::size_t d = index.size(); d-- > 0;) {
      auto extent = static_cast<std::uint64_t>(view_.shape[d]);
      index[d] = static_cast<std::int64_t>(first % extent);
      first /= extent;
    }
    std::size_t skip = static_cast<std::size_t>(offset % element_);
    for (std::size_t written = 0; written < out.size();) {
      std::uint64_t at = view_.storage_offset;
      for (std::size_t d = 0; d < index.size(); ++d) at += static_cast<std::uint64_t>(index[d] * view_.stride[d]);
      CKPT_ASSIGN_OR_RETURN(const std::byte* bytes, element_at(at));
      std::size_t piece = std::min(element_ - skip, out.size() - written);
      std::copy_n(bytes + skip, piece, out.begin() + static_cast<std::ptrdiff_t>(written));
      written += piece;
      skip = 0;
      for (std::size_t d = index.size(); d-- > 0;) {
        if (++index[d] < view_.shape[d]) break;
        index[d] = 0;
      }
    }
    return {};
  }

 private:
  static constexpr std::uint64_t kMaxCoveredBytes = 64ull << 20;
  static constexpr std::uint64_t kSlidingWindowBytes = 64ull << 10;

  // The bytes of storage element `at`, loading the window that starts there on a miss.
  Result<const std::byte*> element_at(std::uint64_t at) const {
    std::uint64_t byte = at * element_;
    if (window_.empty() || byte < window_start_ || byte + element_ > window_start_ + window_.size()) {
      std::uint64_t length = std::min<std::uint64_t>(window_limit_, storage_->size() - byte);
      window_.resize(static_cast<std::size_t>(std::max<std::uint64_t>(length, element_)));
      window_start_ = byte;
      if (auto read = storage_->read_at(byte, window_); !read.ok()) {
        window_.clear();
        return std::move(read).error();
      }
    }
    return window_.data() + (byte - window_start_);
  }

  std::shared_ptr<const ByteSource> storage_;
  pickle::TorchTensorInfo view_;
  std::size_t element_;
  std::uint64_t size_;
  std::string name_;
  std::uint64_t window_limit_ = 0;
  mutable std::vector<std::byte> window_;
  mutable std::uint64_t window_start_ = 0;
};

// torch/serialization.py: MAGIC_NUMBER 0x1950a86a20f9469cfc6c, pickled as
// LONG1 with its 10 bytes little-endian, and PROTOCOL_VERSION.
constexpr std::array<std::uint8_t, 10> kLegacyMagic = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr std::int64_t kLegacyProtocolVersion = 1001;
constexpr std::uint64_t kFirstPickleWindow = 1 << 20;

// The length of the magic-number pickle at the start of `head`: PROTO n,
// an optional protocol-4 FRAME, LONG1 of the 10 magic bytes, STOP; 0 if absent.
std::uint64_t legacy_magic_length(std::span<const std::uint8_t> head) {
  std::size_t at = 2;
  if (head.size() < at || head[0] != 0x80 || head[1] < 2 || head[1] > 5) return 0;
  if (head.size() > at && head[at] == 0x95) at += 9;  // FRAME with its 8-byte length
  if (head.size() < at + 2 + kLegacyMagic.size() + 1 || head[at] != 0x8a || head[at + 1] != kLegacyMagic.size()) return 0;
  if (!std::equal(kLegacyMagic.begin(), kLegacyMagic.end(), head.begin() + static_cast<std::ptrdiff_t>(at + 2))) return 0;
  at += 2 + kLegacyMagic.size();
  return head[at] == '.' ? at + 1 : 0;
}

std::uint64_t legacy_magic_length(const ByteSource& file) {
  std::array<std::uint8_t, 32> head{};
  std::size_t length = static_cast<std::size_t>(std::min<std::uint64_t>(file.size(), head.size()));
  if (!file.read_at(0, std::as_writable_bytes(std::span(head).first(length))).ok()) return 0;
  return legacy_magic_length(std::span<const std::uint8_t>(head).first(length));
}

}  // namespace

bool is_legacy_torch(const ByteSource& file) { return legacy_magic_length(file) != 0; }

std::optional<TorchFile> TorchFile::open(const fs::path& path, ProblemSink& problems, const pickle::PicklePolicy& policy) {
  TorchFile file;
  file.path_ = path;
  auto source = FileSource::open(path);
  if (!source.ok()) {
    problems.error(std::move(source).error());
    return std::nullopt;
  }
  file.file_ = std::make_shared<const FileSource>(std::move(source).value());
  TrackingSink tensor_problems(problems);
  Status opened = is_legacy_torch(*file.file_) ? file.open_legacy(tensor_problems, policy)
                                                : file.open_zip(tensor_problems, policy);
  if (!opened.ok()) {
    problems.error(std::move(opened).error());
    return std::nullopt;
  }
  if (tensor_problems.stopped()) return std::nullopt;
  std::sort(file.tensors_.begin(), file.tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < file.tensors_.size(); ++i) {
    if (file.tensors_[i - 1].name == file.tensors_[i].name) {
      problems.error(std::move(torch_error(ErrorCode::kDuplicateName, "two tensors have this name", path).in_variable(file.tensors_[i].name)));
      return std::nullopt;
    }
  }
  return file;
}

Result<TorchFile> TorchFile::open(const fs::path& path, const pickle::PicklePolicy& policy) {
  FailFast problems;
  auto file = open(path, problems, policy);
  CKPT_TRY(problems.status());
  return std::move(*file);
}

Status TorchFile::open_zip(ProblemSink& problems, const pickle::PicklePolicy& policy) {
  const fs::path& path = path_;
  auto zip = ZipReader::open(*file_);
  if (!zip.ok()) return std::move(std::move(zip).error().in_file(path.string()));
  zip_ = std::make_unique<ZipReader>(std::move(zip).value());
  const auto& entries = zip_->entries();
  if (entries.empty()) return torch_error(ErrorCode::kNotACheckpoint, "an empty zip is not a torch file", path);
  // The root folder is the first entry's; every record must be inside it.
  auto slash = entries.front().name.find('/');
  if (slash == std::string::npos) return torch_error(ErrorCode::kNotACheckpoint, "records are not in a root folder", path);
  root_ = entries.front().name.substr(0, slash + 1);
  for (const ZipEntry& entry : entries) {
    if (!entry.name.starts_with(root_) || entry.name.find("..") != std::string::npos) {
      return torch_error(ErrorCode::kZipUnsafeName,
                         fmt::format("record '{}' is outside the archive's root '{}'", entry.name, root_), path);
    }
  }
  CKPT_TRY(check_no_overlap(entries, path));
  const ZipEntry* pickle_entry = zip_->find(root_ + "data.pkl");
  if (pickle_entry == nullptr) {
    return torch_error(ErrorCode::kNotACheckpoint, fmt::format("no {}data.pkl: not a torch.save file", root_), path);
  }
  if (const ZipEntry* byteorder = zip_->find(root_ + "byteorder")) {
    CKPT_ASSIGN_OR_RETURN(std::string order, read_record(*zip_, *byteorder, kMaxSmallRecord));
    if (order != "little") {
      return torch_error(ErrorCode::kUnsupportedLayout, fmt::format("byteorder is '{}'; only little is read", order), path);
    }
  }
  // torch.jit.save adds constants.pkl (torch's own _is_torchscript_zip test).
  const ZipEntry* constants_entry = zip_->find(root_ + "constants.pkl");
  torchscript_ = constants_entry != nullptr;
  pickle::ReadOptions options{
      .flavor = pickle::Flavor::kTorch, .torchscript_classes = torchscript_, .policy = policy,
      .numpy_array_tensors = true};
  auto read_pickle = [&](const ZipEntry& entry) -> Result<pickle::Document> {
    CKPT_ASSIGN_OR_RETURN(std::string pickled, read_record(*zip_, entry, options.limits.max_input_bytes));
    auto document = pickle::read(as_bytes(pickled), options, path.string() + ":" + entry.name);
    if (!document.ok() && torchscript_) {
      Error error = std::move(document).error();
      return Error(ErrorCode::kTorchScriptUnreadable,
                   fmt::format("a TorchScript archive (torch.jit.save) whose {} holds more than tensors and modules: {}",
                               entry.name, error.message()))
          .in_file(path.string());
    }
    return document;
  };
  CKPT_ASSIGN_OR_RETURN(document_, read_pickle(*pickle_entry));
  // Storage records are opened once; the views are checked against them.
  for (const ZipEntry& entry : entries) {
    std::string_view name = std::string_view(entry.name).substr(root_.size());
    if (!name.starts_with("data/") && !name.starts_with("constants/")) continue;
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> member, zip_->open_member(entry));
    records_.emplace(std::string(name), std::move(member));
  }
  if (!add_tensors(document_, path.string() + ":" + pickle_entry->name, "", "data", problems)) return {};
  if (torchscript_) {
    CKPT_ASSIGN_OR_RETURN(constants_, read_pickle(*constants_entry));
    add_tensors(constants_, path.string() + ":" + constants_entry->name, "constants", "constants", problems);
  }
  return {};
}

Status TorchFile::open_legacy(ProblemSink& problems, const pickle::PicklePolicy& policy) {
  const std::string name = path_.string();
  pickle::ReadOptions options{.flavor = pickle::Flavor::kTorch, .policy = policy, .numpy_array_tensors = true};
  std::uint64_t offset = legacy_magic_length(*file_);
  // The next pickle of the file: read from a window that doubles until the
  // pickle fits, up to the same cap as a zip's data.pkl.
  auto next_pickle = [&](std::string_view what) -> Result<pickle::Document> {
    const std::uint64_t rest = file_->size() - offset;
    const std::uint64_t cap = std::min(rest, options.limits.max_input_bytes);
    for (std::uint64_t window = std::min(cap, kFirstPickleWindow);; window = std::min(cap, window * 2)) {
      std::vector<std::byte> bytes(static_cast<std::size_t>(window));
      CKPT_TRY(file_->read_at(offset, bytes));
      std::uint64_t consumed = 0;
      auto document = pickle::read_prefix(bytes, options, fmt::format("{}:{} at byte {}", name, what, offset), consumed);
      if (document.ok()) {
        offset += consumed;
        return document;
      }
      if (document.error().code() != ErrorCode::kPickleTruncated || window == cap) return std::move(document).error();
    }
  };
  auto layout_error = [&](std::string message) {
    return torch_error(ErrorCode::kUnsupportedLayout, "legacy torch file (torch < 1.6): " + std::move(message), path_);
  };
  CKPT_ASSIGN_OR_RETURN(pickle::Document protocol, next_pickle("protocol version"));
  if (protocol.root()->kind != pickle::Kind::kInt || protocol.root()->integer != kLegacyProtocolVersion) {
    return layout_error(fmt::format("protocol version is not {}", kLegacyProtocolVersion));
  }
  CKPT_ASSIGN_OR_RETURN(pickle::Document sys_info, next_pickle("sys_info"));
  const pickle::Value* little = sys_info.root()->kind == pickle::Kind::kDict ? sys_info.root()->find("little_endian") : nullptr;
  if (little == nullptr || little->kind != pickle::Kind::kBool || !little->boolean) {
    return layout_error("sys_info does not say little_endian: True; only little-endian files are read");
  }
  CKPT_ASSIGN_OR_RETURN(document_, next_pickle("object"));
  CKPT_ASSIGN_OR_RETURN(pickle::Document keys, next_pickle("storage keys"));
  if (keys.root()->kind != pickle::Kind::kList) return layout_error("the storage keys are not a list");
  CKPT_ASSIGN_OR_RETURN(auto named, pickle::named_tensors(*document_.root(), name));
  std::map<std::string, const pickle::TorchStorageInfo*, std::less<>> storages;
  for (const auto& tensor : named) {
    if (tensor.node->kind != pickle::Kind::kTorchTensor) continue;  // a numpy array holds its own bytes
    const pickle::TorchStorageInfo& storage = tensor.node->tensor.storage->storage;
    storages.emplace(storage.key, &storage);
  }
  // Each storage: its element count, then its elements.
  for (const pickle::Value* key : keys.root()->items) {
    if (key->kind != pickle::Kind::kString) return layout_error("a storage key is not a str");
    auto storage = storages.find(key->text);
    if (storage == storages.end()) {
      return layout_error(fmt::format("storage '{}' is not the storage of any tensor", key->text));
    }
    std::array<std::byte, 8> count_bytes{};
    if (file_->size() - offset < count_bytes.size()) {
      return torch_error(ErrorCode::kMissingData, fmt::format("the file ends before storage '{}'", key->text), path_);
    }
    CKPT_TRY(file_->read_at(offset, count_bytes));
    std::uint64_t count = 0;
    for (std::size_t i = count_bytes.size(); i-- > 0;) count = (count << 8) | std::to_integer<std::uint64_t>(count_bytes[i]);
    const std::size_t element = dtype_size(storage->second->dtype);
    offset += count_bytes.size();
    if (count > (file_->size() - offset) / element) {
      return torch_error(ErrorCode::kMissingData,
                         fmt::format("storage '{}' has {} elements of {} bytes; the file ends first", key->text, count, element), path_);
    }
    if (count != storage->second->numel) {
      return torch_error(ErrorCode::kDataSizeMismatch,
                         fmt::format("storage '{}' holds {} elements, its tensors' persistent id says {}", key->text,
                                     count, storage->second->numel), path_);
    }
    CKPT_ASSIGN_OR_RETURN(SliceSource slice, SliceSource::make(file_, offset, count * element));
    records_.emplace("data/" + key->text, std::make_shared<SliceSource>(std::move(slice)));
    offset += count * element;
  }
  add_tensors(document_, name, "", "data", problems);
  return {};
}

bool TorchFile::add_tensors(const pickle::Document& document, std::string_view pickle_name, std::string_view prefix,
                            std::string_view record_folder, ProblemSink& problems) {
  auto named = pickle::named_tensors(*document.root(), pickle_name);
  if (!named.ok()) return problems.error(std::move(named).error());
  for (auto& named_tensor : *named) {
    const std::string name = prefix.empty() ? named_tensor.name : fmt::format("{}.{}", prefix, named_tensor.name);
    const pickle::Value* node = named_tensor.node;
    if (node->kind == pickle::Kind::kNumpyArray) {
      auto array = pickle::numpy_array_data(*node, pickle_name, name);
      if (!array.ok()) {
        if (!problems.error(std::move(array).error())) return false;
        continue;
      }
      tensors_.push_back({name, std::move(array->meta), node, {}});
      continue;
    }
    const pickle::TorchTensorInfo& view = node->tensor;
    const pickle::TorchStorageInfo& storage = view.storage->storage;
    // A tensor with a problem is left out; the others are still checked.
    auto fail = [&](ErrorCode code, std::string message) {
      return problems.error(std::move(Error(code, std::move(message)).in_file(path_.string()).in_variable(name)));
    };
    std::string record_name = fmt::format("{}/{}", record_folder, storage.key);
    auto record = records_.find(record_name);
    if (record == records_.end()) {
      if (!fail(ErrorCode::kMissingData, fmt::format("storage record {} is missing", record_name))) return false;
      continue;
    }
    const std::uint64_t record_size = record->second->size();
    std::size_t storage_element = dtype_size(storage.dtype);
    if (storage.numel > record_size / storage_element || storage.numel * storage_element != record_size) {
      if (!fail(ErrorCode::kDataSizeMismatch, fmt::format("storage {} holds {} elements of {} bytes, its record has {} bytes",
                                                          storage.key, storage.numel, storage_element, record_size))) {
        return false;
      }
      continue;
    }
    auto extent = view_extent(view);
    const std::size_t element = dtype_size(view.dtype);
    if (!extent || *extent > record_size / element) {
      if (!fail(ErrorCode::kPickleStructure,
                fmt::format("view at offset {} with shape {} and strides {} reaches past the {} elements of {} of storage {}",
                            view.storage_offset, shape_to_string(view.shape), shape_to_string(view.stride),
                            record_size / element, dtype_name(view.dtype), storage.key))) {
        return false;
      }
      continue;
    }
    auto meta = VariableMeta::make(view.dtype, view.shape);
    if (!meta.ok()) {
      if (!fail(meta.error().code(), meta.error().message())) return false;
      continue;
    }
    tensors_.push_back({name, std::move(meta).value(), node, std::move(record_name)});
  }
  return true;
}

const TorchTensorRef* TorchFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name, [](const auto& t, std::string_view key) { return t.name < key; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Result<const TorchTensorRef*> TorchFile::get(std::string_view name) const {
  const TorchTensorRef* tensor = find(name);
  if (tensor == nullptr) {
    return std::move(Error(ErrorCode::kUnknownVariable, "the torch file has no such tensor").in_file(path_.string()).in_variable(name));
  }
  return tensor;
}

Result<std::unique_ptr<ByteSource>> TorchFile::open_tensor(std::string_view name) const {
  CKPT_ASSIGN_OR_RETURN(const TorchTensorRef* tensor, get(name));
  if (tensor->is_numpy_array()) return pickle::open_numpy_array(*tensor->node, path_.string(), tensor->name);
  const pickle::TorchTensorInfo& view = tensor->node->tensor;
  std::uint64_t size = tensor->meta.byte_size();
  std::shared_ptr<const ByteSource> storage = records_.find(tensor->record)->second;
  if (is_contiguous(view)) {
    // A window of the record: of the file itself when the record is stored,
    // so it can be mapped (spec/torch.md).
    std::uint64_t start = view.storage_offset * dtype_size(tensor->meta.dtype());
    CKPT_ASSIGN_OR_RETURN(SliceSource window, SliceSource::make(std::move(storage), start, size));
    return std::unique_ptr<ByteSource>(std::make_unique<SliceSource>(std::move(window)));
  }
  std::string source_name = fmt::format("{}:{}", path_.string(), tensor->name);
  return std::unique_ptr<ByteSource>(std::make_unique<StridedViewSource>(
      std::move(storage), view, dtype_size(tensor->meta.dtype()), size, std::move(source_name)));
}

Status TorchFile::read(std::string_view name, std::span<std::byte> out) const {
  CKPT_ASSIGN_OR_RETURN(const TorchTensorRef* tensor, get(name));
  if (out.size() != tensor->meta.byte_size()) {
    return std::move(Error(ErrorCode::kBufferSizeMismatch, fmt::format("buffer holds {} bytes, the tensor has {}", out.size(),
                                                                       tensor->meta.byte_size()))
                         .in_variable(name));
  }
  if (tensor->is_numpy_array()) {
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> array,
                          pickle::open_numpy_array(*tensor->node, path_.string(), tensor->name));
    return array->read_at(0, out);
  }
  const pickle::TorchTensorInfo& view = tensor->node->tensor;
  std::shared_ptr<const ByteSource> storage = records_.find(tensor->record)->second;
  std::size_t element = dtype_size(tensor->meta.dtype());
  if (out.empty()) return {};
  if (is_contiguous(view)) return storage->read_at(view.storage_offset * element, out);
  StridedViewSource strided(std::move(storage), view, element, out.size(), path_.string());
  return strided.read_at(0, out);
}

// ---- writer ----

struct TorchWriter::State {
  State(AtomicFile file, std::string root) : file(std::move(file)), zip(this->file), root(std::move(root)) {}
  AtomicFile file;
  ZipWriter zip;
  std::string root;
  pickle::Document document;
  std::size_t storages = 0;
};

TorchWriter::TorchWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
TorchWriter::TorchWriter(TorchWriter&&) noexcept = default;
TorchWriter::~TorchWriter() = default;

Result<TorchWriter> TorchWriter::create(const fs::path& path, WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(path, std::move(options)));
  std::string root = path.stem().string();
  if (root.empty() || root.find_first_of("/\\") != std::string::npos) root = "archive";
  return TorchWriter(std::make_unique<State>(std::move(file), root));
}

pickle::Document& TorchWriter::document() { return state_->document; }

pickle::Value* TorchWriter::state_dict() { return state_->document.dict(true); }

Result<const pickle::Value*> TorchWriter::add_tensor(const VariableMeta& meta, const ByteSource& data) {
  auto fail = [&](ErrorCode code, std::string message) {
    return std::move(Error(code, std::move(message)).in_file(state_->file.name()));
  };
  // torch >= 2.1 saves its newer dtypes over an untyped storage (torch/_tensor.py).
  const bool untyped = pickle::detail::torch_storage_class(meta.dtype()).empty();
  if (untyped && pickle::detail::torch_v3_dtype_name(meta.dtype()).empty()) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("torch has no dtype for {}", dtype_name(meta.dtype())));
  }
  if (data.size() != meta.byte_size()) {
    return fail(ErrorCode::kBufferSizeMismatch, fmt::format("data has {} bytes, the tensor needs {}", data.size(), meta.byte_size()));
  }
  pickle::Document& doc = state_->document;
  std::string key = std::to_string(state_->storages);
  pickle::Value* storage = doc.make(pickle::Kind::kTorchStorage);
  storage->storage = untyped ? pickle::TorchStorageInfo{DType::kUInt8, key, "cpu", meta.byte_size(), true}
                             : pickle::TorchStorageInfo{meta.dtype(), key, "cpu", meta.element_count()};
  pickle::Value* tensor = doc.make(pickle::Kind::kTorchTensor);
  tensor->tensor.storage = storage;
  tensor->tensor.dtype = meta.dtype();
  tensor->tensor.shape = meta.shape();
  tensor->tensor.stride.assign(meta.shape().size(), 1);
  for (std::size_t d = meta.shape().size(); d-- > 1;) tensor->tensor.stride[d - 1] = tensor->tensor.stride[d] * std::max<std::int64_t>(meta.shape()[d], 1);
  CKPT_TRY(state_->zip.add(
      state_->root + "/data/" + key, ZipMethod::kStored,
      [&](ByteSink& sink) { return sink.write_from(data, 0, data.size()); }, kRecordAlignment));
  ++state_->storages;
  return tensor;
}

Status TorchWriter::commit(const pickle::Value& data) {
  CKPT_ASSIGN_OR_RETURN(auto pickled, pickle::write(data, 2));
  auto record = [&](std::string name, std::span<const std::byte> bytes) {
    return state_->zip.add(
        state_->root + "/" + name, ZipMethod::kStored, [&](ByteSink& sink) { return sink.write(bytes); }, kRecordAlignment);
  };
  CKPT_TRY(record("data.pkl", pickled));
  CKPT_TRY(record("byteorder", as_bytes("little")));
  CKPT_TRY(record("version", as_bytes("3\n")));
  CKPT_TRY(state_->zip.finish());
  return state_->file.commit();
}

}  // namespace ckpt
