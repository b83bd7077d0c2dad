#include "ckpt/format/torch_file.hpp"

#include <algorithm>

#include <fmt/format.h>

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

}  // namespace

Result<TorchFile> TorchFile::open_archive(const fs::path& path) {
  TorchFile file;
  file.path_ = path;
  CKPT_ASSIGN_OR_RETURN(FileSource source, FileSource::open(path));
  file.file_ = std::make_unique<FileSource>(std::move(source));
  auto zip = ZipReader::open(*file.file_);
  if (!zip.ok()) return std::move(std::move(zip).error().in_file(path.string()));
  file.zip_ = std::make_unique<ZipReader>(std::move(zip).value());
  const auto& entries = file.zip_->entries();
  if (entries.empty()) return torch_error(ErrorCode::kNotACheckpoint, "an empty zip is not a torch file", path);
  // The root folder is the first entry's; every record must be inside it.
  auto slash = entries.front().name.find('/');
  if (slash == std::string::npos) return torch_error(ErrorCode::kNotACheckpoint, "records are not in a root folder", path);
  file.root_ = entries.front().name.substr(0, slash + 1);
  for (const ZipEntry& entry : entries) {
    if (!entry.name.starts_with(file.root_) || entry.name.find("..") != std::string::npos) {
      return torch_error(ErrorCode::kZipUnsafeName,
                         fmt::format("record '{}' is outside the archive's root '{}'", entry.name, file.root_), path);
    }
  }
  CKPT_TRY(check_no_overlap(entries, path));
  const ZipEntry* pickle_entry = file.zip_->find(file.root_ + "data.pkl");
  if (pickle_entry == nullptr) {
    return torch_error(ErrorCode::kNotACheckpoint, fmt::format("no {}data.pkl: not a torch.save file", file.root_), path);
  }
  if (const ZipEntry* byteorder = file.zip_->find(file.root_ + "byteorder")) {
    CKPT_ASSIGN_OR_RETURN(std::string order, read_record(*file.zip_, *byteorder, kMaxSmallRecord));
    if (order != "little") {
      return torch_error(ErrorCode::kUnsupportedLayout, fmt::format("byteorder is '{}'; only little is read", order), path);
    }
  }
  pickle::ReadOptions options{pickle::Flavor::kTorch, {}};
  CKPT_ASSIGN_OR_RETURN(std::string pickled, read_record(*file.zip_, *pickle_entry, options.limits.max_input_bytes));
  auto document = pickle::read(as_bytes(pickled), options, path.string() + ":" + pickle_entry->name);
  if (!document.ok()) return std::move(document).error();
  file.document_ = std::move(document).value();
  return file;
}

bool TorchFile::add_tensors(ProblemSink& problems) {
  std::string pickle_name = path_.string() + ":" + root_ + "data.pkl";
  auto named = pickle::named_tensors(*document_.root(), pickle_name);
  if (!named.ok()) return problems.error(std::move(named).error());
  for (auto& named_tensor : *named) {
    const std::string& name = named_tensor.name;
    const pickle::Value* node = named_tensor.node;
    const pickle::TorchTensorInfo& view = node->tensor;
    const pickle::TorchStorageInfo& storage = view.storage->storage;
    auto fail = [&](ErrorCode code, std::string message) {
      return problems.error(std::move(Error(code, std::move(message)).in_file(path_.string()).in_variable(name)));
    };
    const ZipEntry* record = zip_->find(root_ + "data/" + storage.key);
    if (record == nullptr) {
      if (!fail(ErrorCode::kMissingData, fmt::format("storage record data/{} is missing", storage.key))) return false;
      continue;
    }
    std::size_t element = dtype_size(storage.dtype);
    if (storage.numel > record->size / element || storage.numel * element != record->size) {
      if (!fail(ErrorCode::kDataSizeMismatch, fmt::format("storage {} holds {} elements of {} bytes, its record has {} bytes",
                                                          storage.key, storage.numel, element, record->size))) {
        return false;
      }
      continue;
    }
    auto extent = view_extent(view);
    if (!extent || *extent > storage.numel) {
      if (!fail(ErrorCode::kPickleStructure,
                fmt::format("view at offset {} with shape {} and strides {} reaches past the {} elements of storage {}",
                            view.storage_offset, shape_to_string(view.shape), shape_to_string(view.stride),
                            storage.numel, storage.key))) {
        return false;
      }
      continue;
    }
    auto meta = VariableMeta::make(storage.dtype, view.shape);
    if (!meta.ok()) {
      if (!fail(meta.error().code(), meta.error().message())) return false;
      continue;
    }
    tensors_.push_back({name, std::move(meta).value(), node});
  }
  return true;
}

std::optional<TorchFile> TorchFile::open(const fs::path& path, ProblemSink& problems) {
  auto file = open_archive(path);
  if (!file.ok()) {
    problems.error(std::move(file).error());
    return std::nullopt;
  }
  if (!file->add_tensors(problems)) return std::nullopt;
  return std::move(file).value();
}

Result<TorchFile> TorchFile::open(const fs::path& path) {
  FailFast problems;
  auto file = open(path, problems);
  CKPT_TRY(problems.status());
  return std::move(*file);
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
  const pickle::TorchTensorInfo& view = tensor->node->tensor;
  std::string source_name = fmt::format("{}:{}", path_.string(), tensor->name);
  std::uint64_t size = tensor->meta.byte_size();
  const ZipEntry* record = zip_->find(root_ + "data/" + view.storage->storage.key);
  CKPT_ASSIGN_OR_RETURN(std::shared_ptr<const ByteSource> storage, zip_->open_member(*record));
  if (is_contiguous(view)) {
    std::uint64_t start = view.storage_offset * dtype_size(tensor->meta.dtype());
    return std::unique_ptr<ByteSource>(std::make_unique<CallbackSource>(
        size, [storage, start](std::uint64_t offset, std::span<std::byte> out) { return storage->read_at(start + offset, out); },
        std::move(source_name)));
  }
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
  const pickle::TorchTensorInfo& view = tensor->node->tensor;
  const ZipEntry* record = zip_->find(root_ + "data/" + view.storage->storage.key);
  CKPT_ASSIGN_OR_RETURN(auto storage, zip_->open_member(*record));
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
  if (pickle::detail::torch_storage_class(meta.dtype()).empty()) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("torch has no storage type for {}", dtype_name(meta.dtype())));
  }
  if (data.size() != meta.byte_size()) {
    return fail(ErrorCode::kBufferSizeMismatch, fmt::format("data has {} bytes, the tensor needs {}", data.size(), meta.byte_size()));
  }
  pickle::Document& doc = state_->document;
  std::string key = std::to_string(state_->storages);
  pickle::Value* storage = doc.make(pickle::Kind::kTorchStorage);
  storage->storage = {meta.dtype(), key, "cpu", meta.element_count()};
  pickle::Value* tensor = doc.make(pickle::Kind::kTorchTensor);
  tensor->tensor.storage = storage;
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
