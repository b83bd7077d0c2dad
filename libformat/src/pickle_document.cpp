#include <algorithm>

#include <fmt/format.h>

#include "ckpt/format/pickle.hpp"

namespace ckpt::pickle {

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kSet: return "set";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "global";
    case Kind::kOneflowTensor: return "oneflow tensor";
    case Kind::kTorchStorage: return "torch storage";
    case Kind::kTorchTensor: return "torch tensor";
  }
  return "unknown";
}

const Value* Value::find(std::string_view key) const {
  auto it = std::find_if(entries.begin(), entries.end(), [&](const auto& entry) { return entry.first->is_string(key); });
  return it == entries.end() ? nullptr : it->second;
}

std::string_view Value::oneflow_path() const {
  const Value* path = state != nullptr ? state->find("path") : nullptr;
  return path != nullptr && path->kind == Kind::kString ? std::string_view(path->text) : std::string_view();
}

Value* Document::make(Kind kind) {
  values_.push_back(std::make_unique<Value>());
  values_.back()->kind = kind;
  return values_.back().get();
}

const Value* Document::boolean(bool value) {
  Value* v = make(Kind::kBool);
  v->boolean = value;
  return v;
}

const Value* Document::integer(std::int64_t value) {
  Value* v = make(Kind::kInt);
  v->integer = value;
  return v;
}

const Value* Document::real(double value) {
  Value* v = make(Kind::kFloat);
  v->real = value;
  return v;
}

const Value* Document::string(std::string value) {
  Value* v = make(Kind::kString);
  v->text = std::move(value);
  return v;
}

const Value* Document::bytes(std::string value) {
  Value* v = make(Kind::kBytes);
  v->text = std::move(value);
  return v;
}

const Value* Document::global(std::string module, std::string name) {
  Value* v = make(Kind::kGlobal);
  v->text = std::move(module);
  v->name = std::move(name);
  return v;
}

Value* Document::tuple(std::vector<const Value*> items) {
  Value* v = make(Kind::kTuple);
  v->items = std::move(items);
  return v;
}

namespace {

constexpr std::string_view kBareTensorName = "data";

Status collect(const Value& value, const std::string& name, std::string_view file, std::vector<NamedTensor>& out) {
  auto child = [&](const std::string& key) { return name.empty() ? key : name + "." + key; };
  switch (value.kind) {
    case Kind::kDict:
      for (const auto& [key, item] : value.entries) {
        if (key->kind == Kind::kString) {
          CKPT_TRY(collect(*item, child(key->text), file, out));
        } else if (key->kind == Kind::kInt) {
          CKPT_TRY(collect(*item, child(std::to_string(key->integer)), file, out));
        } else {
          return Error(ErrorCode::kPickleStructure, fmt::format("a dict key of kind {} under '{}' cannot be part "
                                                                "of a tensor name", kind_name(key->kind), name))
              .in_file(file);
        }
      }
      return {};
    case Kind::kList:
    case Kind::kTuple:
      for (std::size_t i = 0; i < value.items.size(); ++i) CKPT_TRY(collect(*value.items[i], child(std::to_string(i)), file, out));
      return {};
    case Kind::kOneflowTensor:
    case Kind::kTorchTensor: out.push_back({name.empty() ? std::string(kBareTensorName) : name, &value}); return {};
    default: return {};
  }
}

}  // namespace

Result<std::vector<NamedTensor>> named_tensors(const Value& data, std::string_view file) {
  std::vector<NamedTensor> tensors;
  CKPT_TRY(collect(data, "", file, tensors));
  std::stable_sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  auto duplicate =
      std::adjacent_find(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name == b.name; });
  if (duplicate != tensors.end()) {
    return std::move(Error(ErrorCode::kDuplicateName, "two tensors get this dotted name (a key containing '.' collides)")
                         .in_file(file)
                         .in_variable(duplicate->name));
  }
  return tensors;
}

}  // namespace ckpt::pickle
