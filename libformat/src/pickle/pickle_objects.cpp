// The non-tensor data of a pickle's object: its leaves, their Python repr()
// and equality, for ckpt-inspect, ckpt-diff and the converter's warning.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "ckpt/format/pickle.hpp"

namespace ckpt::pickle {
namespace {

std::string qualified(const Value& global) { return global.text + "." + global.name; }

// numpy's dtype as numpy writes it ("<u4"), from dtype(code, False, True) + BUILD (3, order, ...).
std::string numpy_descr(const Value* dtype) {
  if (dtype == nullptr || dtype->kind != Kind::kNumpyDtype || dtype->items.size() != 1 || dtype->items[0]->items.empty()) {
    return "?";
  }
  std::string order = dtype->state != nullptr && dtype->state->items.size() > 1 ? dtype->state->items[1]->text : "";
  return order + dtype->items[0]->items[0]->text;
}

// numpy's scalar type name for a dtype code: "f8" -> "float64", "b1" -> "bool_".
std::string numpy_scalar_type(const Value& scalar) {
  std::string descr = scalar.items.empty() || scalar.items[0]->items.empty() ? "?" : numpy_descr(scalar.items[0]->items[0]);
  std::string code = descr.size() >= 2 && (descr[0] == '<' || descr[0] == '>' || descr[0] == '|' || descr[0] == '=')
                         ? descr.substr(1)
                         : descr;
  if (code == "b1") return "numpy.bool_";
  if (code.size() < 2) return "numpy.generic";
  const std::string bits = std::to_string(std::atoi(code.c_str() + 1) * 8);
  switch (code[0]) {
    case 'f': return "numpy.float" + bits;
    case 'i': return "numpy.int" + bits;
    case 'u': return "numpy.uint" + bits;
    case 'c': return "numpy.complex" + bits;
    default: return "numpy.generic";
  }
}

std::string type_of(const Value& value) {
  switch (value.kind) {
    case Kind::kDict: return value.ordered ? "collections.OrderedDict" : "dict";
    case Kind::kStub: return qualified(*value.cls);
    case Kind::kNumpyArray: return "numpy.ndarray";
    case Kind::kNumpyScalar: return numpy_scalar_type(value);
    default: return std::string(kind_name(value.kind));
  }
}

// Builds a repr() and stops once it is over the limit.
class Repr {
 public:
  explicit Repr(std::size_t limit) : limit_(limit) {}

  std::optional<std::string> of(const Value& value) {
    put(value);
    if (out_.size() > limit_) return std::nullopt;
    return std::move(out_);
  }

 private:
  bool over() const { return out_.size() > limit_; }

  void put_str(std::string_view text, bool bytes) {
    if (bytes) out_ += 'b';
    // Python quotes with ' unless the text has a ' and no ".
    const char quote = text.find('\'') != std::string_view::npos && text.find('"') == std::string_view::npos ? '"' : '\'';
    out_ += quote;
    for (char c : text) {
      auto byte = static_cast<unsigned char>(c);
      if (over()) return;
      if (c == '\\' || c == quote) {
        out_ += '\\';
        out_ += c;
      } else if (c == '\n') {
        out_ += "\\n";
      } else if (c == '\r') {
        out_ += "\\r";
      } else if (c == '\t') {
        out_ += "\\t";
      } else if (byte < 0x20 || byte == 0x7f || (bytes && byte >= 0x80)) {
        out_ += fmt::format("\\x{:02x}", byte);
      } else {
        out_ += c;  // UTF-8 of a str stays as it is; callers escape it for the terminal
      }
    }
    out_ += quote;
  }

  void put_float(double real) {
    if (std::isnan(real)) {
      out_ += "nan";
    } else if (std::isinf(real)) {
      out_ += real > 0 ? "inf" : "-inf";
    } else {
      std::string text = fmt::format("{}", real);  // shortest round trip, as Python's repr
      if (text.find_first_of(".en") == std::string::npos) text += ".0";
      out_ += text;
    }
  }

  void put_items(const std::vector<const Value*>& items) {
    for (std::size_t i = 0; i < items.size() && !over(); ++i) {
      if (i > 0) out_ += ", ";
      put(*items[i]);
    }
  }

