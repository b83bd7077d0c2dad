// The CheckpointWriter of the pickle formats (torch, oneflow-pickle), over a
// format writer shaped like OneflowPickleWriter and TorchWriter: tensors are
// written as they are added, the object around them at commit.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/pickle.hpp"
#include "core/utf8.hpp"

namespace ckpt::detail {

template <class FormatWriter>
class PickleCheckpointWriter final : public CheckpointWriter {
 public:
  PickleCheckpointWriter(FormatWriter writer, std::string destination)
      : writer_(std::move(writer)), destination_(std::move(destination)) {}

  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data) override {
    auto fail = [&](Error error) { return std::move(error.in_file(destination_).in_variable(name)); };
    if (by_name_.contains(name)) return fail(Error(ErrorCode::kDuplicateName, "added twice"));
    if (name.empty()) {
      // Readers name a tensor by its keys, and a tensor without any key "data".
      return fail(Error(ErrorCode::kUnstorableName, "an empty name; readers would name the tensor 'data'"));
    }
    if (auto bad = utf8_error_offset(name)) {
      // The name becomes a pickle str, which torch.load and our reader decode as UTF-8.
      return fail(Error(ErrorCode::kUnstorableName,
                        fmt::format("the name {:?} is not valid UTF-8 (byte {}); a pickle str must be", name, *bad)));
    }
    auto tensor = array_bytes(name, meta, data);
    if (tensor.ok() && *tensor == nullptr) tensor = writer_.add_tensor(meta, data);
    if (!tensor.ok()) return fail(std::move(tensor).error());
    added_.emplace_back(std::string(name), *tensor);
    by_name_.emplace(std::string(name), *tensor);
    return {};
  }

  Status set_object(const pickle::Value& object) override {
    object_ = &object;
    CKPT_ASSIGN_OR_RETURN(auto named, pickle::named_tensors(object, destination_));
    for (const pickle::NamedTensor& tensor : named) {
      if (tensor.node->kind == pickle::Kind::kNumpyArray) arrays_.emplace(tensor.name, tensor.node);
    }
    return {};
  }

  bool keeps_object() const override { return true; }

  Status set_nesting(std::vector<std::string> prefixes) override {
    for (const std::string& prefix : prefixes) {
      if (auto bad = utf8_error_offset(prefix)) {
        // Its segments become dict keys: pickle str.
        return Error(ErrorCode::kUnstorableName,
                     fmt::format("the nesting prefix {:?} is not valid UTF-8 (byte {})", prefix, *bad))
            .in_file(destination_);
      }
    }
    prefixes_ = std::move(prefixes);
    return {};
  }

  Status commit() override {
    CKPT_ASSIGN_OR_RETURN(const pickle::Value* data, build_object());
    return writer_.commit(*data);
  }

 private:
  // The object given, the names nested, or a flat state_dict.
  Result<const pickle::Value*> build_object() {
    pickle::Document& document = writer_.document();
    if (object_ != nullptr && !prefixes_.empty()) {
      return Error(ErrorCode::kInvalidArgument, "both an object and a nesting rule were given; the object has its own nesting")
          .in_file(destination_);
    }
    if (object_ != nullptr) return place_in_object(document);
    if (!prefixes_.empty()) {
      return pickle::nest_tensors(document, added_, prefixes_, [&] { return writer_.state_dict(); }, destination_);
    }
    pickle::Value* state_dict = writer_.state_dict();
    for (const auto& [name, tensor] : added_) state_dict->entries.emplace_back(document.string(name), tensor);
    return state_dict;
  }

  // Every tensor of the object must have been added, and every added one placed.
  Result<const pickle::Value*> place_in_object(pickle::Document& document) {
    std::set<std::string, std::less<>> placed;
    auto tensor_named = [&](const std::string& name) -> Result<const pickle::Value*> {
      auto it = by_name_.find(name);
      if (it == by_name_.end()) {
        return std::move(Error(ErrorCode::kMissingData, "the object has a tensor of this name, but none was added")
                             .in_file(destination_)
                             .in_variable(name));
      }
      placed.insert(name);
      return it->second;
    };
    CKPT_ASSIGN_OR_RETURN(const pickle::Value* copy,
                          pickle::copy_replacing_tensors(*object_, document, tensor_named, destination_));
    for (const auto& [name, tensor] : added_) {
      if (!placed.contains(name)) {
        return std::move(Error(ErrorCode::kInvalidArgument, "added, but the object has no tensor of this name")
                             .in_file(destination_)
                             .in_variable(name));
      }
    }
    return copy;
  }

  // A tensor that is a numpy array in the object set, added with the
  // array's own dtype and shape, goes back into the pickle as that array
  // (copy_replacing_tensors): its bytes as a kBytes node. nullptr for every
  // other tensor, which the format writer stores.
  Result<const pickle::Value*> array_bytes(std::string_view name, const VariableMeta& meta, const ByteSource& data) {
    auto array = arrays_.find(name);
    if (array == arrays_.end()) return static_cast<const pickle::Value*>(nullptr);
    CKPT_ASSIGN_OR_RETURN(pickle::NumpyArrayData source, pickle::numpy_array_data(*array->second, destination_, name));
    if (source.meta.dtype() != meta.dtype() || source.meta.shape() != meta.shape()) {
      return static_cast<const pickle::Value*>(nullptr);  // cast or reshaped: the format's own tensor
    }
    if (data.size() != meta.byte_size()) {
      return Error(ErrorCode::kBufferSizeMismatch, fmt::format("data has {} bytes, the array needs {}", data.size(), meta.byte_size()));
    }
    std::string bytes(static_cast<std::size_t>(data.size()), '\0');
    CKPT_TRY(data.read_at(0, std::as_writable_bytes(std::span(bytes))));
    return writer_.document().bytes(std::move(bytes));
  }

  FormatWriter writer_;
  std::string destination_;
  std::map<std::string, const pickle::Value*, std::less<>> arrays_;  // the object's numpy array tensors by name
  std::vector<std::pair<std::string, const pickle::Value*>> added_;  // in the order added
  std::map<std::string, const pickle::Value*, std::less<>> by_name_;
  const pickle::Value* object_ = nullptr;
  std::vector<std::string> prefixes_;
};

}  // namespace ckpt::detail
