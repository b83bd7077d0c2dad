#include "ckpt/format/views.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include <fmt/format.h>

#include "core/fast_casts.hpp"
#include "core/float_codec.hpp"
#include "core/little_endian.hpp"

namespace ckpt {
namespace {

// Elements converted per step of a cast read: bounds its buffers to 1 MiB.
constexpr std::uint64_t kCastChunkElements = 64 * 1024;

class CastSource final : public ByteSource {
 public:
  CastSource(std::unique_ptr<ByteSource> inner, DType from, DType to)
      : inner_(std::move(inner)), from_(*detail::float_layout(from)), to_(*detail::float_layout(to)),
        to_double_(to == DType::kDouble), from_size_(dtype_size(from)), to_size_(dtype_size(to)),
        size_(inner_->size() / from_size_ * to_size_), fast_(detail::fast_cast(from, to)) {}

  std::uint64_t size() const override { return size_; }
  const std::string& name() const override { return inner_->name(); }

  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    CKPT_TRY(check_range(*this, offset, out.size()));
    if (out.empty()) return {};
    const std::uint64_t end = offset + out.size();
    const std::uint64_t first_element = offset / to_size_;
    const std::uint64_t end_element = (end + to_size_ - 1) / to_size_;
    const auto chunk = static_cast<std::size_t>(std::min(end_element - first_element, kCastChunkElements));
    std::vector<std::byte> narrow(chunk * from_size_), wide(chunk * to_size_);
    for (std::uint64_t element = first_element; element < end_element;) {
      const auto count = static_cast<std::size_t>(std::min<std::uint64_t>(end_element - element, chunk));
      CKPT_TRY(inner_->read_at(element * from_size_, std::span(narrow.data(), count * from_size_)));
      if (fast_ != nullptr) {
        fast_(narrow.data(), wide.data(), count);
      } else {
        convert_exactly(narrow.data(), wide.data(), count);
      }
      // The first and last chunks may be cut by an offset inside an element.
      const std::uint64_t chunk_begin = element * to_size_;
      const std::uint64_t copy_begin = std::max(offset, chunk_begin);
      const std::uint64_t copy_end = std::min(end, chunk_begin + count * to_size_);
      std::memcpy(out.data() + (copy_begin - offset), wide.data() + (copy_begin - chunk_begin), copy_end - copy_begin);
      element += count;
    }
    return {};
  }

 private:
  std::unique_ptr<ByteSource> inner_;
  detail::FloatLayout from_, to_;
  bool to_double_;
  std::size_t from_size_, to_size_;
  std::uint64_t size_;
  detail::BulkCast fast_;  // null for pairs without a fast path