  void put_entries(const std::vector<std::pair<const Value*, const Value*>>& entries, std::string_view between) {
    for (std::size_t i = 0; i < entries.size() && !over(); ++i) {
      if (i > 0) out_ += ", ";
      put(*entries[i].first);
      out_ += between;
      put(*entries[i].second);
    }
  }

  void put_shape(const std::vector<std::int64_t>& shape) {
    out_ += '[';
    for (std::size_t i = 0; i < shape.size(); ++i) out_ += (i > 0 ? ", " : "") + std::to_string(shape[i]);
    out_ += ']';
  }

  void put(const Value& value) {
    if (over()) return;
    switch (value.kind) {
      case Kind::kNone: out_ += "None"; return;
      case Kind::kBool: out_ += value.boolean ? "True" : "False"; return;
      case Kind::kInt: out_ += std::to_string(value.integer); return;
      case Kind::kFloat: put_float(value.real); return;
      case Kind::kString: put_str(value.text, false); return;
      case Kind::kBytes: put_str(value.text, true); return;
      case Kind::kTuple:
        out_ += '(';
        put_items(value.items);
        out_ += value.items.size() == 1 ? ",)" : ")";
        return;
      case Kind::kList:
        out_ += '[';
        put_items(value.items);
        out_ += ']';
        return;
      case Kind::kSet:
        if (value.items.empty()) {
          out_ += "set()";
          return;
        }
        out_ += '{';
        put_items(value.items);
        out_ += '}';
        return;
      case Kind::kDict:
        if (value.ordered) {
          out_ += "OrderedDict({";
          put_entries(value.entries, ": ");
          out_ += "})";
          return;
        }
        out_ += '{';
        put_entries(value.entries, ": ");
        out_ += '}';
        return;
      case Kind::kGlobal: out_ += qualified(value); return;
      case Kind::kOneflowTensor: out_ += "tensor(oneflow)"; return;
      case Kind::kTorchTensor:
        out_ += fmt::format("tensor({}", dtype_name(value.tensor.dtype));
        put_shape(value.tensor.shape);
        out_ += ')';
        return;
      case Kind::kTorchStorage: out_ += "storage('" + value.storage.key + "')"; return;
      case Kind::kNumpyArray: {
        // BUILD state (1, shape, dtype, fortran, bytes)
        const Value* state = value.state;
        out_ += "array(";
        if (state != nullptr && state->items.size() == 5) {
          out_ += "shape=";
          put(*state->items[1]);
          out_ += ", dtype='" + numpy_descr(state->items[2]) + "'";
        }
        out_ += ')';
        return;
      }
      case Kind::kNumpyDtype: out_ += "dtype('" + numpy_descr(&value) + "')"; return;
      case Kind::kNumpyScalar:
        if (value.decoded != nullptr) {
          out_ += numpy_scalar_type(value).substr(6) + "(";  // "float64(0.25)", as NumPy 2 shows it
          put(*value.decoded);
          out_ += ')';
        } else {
          out_ += numpy_scalar_type(value) + "(...)";
        }
        return;
      case Kind::kOneflowDtype: out_ += fmt::format("oneflow.dtype({})", value.state ? value.state->integer : -1); return;
      case Kind::kStub: put_stub(value); return;
    }
  }

  // module.Class(args, attributes) as Python shows argparse.Namespace(lr=0.1):
  // the arguments of REDUCE or NEWOBJ, then a dict state as attributes; a
  // dict subclass's items follow in braces, any other state after "state=".
  void put_stub(const Value& stub) {
    out_ += qualified(*stub.cls) + '(';
    bool first = true;
    auto separate = [&] {
      if (!first) out_ += ", ";
      first = false;
    };
    if (!stub.items.empty()) {
      for (const Value* argument : stub.items[0]->items) {
        separate();
        put(*argument);
      }
    }
    const bool attributes = stub.state != nullptr && stub.state->kind == Kind::kDict && !stub.state->ordered;
    if (attributes) {
      for (const auto& [key, item] : stub.state->entries) {
        if (over()) return;
        separate();
        if (key->kind == Kind::kString) {
          out_ += key->text;
        } else {
          put(*key);
        }
        out_ += '=';
        put(*item);
      }
    }
    out_ += ')';
    if (!stub.entries.empty()) {
      out_ += '{';
      put_entries(stub.entries, ": ");
      out_ += '}';
    }
    if (stub.state != nullptr && !attributes) {
      out_ += " state=";
      put(*stub.state);
    }
  }

