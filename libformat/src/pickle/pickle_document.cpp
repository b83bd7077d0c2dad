#include <algorithm>
#include <array>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "ckpt/format/npy.hpp"
#include "ckpt/format/pickle.hpp"

namespace ckpt::pickle {

namespace {
// The attributes of an nn.Module whose entries state_dict() names by key alone.
constexpr std::array<std::string_view, 3> kModuleGroups = {"_parameters", "_buffers", "_modules"};
}  // namespace

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
    case Kind::kNumpyArray: return "numpy array";
    case Kind::kNumpyDtype: return "numpy dtype";
    case Kind::kOneflowDtype: return "oneflow dtype";
    case Kind::kStub: return "stub";
    case Kind::kNumpyScalar: return "numpy scalar";
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

bool Value::is_module_stub() const {
  if (kind != Kind::kStub || state == nullptr || state->kind != Kind::kDict) return false;
  return std::all_of(kModuleGroups.begin(), kModuleGroups.end(), [&](std::string_view group) {
    const Value* value = state->find(group);
    return value != nullptr && value->kind == Kind::kDict;
  });
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

std::optional<DType> numpy_array_dtype(const Value& array) {
  // BUILD state (1, shape, dtype, fortran, bytes); the dtype is numpy.dtype(code, False, True) + BUILD (3, order, ...).
  if (array.kind != Kind::kNumpyArray || array.state == nullptr || array.state->items.size() != 5) return std::nullopt;
  const Value& dtype = *array.state->items[2];
  if (dtype.kind != Kind::kNumpyDtype || dtype.items.size() != 1 || dtype.items[0]->items.empty() ||
      dtype.items[0]->items[0]->kind != Kind::kString || dtype.state == nullptr || dtype.state->items.size() < 2 ||
      dtype.state->items[1]->kind != Kind::kString) {
    return std::nullopt;
  }
  const std::string& code = dtype.items[0]->items[0]->text;
  const std::string& order = dtype.state->items[1]->text;
  // 'V2' would read as bfloat16 (npy's convention); in a pickle it is raw void.
  if (code.empty() || code[0] == 'V' || (order != "<" && order != "|" && order != "=")) return std::nullopt;
  return dtype_from_numpy(code);
}

Result<NumpyArrayData> numpy_array_data(const Value& array, std::string_view file, std::string_view name) {
  auto structure = [&](std::string message) {
    return std::move(Error(ErrorCode::kPickleStructure, std::move(message)).in_file(file).in_variable(name));
  };
  const auto dtype = numpy_array_dtype(array);
  if (!dtype) return structure("not a numpy array of a dtype ckpt has (little-endian bool, int, uint, float or complex)");
  const auto& fields = array.state->items;  // (version, shape, dtype, fortran, bytes)
  if (fields[0]->kind != Kind::kInt || fields[0]->integer != 1 || fields[1]->kind != Kind::kTuple ||
      fields[3]->kind != Kind::kBool || fields[4]->kind != Kind::kBytes) {
    return structure("the numpy array's state is not (1, shape, dtype, fortran, bytes)");
  }
  Shape shape;
  for (const Value* dim : fields[1]->items) {
    if (dim->kind != Kind::kInt) return structure("the numpy array's shape holds a non-int");
    shape.push_back(dim->integer);
  }
  auto meta = VariableMeta::make(*dtype, std::move(shape));
  if (!meta.ok()) return std::move(std::move(meta).error().in_file(file).in_variable(name));
  if (fields[4]->text.size() != meta->byte_size()) {
    return std::move(Error(ErrorCode::kDataSizeMismatch,
                           fmt::format("the numpy array has {} bytes, {} {} needs {}", fields[4]->text.size(),
                                       dtype_name(*dtype), shape_to_string(meta->shape()), meta->byte_size()))
                         .in_file(file)
                         .in_variable(name));
  }
  return NumpyArrayData{std::move(meta).value(), fields[3]->boolean, fields[4]};
}

Result<std::unique_ptr<ByteSource>> open_numpy_array(const Value& array, std::string_view file, std::string_view name) {
  CKPT_ASSIGN_OR_RETURN(NumpyArrayData data, numpy_array_data(array, file, name));
  auto bytes = std::make_shared<const MemorySource>(std::as_bytes(std::span(data.bytes->text)),
                                                    fmt::format("{}:{}", file, name));
  const NpyHeader layout{.fortran_order = data.fortran_order, .meta = std::move(data.meta)};
  return open_npy_data(std::move(bytes), layout);
}

namespace {

constexpr std::string_view kBareTensorName = "data";

// The part of a dotted name a dict key gives: a str as it is, an int in decimal.
Result<std::string> key_segment(const Value& key, const std::string& parent, std::string_view file) {
  if (key.kind == Kind::kString) return key.text;
  if (key.kind == Kind::kInt) return std::to_string(key.integer);
  return Error(ErrorCode::kPickleStructure,
               fmt::format("a dict key of kind {} under '{}' cannot be part of a tensor name", kind_name(key.kind), parent))
      .in_file(file);
}

std::string child_name(const std::string& parent, const std::string& segment) {
  return parent.empty() ? segment : parent + "." + segment;
}

std::string tensor_name(const std::string& name) { return name.empty() ? std::string(kBareTensorName) : name; }

bool is_module_group(const Value& key) {
  return std::any_of(kModuleGroups.begin(), kModuleGroups.end(), [&](std::string_view group) { return key.is_string(group); });
}

Status collect(const Value& value, const std::string& name, std::string_view file, std::vector<NamedTensor>& out);

Status collect_entries(const std::vector<std::pair<const Value*, const Value*>>& entries, const std::string& name,
                       std::string_view file, std::vector<NamedTensor>& out) {
  for (const auto& [key, item] : entries) {
    CKPT_ASSIGN_OR_RETURN(std::string segment, key_segment(*key, name, file));
    CKPT_TRY(collect(*item, child_name(name, segment), file, out));
  }
  return {};
}

Status collect(const Value& value, const std::string& name, std::string_view file, std::vector<NamedTensor>& out) {
  switch (value.kind) {
    case Kind::kDict: return collect_entries(value.entries, name, file, out);
    case Kind::kList:
    case Kind::kTuple:
      for (std::size_t i = 0; i < value.items.size(); ++i) CKPT_TRY(collect(*value.items[i], child_name(name, std::to_string(i)), file, out));
      return {};
    case Kind::kOneflowTensor:
    case Kind::kTorchTensor:
    case Kind::kNumpyArray:
      if (value.is_tensor()) out.push_back({tensor_name(name), &value});
      return {};
    case Kind::kStub: {
      if (value.is_module_stub()) {
        for (const auto& [key, group] : value.state->entries) {
          if (!is_module_group(*key) || group->kind != Kind::kDict) continue;
          for (const auto& [member, item] : group->entries) {
            CKPT_ASSIGN_OR_RETURN(std::string segment, key_segment(*member, name, file));
            CKPT_TRY(collect(*item, child_name(name, segment), file, out));
          }
        }
        return {};
      }
      // Another stub: its items and attributes (a dict state) by key, as a dict's.
      // numpy arrays in its arguments or another state stay values there.
      const bool dict_state = value.state != nullptr && value.state->kind == Kind::kDict;
      if ((!value.items.empty() && holds_tensor(*value.items[0], false)) ||
          (value.state != nullptr && !dict_state && holds_tensor(*value.state, false))) {
        return std::move(Error(ErrorCode::kPickleStructure,
                               fmt::format("a tensor inside the arguments or non-dict state of a stub of '{}.{}'",
                                           value.cls->text, value.cls->name))
                             .in_file(file)
                             .in_variable(name));
      }
      CKPT_TRY(collect_entries(value.entries, name, file, out));
      return dict_state ? collect_entries(value.state->entries, name, file, out) : Status{};
    }
    default: return {};
  }
}

void find_stubs(const Value& value, const std::string& name, std::vector<NamedStub>& out) {
  auto each_entry = [&](const Value& dict) {
    for (const auto& [key, item] : dict.entries) {
      if (key->kind == Kind::kString || key->kind == Kind::kInt) {
        find_stubs(*item, child_name(name, key->kind == Kind::kString ? key->text : std::to_string(key->integer)), out);
      }
    }
  };
  switch (value.kind) {
    case Kind::kDict: each_entry(value); return;
    case Kind::kList:
    case Kind::kTuple:
      for (std::size_t i = 0; i < value.items.size(); ++i) find_stubs(*value.items[i], child_name(name, std::to_string(i)), out);
      return;
    case Kind::kStub:
      if (!value.is_module_stub()) return;
      out.push_back({name, &value});
      if (const Value* modules = value.state->find("_modules"); modules != nullptr && modules->kind == Kind::kDict) {
        each_entry(*modules);
      }
      return;
    default: return;
  }
}

using TensorLookup = std::function<Result<const Value*>(const std::string&)>;

// Walks like collect, so every tensor leaf is looked up by the name collect
// gives it. A node without tensors that the source shares (a class, a str,
// a numpy dtype) is shared in the copy too, so the writer memoizes it as
// the source's pickler did and a stub-holding pickle is written back as it was.
class TreeCopier {
 public:
  TreeCopier(Document& into, std::string_view file) : into_(into), file_(file) {}

  Result<const Value*> copy(const Value& value, const std::string& name, const TensorLookup& lookup) {
    const bool shareable = &lookup == &no_tensors_ || is_leaf(value.kind);
    if (shareable) {
      if (auto it = copies_.find(&value); it != copies_.end()) return it->second;
    }
    CKPT_ASSIGN_OR_RETURN(const Value* copied, copy_node(value, name, lookup));
    if (shareable) copies_.emplace(&value, copied);
    return copied;
  }

 private:
  static bool is_leaf(Kind kind) {
    return kind == Kind::kNone || kind == Kind::kBool || kind == Kind::kInt || kind == Kind::kFloat ||
           kind == Kind::kString || kind == Kind::kBytes || kind == Kind::kGlobal;
  }

  Result<const Value*> copy_if(const Value* value, const std::string& name, const TensorLookup& lookup) {
    if (value == nullptr) return static_cast<const Value*>(nullptr);
    return copy(*value, name, lookup);
  }

  Status copy_entries(const std::vector<std::pair<const Value*, const Value*>>& entries, const std::string& name,
                      const TensorLookup& lookup, Value& into) {
    for (const auto& [key, item] : entries) {
      CKPT_ASSIGN_OR_RETURN(std::string segment, key_segment(*key, name, file_));
      CKPT_ASSIGN_OR_RETURN(const Value* key_copy, copy(*key, name, no_tensors_));
      CKPT_ASSIGN_OR_RETURN(const Value* item_copy, copy(*item, child_name(name, segment), lookup));
      into.entries.emplace_back(key_copy, item_copy);
    }
    return {};
  }

  Result<const Value*> copy_node(const Value& value, const std::string& name, const TensorLookup& lookup) {
    switch (value.kind) {
      case Kind::kDict: {
        Value* copied = into_.dict(value.ordered);
        // An OrderedDict's _metadata holds no tensors that collect would name.
        CKPT_ASSIGN_OR_RETURN(copied->metadata, copy_if(value.metadata, name, no_tensors_));
        CKPT_TRY(copy_entries(value.entries, name, lookup, *copied));
        return copied;
      }
      case Kind::kList:
      case Kind::kTuple:
      case Kind::kSet: {
        Value* copied = into_.make(value.kind);
        for (std::size_t i = 0; i < value.items.size(); ++i) {
          const TensorLookup& inner = value.kind == Kind::kSet ? no_tensors_ : lookup;
          CKPT_ASSIGN_OR_RETURN(const Value* item, copy(*value.items[i], child_name(name, std::to_string(i)), inner));
          copied->items.push_back(item);
        }
        return copied;
      }
      case Kind::kOneflowTensor:
      case Kind::kTorchTensor: return lookup(tensor_name(name));
      case Kind::kStub: return value.is_module_stub() ? module_state_dict(value, name, lookup) : copy_object(value, name, lookup);
      case Kind::kNumpyArray:
        // Where collect names no tensor (a stub's arguments, a set) an array stays a value.
        return value.is_tensor() && &lookup != &no_tensors_ ? tensor_leaf(value, name, lookup)
                                                            : copy_object(value, name, no_tensors_);
      case Kind::kNumpyDtype:
      case Kind::kNumpyScalar: return copy_object(value, name, no_tensors_);
      case Kind::kTorchStorage:
      case Kind::kOneflowDtype:
        return std::move(Error(ErrorCode::kPickleStructure, fmt::format("a {} outside a tensor", kind_name(value.kind)))
                             .in_file(file_)
                             .in_variable(name));
      default: {  // None, bool, int, float, str, bytes, global: plain data
        Value* copied = into_.make(value.kind);
        *copied = value;
        return copied;
      }
    }
  }

  // A module stub is written as the state_dict its tensors make: the class
  // exists only in the program that saved it, and load_state_dict takes the dict.
  Result<const Value*> module_state_dict(const Value& value, const std::string& name, const TensorLookup& lookup) {
    std::vector<NamedTensor> members;
    CKPT_TRY(collect(value, "", file_, members));
    Value* state_dict = into_.dict(true);
    for (const NamedTensor& member : members) {
      CKPT_ASSIGN_OR_RETURN(const Value* tensor, tensor_leaf(*member.node, child_name(name, member.name), lookup));
      state_dict->entries.emplace_back(into_.string(member.name), tensor);
    }
    return state_dict;
  }

  // The writer's node for a tensor; for a numpy array given as kBytes, the
  // array as it was around those (C-order) bytes, its class and dtype shared.
  Result<const Value*> tensor_leaf(const Value& value, const std::string& name, const TensorLookup& lookup) {
    CKPT_ASSIGN_OR_RETURN(const Value* tensor, lookup(tensor_name(name)));
    if (value.kind != Kind::kNumpyArray || tensor->kind != Kind::kBytes) return tensor;
    Value* copied = into_.make(Kind::kNumpyArray);
    CKPT_ASSIGN_OR_RETURN(copied->cls, copy_if(value.cls, name, no_tensors_));
    for (const Value* item : value.items) {
      CKPT_ASSIGN_OR_RETURN(const Value* item_copy, copy(*item, name, no_tensors_));
      copied->items.push_back(item_copy);
    }
    const auto& fields = value.state->items;  // (version, shape, dtype, fortran, bytes)
    std::vector<const Value*> state;
    for (std::size_t i = 0; i < 3; ++i) {
      CKPT_ASSIGN_OR_RETURN(const Value* field, copy(*fields[i], name, no_tensors_));
      state.push_back(field);
    }
    const bool fortran = fields[3]->kind == Kind::kBool && fields[3]->boolean;
    if (fortran) {
      state.push_back(into_.boolean(false));  // the bytes given are C order
    } else {
      CKPT_ASSIGN_OR_RETURN(const Value* order, copy(*fields[3], name, no_tensors_));
      state.push_back(order);
    }
    state.push_back(tensor);
    copied->state = into_.tuple(std::move(state));
    return copied;
  }

  // A stub or numpy object as it was: class, arguments, items, state. Its
  // items and a dict state may hold tensors, named as collect names them.
  Result<const Value*> copy_object(const Value& value, const std::string& name, const TensorLookup& lookup) {
    Value* copied = into_.make(value.kind);
    copied->newobj = value.newobj;
    CKPT_ASSIGN_OR_RETURN(copied->cls, copy_if(value.cls, name, no_tensors_));
    for (const Value* item : value.items) {
      CKPT_ASSIGN_OR_RETURN(const Value* item_copy, copy(*item, name, no_tensors_));
      copied->items.push_back(item_copy);
    }
    CKPT_TRY(copy_entries(value.entries, name, lookup, *copied));
    const bool dict_state = value.state != nullptr && value.state->kind == Kind::kDict;
    CKPT_ASSIGN_OR_RETURN(copied->state, copy_if(value.state, name, dict_state ? lookup : no_tensors_));
    CKPT_ASSIGN_OR_RETURN(copied->decoded, copy_if(value.decoded, name, no_tensors_));
    return copied;
  }

  Document& into_;
  std::string file_;
  // Where no tensor may be: sets, OrderedDict metadata, keys, stub arguments, numpy objects.
  const TensorLookup no_tensors_ = [this](const std::string& inner) -> Result<const Value*> {
    return std::move(Error(ErrorCode::kPickleStructure,
                           "a tensor inside a set, an OrderedDict's _metadata, a dict key or a stub's arguments")
                         .in_file(file_)
                         .in_variable(inner));
  };
  std::unordered_map<const Value*, const Value*> copies_;
};

std::vector<std::string_view> split_dotted(std::string_view name) {
  std::vector<std::string_view> segments;
  for (std::size_t start = 0;;) {
    std::size_t dot = name.find('.', start);
    segments.push_back(name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) return segments;
    start = dot + 1;
  }
}

// A segment of decimal digits is an int key (optimizer state, list-like
// dicts), as flattening writes ints; "007" stays a str so it flattens back.
const Value* segment_key(Document& into, std::string_view segment) {
  bool is_int = !segment.empty() && segment.size() <= 18 && (segment == "0" || segment.front() != '0') &&
                std::all_of(segment.begin(), segment.end(), [](char c) { return c >= '0' && c <= '9'; });
  return is_int ? into.integer(std::stoll(std::string(segment))) : into.string(std::string(segment));
}

}  // namespace

bool holds_tensor(const Value& value, bool numpy_arrays) {
  if (value.kind == Kind::kOneflowTensor || value.kind == Kind::kTorchTensor) return true;
  if (value.kind == Kind::kNumpyArray) return numpy_arrays && value.is_tensor();
  auto any = [&](const auto& range, auto pick) {
    return std::any_of(range.begin(), range.end(), [&](const auto& item) { return holds_tensor(*pick(item), numpy_arrays); });
  };
  return any(value.items, [](const Value* item) { return item; }) ||
         any(value.entries, [](const auto& entry) { return entry.second; }) ||
         (value.state != nullptr && holds_tensor(*value.state, numpy_arrays));
}

std::vector<NamedStub> module_stubs(const Value& data) {
  std::vector<NamedStub> stubs;
  find_stubs(data, "", stubs);
  return stubs;
}

Result<const Value*> copy_replacing_tensors(const Value& data, Document& into, const TensorLookup& tensor_named,
                                            std::string_view file) {
  return TreeCopier(into, file).copy(data, "", tensor_named);
}

Result<const Value*> nest_tensors(Document& into, const std::vector<std::pair<std::string, const Value*>>& tensors,
                                  std::span<const std::string> prefixes, const std::function<Value*()>& make_state_dict,
                                  std::string_view file) {
  std::vector<std::vector<std::string_view>> patterns;
  for (const std::string& prefix : prefixes) patterns.push_back(split_dotted(prefix));
  Value* top = into.dict();
  // (dict, key segment) -> the dict under it, or nullptr for a tensor.
  std::map<std::pair<const Value*, std::string>, Value*, std::less<>> children;
  for (const auto& entry : tensors) {
    const auto& name = entry.first;
    const auto& tensor = entry.second;
    auto conflict = [&]() {
      return std::move(Error(ErrorCode::kDuplicateName, "a key is both a tensor and a dict of tensors when nested")
                           .in_file(file)
                           .in_variable(name));
    };
    auto segments = split_dotted(name);
    std::size_t depth = 0;  // leading segments that become dict keys
    for (const auto& pattern : patterns) {
      bool matches = pattern.size() < segments.size() && pattern.size() > depth &&
                     std::equal(pattern.begin(), pattern.end(), segments.begin(),
                                [](std::string_view p, std::string_view s) { return p == "*" || p == s; });
      if (matches) depth = pattern.size();
    }
    Value* dict = top;
    for (std::size_t i = 0; i < depth; ++i) {
      auto [slot, created] = children.try_emplace({dict, std::string(segments[i])}, nullptr);
      if (created) {
        slot->second = i + 1 == depth ? make_state_dict() : into.dict();
        dict->entries.emplace_back(segment_key(into, segments[i]), slot->second);
      } else if (slot->second == nullptr) {
        return conflict();
      }
      dict = slot->second;
    }
    std::string leaf_key = depth == 0 ? name : name.substr(static_cast<std::size_t>(segments[depth].data() - name.data()));
    if (!children.try_emplace({dict, leaf_key}, nullptr).second) return conflict();
    dict->entries.emplace_back(into.string(leaf_key), tensor);
  }
  return top;
}

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