  // Any pair, through double (core/float_codec); the fast paths match it bit for bit.
  void convert_exactly(const std::byte* narrow, std::byte* wide, std::size_t count) const {
    for (std::size_t i = 0; i < count; ++i) {
      const double value = detail::float_bits_to_double(detail::load_le(std::span(narrow + i * from_size_, from_size_)), from_);
      const std::uint64_t bits =
          to_double_ ? std::bit_cast<std::uint64_t>(value) : detail::double_to_float_bits(value, to_);
      detail::store_le(bits, std::span(wide + i * to_size_, to_size_));
    }
  }
};

// What every view shares: the wrapped reader, its own sorted tensor list,
// and open() refusing names that list does not have. No object() (pickle
// formats) unless a view overrides it: one naming other tensors than the
// view has would not match.
class ViewReader : public CheckpointReader {
 public:
  ViewReader(std::unique_ptr<CheckpointReader> inner, std::vector<TensorInfo> tensors)
      : inner_(std::move(inner)), tensors_(std::move(tensors)) {}
  std::string_view format_name() const override { return inner_->format_name(); }
  std::string_view layout() const override { return inner_->layout(); }
  const std::filesystem::path& path() const override { return inner_->path(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  // About the file, not its tensors: every view keeps it.
  const TextMetadata& metadata() const override { return inner_->metadata(); }
  const std::vector<UnsupportedTensor>& unsupported() const override { return inner_->unsupported(); }
  const CheckpointReader& wrapped() const { return *inner_; }

  Result<std::unique_ptr<ByteSource>> open(std::string_view name) const override {
    const TensorInfo* info = find(name);
    if (info == nullptr) {
      return std::move(Error(ErrorCode::kUnknownVariable, "no tensor of that name in this view")
                           .in_variable(name)
                           .in_file(path().string()));
    }
    return open_viewed(static_cast<std::size_t>(info - tensors_.data()));
  }

 protected:
  // The tensor at `index` of tensors().
  virtual Result<std::unique_ptr<ByteSource>> open_viewed(std::size_t index) const = 0;
  const CheckpointReader& inner() const { return *inner_; }

 private:
  std::unique_ptr<CheckpointReader> inner_;
  std::vector<TensorInfo> tensors_;
};

class CastView final : public ViewReader {
 public:
  using ViewReader::ViewReader;
  // Names are unchanged, and writers take each tensor leaf's dtype from the tensor added.
  const pickle::Value* object() const override { return inner().object(); }

 protected:
  Result<std::unique_ptr<ByteSource>> open_viewed(std::size_t index) const override {
    const TensorInfo& info = tensors()[index];
    CKPT_ASSIGN_OR_RETURN(auto source, inner().open(info.name));
    // cast_view keeps the inner list and its order; only dtypes differ.
    const DType stored = inner().tensors()[index].meta.dtype();
    if (stored == info.meta.dtype()) return source;
    auto cast = cast_source(std::move(source), stored, info.meta.dtype());
    if (!cast.ok()) return std::move(std::move(cast).error().in_variable(info.name));
    return cast;
  }
};

class FilterView final : public ViewReader {
 public:
  FilterView(std::unique_ptr<CheckpointReader> inner, std::vector<TensorInfo> tensors,
             std::vector<UnsupportedTensor> unsupported)
      : ViewReader(std::move(inner), std::move(tensors)), unsupported_(std::move(unsupported)) {}
  // The patterns filter the unsupported tensors too: --exclude leaves them out.
  const std::vector<UnsupportedTensor>& unsupported() const override { return unsupported_; }

 protected:
  Result<std::unique_ptr<ByteSource>> open_viewed(std::size_t index) const override {
    return inner().open(tensors()[index].name);
  }

 private:
  std::vector<UnsupportedTensor> unsupported_;
};

class RenameView final : public ViewReader {
 public:
  RenameView(std::unique_ptr<CheckpointReader> inner, std::vector<TensorInfo> tensors,
             std::vector<std::string> source_names)
      : ViewReader(std::move(inner), std::move(tensors)), source_names_(std::move(source_names)) {}

 protected:
  Result<std::unique_ptr<ByteSource>> open_viewed(std::size_t index) const override {
    return inner().open(source_names_[index]);
  }

 private:
  std::vector<std::string> source_names_;  // parallel to tensors()
};

Error not_floating(DType dtype, std::string_view role) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{} type must be kFloat16, kBFloat16, kFloat, kDouble or an FP8 type, got {}", role,
                           dtype_name(dtype)));
}

}  // namespace

bool is_floating(DType dtype) { return detail::float_layout(dtype).has_value(); }

const pickle::Value* hidden_object(const CheckpointReader& reader) {
  if (reader.object() != nullptr) return nullptr;
  for (const auto* view = dynamic_cast<const ViewReader*>(&reader); view != nullptr;
       view = dynamic_cast<const ViewReader*>(&view->wrapped())) {
    if (const pickle::Value* object = view->wrapped().object()) return object;
  }
  return nullptr;
}

Result<std::unique_ptr<ByteSource>> cast_source(std::unique_ptr<ByteSource> source, DType from, DType to) {
  if (!is_floating(from)) return not_floating(from, "source");
  if (!is_floating(to)) return not_floating(to, "target");
  if (source->size() % dtype_size(from) != 0) {
    return std::move(Error(ErrorCode::kDataSizeMismatch,
                           fmt::format("expected a whole number of {}-byte {} elements, found {} bytes",
                                       dtype_size(from), dtype_name(from), source->size()))
                         .in_file(source->name()));
  }
  return std::unique_ptr<ByteSource>(std::make_unique<CastSource>(std::move(source), from, to));
}

Result<std::unique_ptr<CheckpointReader>> cast_view(std::unique_ptr<CheckpointReader> reader, DType target) {
  if (!is_floating(target)) return not_floating(target, "target");
  std::vector<TensorInfo> tensors = reader->tensors();
  for (auto& tensor : tensors) {
    if (!is_floating(tensor.meta.dtype())) continue;
    auto meta = VariableMeta::make(target, tensor.meta.shape());
    if (!meta.ok()) return std::move(std::move(meta).error().in_variable(tensor.name));
    tensor.meta = std::move(meta).value();
  }
  return std::unique_ptr<CheckpointReader>(std::make_unique<CastView>(std::move(reader), std::move(tensors)));
}