  std::size_t limit_;
  std::string out_;
};

std::string segment_of(const Value& key) {
  if (key.kind == Kind::kString) return key.text;
  if (key.kind == Kind::kInt) return std::to_string(key.integer);
  return python_repr(key, 64).value_or("<key>");
}

std::string child_path(const std::string& parent, const std::string& segment) {
  return parent.empty() ? segment : parent + "." + segment;
}

void walk(const Value& value, const std::string& path, std::vector<ObjectLeaf>& out) {
  auto walk_entries = [&](const std::vector<std::pair<const Value*, const Value*>>& entries) {
    for (const auto& [key, item] : entries) walk(*item, child_path(path, segment_of(*key)), out);
  };
  if (value.is_tensor()) return;
  switch (value.kind) {
    case Kind::kDict:
      if (value.entries.empty()) {
        out.push_back({path, type_of(value), &value});
        return;
      }
      walk_entries(value.entries);
      return;
    case Kind::kList:
    case Kind::kTuple:
      if (!holds_tensor(value)) {
        out.push_back({path, type_of(value), &value});
        return;
      }
      for (std::size_t i = 0; i < value.items.size(); ++i) walk(*value.items[i], child_path(path, std::to_string(i)), out);
      return;
    case Kind::kStub:
      if (value.is_module_stub()) return;
      out.push_back({path, type_of(value), &value});
      // Where its tensors are named (items, a dict state; not its arguments), as collect names them.
      if (std::any_of(value.entries.begin(), value.entries.end(), [](const auto& entry) { return holds_tensor(*entry.second); }) ||
          (value.state != nullptr && value.state->kind == Kind::kDict && holds_tensor(*value.state))) {
        walk_entries(value.entries);
        if (value.state != nullptr && value.state->kind == Kind::kDict) walk_entries(value.state->entries);
      }
      return;
    default: out.push_back({path, type_of(value), &value}); return;
  }
}

bool same_list(const std::vector<const Value*>& a, const std::vector<const Value*>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](const Value* x, const Value* y) { return same_value(*x, *y); });
}

bool same_entries(const std::vector<std::pair<const Value*, const Value*>>& a,
                  const std::vector<std::pair<const Value*, const Value*>>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
           return same_value(*x.first, *y.first) && same_value(*x.second, *y.second);
         });
}

bool same_optional(const Value* a, const Value* b) {
  return (a == nullptr) == (b == nullptr) && (a == nullptr || same_value(*a, *b));
}

}  // namespace

std::vector<ObjectLeaf> object_leaves(const Value& data) {
  std::vector<ObjectLeaf> leaves;
  walk(data, "", leaves);
  return leaves;
}

std::optional<std::string> python_repr(const Value& value, std::size_t limit) { return Repr(limit).of(value); }

bool same_value(const Value& a, const Value& b) {
  if (&a == &b) return true;
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kNone: return true;
    case Kind::kBool: return a.boolean == b.boolean;
    case Kind::kInt: return a.integer == b.integer;
    case Kind::kFloat: return a.real == b.real || (std::isnan(a.real) && std::isnan(b.real));
    case Kind::kString:
    case Kind::kBytes: return a.text == b.text;
    case Kind::kGlobal: return a.text == b.text && a.name == b.name;
    case Kind::kTuple:
    case Kind::kList:
    case Kind::kSet: return same_list(a.items, b.items);
    case Kind::kDict: return a.ordered == b.ordered && same_entries(a.entries, b.entries);
    case Kind::kTorchTensor: return a.tensor.dtype == b.tensor.dtype && a.tensor.shape == b.tensor.shape;
    case Kind::kOneflowTensor: return true;
    case Kind::kTorchStorage: return a.storage.key == b.storage.key;
    default:  // stubs and numpy objects: class, arguments, items, state
      return same_optional(a.cls, b.cls) && same_list(a.items, b.items) && same_entries(a.entries, b.entries) &&
             same_optional(a.state, b.state) && a.newobj == b.newobj;
  }
}

}  // namespace ckpt::pickle