bool glob_match(std::string_view pattern, std::string_view name) {
  return ::fnmatch(std::string(pattern).c_str(), std::string(name).c_str(), 0) == 0;
}

Result<std::unique_ptr<CheckpointReader>> filter_view(std::unique_ptr<CheckpointReader> reader,
                                                      std::vector<std::string> include,
                                                      std::vector<std::string> exclude) {
  auto matches_any = [](const std::vector<std::string>& patterns, std::string_view name) {
    return std::any_of(patterns.begin(), patterns.end(),
                       [&](const std::string& pattern) { return glob_match(pattern, name); });
  };
  auto keeps = [&](std::string_view name) {
    return (include.empty() || matches_any(include, name)) && !matches_any(exclude, name);
  };
  for (const auto& pattern : include) {
    const auto& all = reader->tensors();
    const auto& unsupported = reader->unsupported();
    if (std::none_of(all.begin(), all.end(), [&](const TensorInfo& t) { return glob_match(pattern, t.name); }) &&
        std::none_of(unsupported.begin(), unsupported.end(),
                     [&](const UnsupportedTensor& t) { return glob_match(pattern, t.name); })) {
      return std::move(Error(ErrorCode::kInvalidArgument,
                             fmt::format("include pattern '{}' matches none of the {} tensors", pattern, all.size()))
                           .in_file(reader->path().string()));
    }
  }
  std::vector<TensorInfo> kept;
  for (const auto& tensor : reader->tensors()) {
    if (keeps(tensor.name)) kept.push_back(tensor);
  }
  std::vector<UnsupportedTensor> kept_unsupported;
  for (const auto& tensor : reader->unsupported()) {
    if (keeps(tensor.name)) kept_unsupported.push_back(tensor);
  }
  return std::unique_ptr<CheckpointReader>(
      std::make_unique<FilterView>(std::move(reader), std::move(kept), std::move(kept_unsupported)));
}

Result<RenameRule> parse_rename_rule(std::string_view text) {
  const auto equals = text.find('=');
  if (equals == std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("expected OLD=NEW, got '{}'", text));
  }
  return RenameRule{std::string(text.substr(0, equals)), std::string(text.substr(equals + 1))};
}

Result<std::unique_ptr<CheckpointReader>> rename_view(std::unique_ptr<CheckpointReader> reader,
                                                      std::vector<RenameRule> rules) {
  struct Renamed {
    TensorInfo info;
    std::string source_name;
  };
  std::vector<Renamed> renamed;
  for (const auto& tensor : reader->tensors()) {
    std::string name = tensor.name;
    auto rule = std::find_if(rules.begin(), rules.end(),
                             [&](const RenameRule& r) { return name.starts_with(r.from); });
    if (rule != rules.end()) name = rule->to + name.substr(rule->from.size());
    if (name.empty()) {
      return std::move(Error(ErrorCode::kInvalidArgument,
                             fmt::format("rule '{}={}' renames it to an empty name", rule->from, rule->to))
                           .in_variable(tensor.name));
    }
    renamed.push_back({{std::move(name), tensor.meta}, tensor.name});
  }
  std::stable_sort(renamed.begin(), renamed.end(), [](const Renamed& a, const Renamed& b) { return a.info.name < b.info.name; });
  auto clash = std::adjacent_find(renamed.begin(), renamed.end(),
                                  [](const Renamed& a, const Renamed& b) { return a.info.name == b.info.name; });
  if (clash != renamed.end()) {
    return std::move(Error(ErrorCode::kDuplicateName, fmt::format("renaming gives both '{}' and '{}' this name",
                                                                  clash->source_name, std::next(clash)->source_name))
                         .in_variable(clash->info.name));
  }
  std::vector<TensorInfo> tensors;
  std::vector<std::string> source_names;
  for (auto& entry : renamed) {
    tensors.push_back(std::move(entry.info));
    source_names.push_back(std::move(entry.source_name));
  }
  return std::unique_ptr<CheckpointReader>(
      std::make_unique<RenameView>(std::move(reader), std::move(tensors), std::move(source_names)));
}

}  // namespace ckpt
