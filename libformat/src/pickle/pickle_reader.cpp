// The data-only pickle machine. It knows how to build values and the
// builders of the allow-list; there is no path from the input to any other
// code, since no opcode can name a function the table does not hold.
#include <algorithm>
#include <bit>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "ckpt/format/pickle.hpp"
#include "pickle/pickle_allowlist.hpp"
#include "pickle/pickle_opcodes.hpp"
#include "core/little_endian.hpp"
#include "core/utf8.hpp"

namespace ckpt::pickle {
namespace {

// latin-1 bytes from a UTF-8 string whose code points are all below 256.
std::optional<std::string> latin1_from_utf8(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      out.push_back(static_cast<char>(byte));
    } else if ((byte == 0xC2 || byte == 0xC3) && i + 1 < text.size()) {
      out.push_back(static_cast<char>(((byte & 0x03) << 6) | (static_cast<unsigned char>(text[++i]) & 0x3F)));
    } else {
      return std::nullopt;
    }
  }
  return out;
}

class Machine {
 public:
  Machine(std::span<const std::byte> input, const ReadOptions& options, std::string_view name)
      : input_(input), options_(options), limits_(options.limits), name_(name) {}

  // The pickle, which must end at the end of the input unless
  // `bytes_after_stop` is allowed.
  Result<Document> run(bool bytes_after_stop = false);
  std::uint64_t position() const { return position_; }

 private:
  Error fail(ErrorCode code, std::string message) const {
    return Error(code, fmt::format("at byte {} (opcode 0x{:02x}): {}", opcode_offset_, opcode_, message))
        .in_file(name_);
  }
  Error malformed(std::string message) const { return fail(ErrorCode::kPickleMalformed, std::move(message)); }

  Result<std::span<const std::byte>> take(std::uint64_t count);
  template <class T>
  Result<T> little_endian();
  Result<std::string> take_text(std::uint64_t count) {
    CKPT_ASSIGN_OR_RETURN(auto bytes, take(count));
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  Result<std::string> take_line();

  Result<Value*> make(Kind kind);
  Status charge(std::uint64_t bytes);
  Status charge_items(std::size_t count) { return charge(count * sizeof(const Value*)); }
  Status push(Value* value);
  Result<Value*> pop();
  Result<Value*> top();
  Result<std::vector<Value*>> pop_mark();
  Result<Value*> memo_get(std::uint64_t index);
  Status memo_put(std::uint64_t index);

  Status step(std::uint8_t opcode);
  Status push_string(std::string text, bool binary);
  Status push_integer_bytes(std::span<const std::byte> bytes);
  Status set_items(Value& dict, const std::vector<Value*>& flat);
  Status add_items(Value& set, const std::vector<Value*>& items);
  Status push_global(std::string module, std::string name);
  Error not_allowed(const Value& global, std::string_view use = {}) const;
  // A global's name as Python 3 imports it: protocols 0-2 map Python 2 names.
  detail::GlobalName python3(std::string_view module, std::string_view name) const {
    return protocol_ <= 2 ? detail::python3_name(module, name) : detail::GlobalName{module, name};
  }
  const detail::AllowedGlobal* listed(std::string_view module, std::string_view name) const {
    auto global = python3(module, name);
    return detail::find_allowed(global.module, global.name, options_.flavor, options_.policy);
  }
  bool policy_allows(std::string_view module, std::string_view name) const {
    auto global = python3(module, name);
    return options_.policy.allows(global.module, global.name);
  }
  bool unlisted(const Value& value) const;
  bool stubbable(const Value& value) const;
  Result<Value*> make_stub(Value* cls, Value* args, bool newobj);
  Result<Value*> numpy_scalar(const std::vector<const Value*>& args, std::string_view qualified);
  Status reduce();
  Status new_object();
  Status build();
  Status persistent_id();
  Result<Value*> rebuild_tensor(const std::vector<const Value*>& args, bool v3);
  Status check_tree(const Value* root) const;

  std::span<const std::byte> input_;
  std::uint64_t position_ = 0;
  std::uint64_t opcode_offset_ = 0;
  std::uint8_t opcode_ = 0;
  const ReadOptions& options_;
  const ReadLimits& limits_;
  std::string name_;
  Document document_;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Value*> memo_;
  std::unordered_map<std::string, Value*> storages_;  // torch loads each storage key once
  std::uint64_t decoded_bytes_ = 0;  // charged against limits_.max_decoded_bytes
  bool stopped_ = false;
  int protocol_ = 0;  // PROTO's; 0 until it is read
};

Result<std::span<const std::byte>> Machine::take(std::uint64_t count) {
  if (count > input_.size() - position_) {
    return fail(ErrorCode::kPickleTruncated,
                fmt::format("needs {} more bytes, {} are left", count, input_.size() - position_));
  }
  auto bytes = input_.subspan(static_cast<std::size_t>(position_), static_cast<std::size_t>(count));
  position_ += count;
  return bytes;
}

template <class T>
Result<T> Machine::little_endian() {
  CKPT_ASSIGN_OR_RETURN(auto bytes, take(sizeof(T)));
  return static_cast<T>(static_cast<std::make_unsigned_t<T>>(ckpt::detail::load_le(std::as_bytes(bytes))));
}

Result<std::string> Machine::take_line() {
  std::string line;
  while (true) {
    CKPT_ASSIGN_OR_RETURN(auto byte, take(1));
    char c = static_cast<char>(byte[0]);
    if (c == '\n') return line;
    if (line.size() >= 256) return malformed("a GLOBAL name longer than 256 bytes");
    line.push_back(c);
  }
}

// What one node costs: the Value, its owning pointer and the allocator's header.
constexpr std::uint64_t kNodeBytes = sizeof(Value) + sizeof(std::unique_ptr<Value>) + 16;
constexpr std::uint64_t kMemoEntryBytes = 48;  // an unordered_map node

Result<Value*> Machine::make(Kind kind) {
  if (document_.size() >= limits_.max_values) {
    return fail(ErrorCode::kPickleLimit, fmt::format("more than {} values", limits_.max_values));
  }
  CKPT_TRY(charge(kNodeBytes));
  return document_.make(kind);
}

// Memory is capped by bytes, not only by counts: a 4 MB pickle of NONEs made
// 4M nodes of a few hundred bytes each (1.7 GB). Every node, string and
// container slot the decoded object holds is charged before it is made.
Status Machine::charge(std::uint64_t bytes) {
  decoded_bytes_ += bytes;
  if (decoded_bytes_ > limits_.max_decoded_bytes) {
    return fail(ErrorCode::kPickleLimit, fmt::format("the decoded object needs more than {} bytes (max_decoded_bytes)",
                                                     limits_.max_decoded_bytes));
  }
  return {};
}

Status Machine::push(Value* value) {
  if (stack_.size() + marks_.size() >= limits_.max_stack) {
    return fail(ErrorCode::kPickleLimit, fmt::format("stack deeper than {} entries", limits_.max_stack));
  }
  stack_.push_back(value);
  return {};
}

Result<Value*> Machine::pop() {
  std::size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) return malformed("pops from an empty stack");
  Value* value = stack_.back();
  stack_.pop_back();
  return value;
}

Result<Value*> Machine::top() {
  std::size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) return malformed("needs an operand on an empty stack");
  return stack_.back();
}

Result<std::vector<Value*>> Machine::pop_mark() {
  if (marks_.empty()) return malformed("needs a MARK, there is none");
  std::size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
  stack_.resize(mark);
  return items;
}

Result<Value*> Machine::memo_get(std::uint64_t index) {
  auto it = memo_.find(index);
  if (it == memo_.end()) return malformed(fmt::format("memo has no entry {}", index));
  CKPT_TRY(push(it->second));
  return it->second;
}

Status Machine::memo_put(std::uint64_t index) {
  CKPT_ASSIGN_OR_RETURN(Value * value, top());
  if (index >= limits_.max_memo) {
    return fail(ErrorCode::kPickleLimit, fmt::format("memo index {} is over the cap of {}", index, limits_.max_memo));
  }
  if (!memo_.contains(index) && memo_.size() >= limits_.max_memo) {
    return fail(ErrorCode::kPickleLimit, fmt::format("more than {} memo entries", limits_.max_memo));
  }
  if (!memo_.contains(index)) CKPT_TRY(charge(kMemoEntryBytes));
  memo_[index] = value;
  return {};
}

Status Machine::push_string(std::string text, bool binary) {
  if (!binary && ckpt::detail::utf8_error_offset(text, ckpt::detail::Surrogates::kAllowed)) {
    return malformed("a str that is not valid UTF-8");
  }
  CKPT_TRY(charge(text.size()));
  CKPT_ASSIGN_OR_RETURN(Value * value, make(binary ? Kind::kBytes : Kind::kString));
  value->text = std::move(text);
  return push(value);
}

// LONG1/LONG4: little-endian two's complement, kept only when it fits 64 bits.
Status Machine::push_integer_bytes(std::span<const std::byte> bytes) {
  std::uint64_t raw = 0;
  bool negative = !bytes.empty() && (static_cast<unsigned>(bytes.back()) & 0x80) != 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto byte = static_cast<std::uint64_t>(bytes[i]);
    if (i < 8) {
      raw |= byte << (8 * i);
    } else if (byte != (negative ? 0xFFu : 0u)) {
      return fail(ErrorCode::kPickleLimit, "an integer wider than 64 bits");
    }
  }
  if (bytes.size() < 8 && negative) raw |= ~std::uint64_t{0} << (8 * bytes.size());
  if (bytes.size() > 8 && ((raw >> 63) != 0) != negative) return fail(ErrorCode::kPickleLimit, "an integer wider than 64 bits");
  CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kInt));
  value->integer = static_cast<std::int64_t>(raw);
  return push(value);
}

Status Machine::set_items(Value& dict, const std::vector<Value*>& flat) {
  // A stub of an allowed class takes items as a dict subclass's reduce gives them.
  bool stub_items = dict.kind == Kind::kStub && stubbable(*dict.cls);
  if (dict.kind != Kind::kDict && !stub_items) {
    return malformed(fmt::format("SETITEM(S) on a {}, not a dict", kind_name(dict.kind)));
  }
  if (flat.size() % 2 != 0) return malformed("SETITEMS with an odd number of items");
  CKPT_TRY(charge_items(flat.size()));
  for (std::size_t i = 0; i < flat.size(); i += 2) {
    const Value* key = flat[i];
    if (key->kind != Kind::kString && key->kind != Kind::kInt && key->kind != Kind::kBool && key->kind != Kind::kNone &&
        key->kind != Kind::kTuple && key->kind != Kind::kFloat && key->kind != Kind::kBytes) {
      return malformed(fmt::format("a dict key of kind {}", kind_name(key->kind)));
    }
    dict.entries.emplace_back(key, flat[i + 1]);
  }
  return {};
}

Status Machine::add_items(Value& set, const std::vector<Value*>& items) {
  if (set.kind != Kind::kSet) return malformed(fmt::format("ADDITEMS on a {}, not a set", kind_name(set.kind)));
  CKPT_TRY(charge_items(items.size()));
  set.items.insert(set.items.end(), items.begin(), items.end());
  return {};
}

bool is_torchscript_class(const ReadOptions& options, std::string_view module) {
  return options.torchscript_classes && (module == "__torch__" || module.starts_with("__torch__."));
}

Error Machine::not_allowed(const Value& global, std::string_view use) const {
  return fail(ErrorCode::kPickleForbiddenGlobal,
              fmt::format("global '{}.{}' is not on the allow-list{}; nothing was run", global.text, global.name, use));
}

// A global off the list that the policy does not allow either.
bool Machine::unlisted(const Value& value) const {
  return value.kind == Kind::kGlobal && listed(value.text, value.name) == nullptr &&
         !policy_allows(value.text, value.name);
}

// A global off the list that the policy allows: its objects become stubs.
bool Machine::stubbable(const Value& value) const {
  return value.kind == Kind::kGlobal && listed(value.text, value.name) == nullptr &&
         policy_allows(value.text, value.name);
}

// cls(*args) kept as data: nothing of cls is imported or called.
Result<Value*> Machine::make_stub(Value* cls, Value* args, bool newobj) {
  CKPT_TRY(charge_items(1));
  CKPT_ASSIGN_OR_RETURN(Value * stub, make(Kind::kStub));
  stub->cls = cls;
  stub->items = {args};
  stub->newobj = newobj;
  return stub;
}

// A global off the list is refused here, unless it is a TorchScript class or
// the policy may keep an object of it as a stub: then it is refused on any
// use but that one.
Status Machine::push_global(std::string module, std::string name) {
  if (listed(module, name) == nullptr && !is_torchscript_class(options_, module) && !options_.policy.stub_modules &&
      !policy_allows(module, name)) {
    return fail(ErrorCode::kPickleForbiddenGlobal,
                fmt::format("global '{}.{}' is not on the allow-list; nothing was run", module, name));
  }
  CKPT_TRY(charge(module.size() + name.size()));
  CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kGlobal));
  value->text = std::move(module);
  value->name = std::move(name);
  return push(value);
}

Status Machine::reduce() {
  CKPT_ASSIGN_OR_RETURN(Value * args, pop());
  CKPT_ASSIGN_OR_RETURN(Value * callable, pop());
  if (callable->kind != Kind::kGlobal) {
    return fail(ErrorCode::kPickleForbiddenCall, fmt::format("REDUCE calls a {}, not a global", kind_name(callable->kind)));
  }
  std::string qualified = fmt::format("{}.{}", callable->text, callable->name);
  if (args->kind != Kind::kTuple) return malformed(fmt::format("REDUCE of '{}' with a {} of arguments", qualified, kind_name(args->kind)));
  const auto& a = args->items;
  const detail::AllowedGlobal* allowed = listed(callable->text, callable->name);
  for (const Value* argument : a) {
    if (unlisted(*argument)) return not_allowed(*argument, fmt::format(" (an argument of '{}')", qualified));
  }
  if (allowed == nullptr && stubbable(*callable)) {
    CKPT_ASSIGN_OR_RETURN(Value * stub, make_stub(callable, args, /*newobj=*/false));
    return push(stub);
  }
  if (allowed == nullptr) return not_allowed(*callable, " (called by REDUCE)");
  auto bad_arguments = [&](std::string_view expected) {
    return fail(ErrorCode::kPickleForbiddenCall,
                fmt::format("'{}' called with {} arguments; only {} is allowed", qualified, a.size(), expected));
  };
  Value* result = nullptr;
  switch (allowed->builder) {
    case detail::Builder::kOrderedDict: {
      if (!a.empty()) return bad_arguments("OrderedDict()");
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kDict));
      result->ordered = true;
      break;
    }
    case detail::Builder::kSet: {
      if (a.size() > 1 || (a.size() == 1 && a[0]->kind != Kind::kList)) return bad_arguments("set() or set(list)");
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kSet));
      if (a.size() == 1) {
        CKPT_TRY(charge_items(a[0]->items.size()));
        result->items = a[0]->items;
      }
      break;
    }
    case detail::Builder::kCodecsEncode: {
      if (a.size() != 2 || a[0]->kind != Kind::kString || !a[1]->is_string("latin1")) {
        return bad_arguments("encode(str, 'latin1')");
      }
      auto bytes = latin1_from_utf8(a[0]->text);
      if (!bytes) return malformed("_codecs.encode of a str that is not latin-1");
      CKPT_TRY(charge(bytes->size()));
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kBytes));
      result->text = std::move(*bytes);
      break;
    }
    case detail::Builder::kRebuildTensorV2:
    case detail::Builder::kRebuildTensorV3: {
      CKPT_ASSIGN_OR_RETURN(result, rebuild_tensor({a.begin(), a.end()}, allowed->builder == detail::Builder::kRebuildTensorV3));
      break;
    }
    case detail::Builder::kRebuildParameter: {
      if (a.size() != 3 || a[0]->kind != Kind::kTorchTensor || a[1]->kind != Kind::kBool) {
        return bad_arguments("_rebuild_parameter(tensor, bool, hooks)");
      }
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kTorchTensor));
      result->tensor = a[0]->tensor;
      result->tensor.requires_grad = a[1]->boolean;
      result->tensor.parameter = true;
      break;
    }
    case detail::Builder::kTorchSize: {
      if (a.size() != 1 || a[0]->kind != Kind::kTuple) return bad_arguments("Size(tuple)");
      CKPT_TRY(charge_items(a[0]->items.size()));
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kTuple));
      result->items = a[0]->items;
      break;
    }
    case detail::Builder::kNumpyReconstruct: {
      const detail::AllowedGlobal* cls =
          a.size() == 3 && a[0]->kind == Kind::kGlobal ? listed(a[0]->text, a[0]->name) : nullptr;
      if (cls == nullptr || cls->builder != detail::Builder::kNumpyNdarray || a[1]->kind != Kind::kTuple ||
          a[2]->kind != Kind::kBytes) {
        return bad_arguments("_reconstruct(numpy.ndarray, tuple, bytes)");
      }
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kNumpyArray));
      break;
    }
    case detail::Builder::kNumpyDtype: {
      if (a.size() != 3 || a[0]->kind != Kind::kString || a[1]->kind != Kind::kBool || a[2]->kind != Kind::kBool) {
        return bad_arguments("dtype(str, bool, bool)");
      }
      CKPT_ASSIGN_OR_RETURN(result, make(Kind::kNumpyDtype));
      break;
    }
    case detail::Builder::kNumpyScalar: {
      CKPT_ASSIGN_OR_RETURN(result, numpy_scalar({a.begin(), a.end()}, qualified));
      break;
    }
    case detail::Builder::kOneflowTensor:
    case detail::Builder::kTorchStorageType:
    case detail::Builder::kTorchDtype:
    case detail::Builder::kNumpyNdarray:
    case detail::Builder::kOneflowDtype:
      return fail(ErrorCode::kPickleForbiddenCall, fmt::format("'{}' may not be called by REDUCE", qualified));
  }
  if (result->kind == Kind::kNumpyArray || result->kind == Kind::kNumpyDtype || result->kind == Kind::kNumpyScalar) {
    result->cls = callable;
    result->items = {args};
  }
  return push(result);
}

// numpy.core.multiarray.scalar(dtype, bytes), as numpy pickles np.float64(1.5):
// the value is decoded for bool, int and float dtypes of 1 to 8 bytes in
// little-endian (or single-byte) order; others keep their bytes only.
Result<Value*> Machine::numpy_scalar(const std::vector<const Value*>& a, std::string_view qualified) {
  const Value* dtype = a.size() == 2 ? a[0] : nullptr;
  const Value* dtype_args = dtype != nullptr && dtype->kind == Kind::kNumpyDtype && dtype->items.size() == 1 ? dtype->items[0] : nullptr;
  if (dtype_args == nullptr || dtype_args->items.empty() || dtype_args->items[0]->kind != Kind::kString ||
      dtype->state == nullptr || dtype->state->items[1]->kind != Kind::kString || a[1]->kind != Kind::kBytes) {
    return fail(ErrorCode::kPickleForbiddenCall,
                fmt::format("'{}' called with other than (a built numpy dtype, bytes)", qualified));
  }
  const std::string& code = dtype_args->items[0]->text;  // "f8", "i4", "u1", "b1"
  const std::string& order = dtype->state->items[1]->text;
  const std::string& raw = a[1]->text;
  CKPT_ASSIGN_OR_RETURN(Value * scalar, make(Kind::kNumpyScalar));
  const bool little = order == "<" || order == "|" || (order == "=" && std::endian::native == std::endian::little);
  const std::size_t width = code.size() == 2 && code[1] >= '1' && code[1] <= '8' ? static_cast<std::size_t>(code[1] - '0') : 0;
  if (!little || width == 0 || raw.size() != width) return scalar;
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < width; ++i) bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(raw[i])) << (8 * i);
  Value* decoded = nullptr;
  if (code[0] == 'b' && width == 1 && bits <= 1) {
    CKPT_ASSIGN_OR_RETURN(decoded, make(Kind::kBool));
    decoded->boolean = bits == 1;
  } else if (code[0] == 'i' && (width == 1 || width == 2 || width == 4 || width == 8)) {
    const unsigned shift = static_cast<unsigned>(64 - 8 * width);
    CKPT_ASSIGN_OR_RETURN(decoded, make(Kind::kInt));
    decoded->integer = static_cast<std::int64_t>(bits << shift) >> shift;  // sign-extended
  } else if (code[0] == 'u' && (width == 1 || width == 2 || width == 4 || (width == 8 && bits <= INT64_MAX))) {
    CKPT_ASSIGN_OR_RETURN(decoded, make(Kind::kInt));
    decoded->integer = static_cast<std::int64_t>(bits);
  } else if (code[0] == 'f' && (width == 4 || width == 8)) {
    CKPT_ASSIGN_OR_RETURN(decoded, make(Kind::kFloat));
    decoded->real = width == 8 ? std::bit_cast<double>(bits) : std::bit_cast<float>(static_cast<std::uint32_t>(bits));
  }
  scalar->decoded = decoded;
  return scalar;
}

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]);
// _rebuild_tensor_v3 has a torch dtype after the hooks and needs an untyped storage.
Result<Value*> Machine::rebuild_tensor(const std::vector<const Value*>& all_args, bool v3) {
  std::vector<const Value*> a = all_args;
  const detail::AllowedGlobal* dtype = nullptr;
  if (v3) {
    if (a.size() >= 7 && a[6]->kind == Kind::kGlobal) dtype = listed(a[6]->text, a[6]->name);
    if (dtype == nullptr || dtype->builder != detail::Builder::kTorchDtype || a[0]->kind != Kind::kTorchStorage ||
        !a[0]->storage.untyped) {
      return fail(ErrorCode::kPickleForbiddenCall,
                  "_rebuild_tensor_v3 needs (UntypedStorage, offset, size, stride, bool, hooks, a torch dtype this "
                  "reader knows[, metadata])");
    }
    a.erase(a.begin() + 6);
  }
  auto ints = [](const Value* tuple, std::vector<std::int64_t>& out) {
    if (tuple->kind != Kind::kTuple) return false;
    for (const Value* item : tuple->items) {
      if (item->kind != Kind::kInt || item->integer < 0) return false;
      out.push_back(item->integer);
    }
    return true;
  };
  TorchTensorInfo info;
  bool ok = (a.size() == 6 || a.size() == 7) && a[0]->kind == Kind::kTorchStorage && a[1]->kind == Kind::kInt &&
            a[1]->integer >= 0 && ints(a[2], info.shape) && ints(a[3], info.stride) &&
            info.shape.size() == info.stride.size() && a[4]->kind == Kind::kBool && a[5]->kind == Kind::kDict &&
            a[5]->entries.empty() && (a.size() == 6 || (a[6]->kind == Kind::kDict && a[6]->entries.empty()));
  if (!ok) {
    return fail(ErrorCode::kPickleForbiddenCall,
                "_rebuild_tensor_v2 needs (storage, offset >= 0, size, stride of equal rank with non-negative ints, "
                "bool, empty hooks[, empty metadata])");
  }
  if (!v3 && a[0]->storage.untyped) {
    return fail(ErrorCode::kPickleForbiddenCall, "_rebuild_tensor_v2 of an UntypedStorage, which has no element type");
  }
  info.storage = a[0];
  info.dtype = v3 ? dtype->dtype : a[0]->storage.dtype;
  info.storage_offset = static_cast<std::uint64_t>(a[1]->integer);
  info.requires_grad = a[4]->boolean;
  CKPT_ASSIGN_OR_RETURN(Value * tensor, make(Kind::kTorchTensor));
  tensor->tensor = std::move(info);
  return tensor;
}

Status Machine::new_object() {
  CKPT_ASSIGN_OR_RETURN(Value * args, pop());
  CKPT_ASSIGN_OR_RETURN(Value * cls, pop());
  if (cls->kind != Kind::kGlobal) {
    return fail(ErrorCode::kPickleForbiddenCall, fmt::format("NEWOBJ of a {}, not a class", kind_name(cls->kind)));
  }
  if (is_torchscript_class(options_, cls->text) && args->kind == Kind::kTuple && args->items.empty()) {
    CKPT_ASSIGN_OR_RETURN(Value * object, make(Kind::kDict));
    object->cls = cls;
    return push(object);
  }
  if (stubbable(*cls)) {
    if (args->kind != Kind::kTuple) return malformed(fmt::format("NEWOBJ with a {} of arguments", kind_name(args->kind)));
    for (const Value* argument : args->items) {
      if (unlisted(*argument)) return not_allowed(*argument, " (an argument of NEWOBJ)");
    }
    CKPT_ASSIGN_OR_RETURN(Value * stub, make_stub(cls, args, /*newobj=*/true));
    return push(stub);
  }
  if (unlisted(*cls)) {
    if (args->kind != Kind::kTuple || !args->items.empty()) return not_allowed(*cls, " (NEWOBJ with arguments)");
    // Kept only if an nn.Module state follows.
    CKPT_ASSIGN_OR_RETURN(Value * stub, make_stub(cls, args, /*newobj=*/true));
    return push(stub);
  }
  const detail::AllowedGlobal* allowed = listed(cls->text, cls->name);
  bool creatable = allowed != nullptr && (allowed->builder == detail::Builder::kOneflowTensor ||
                                          allowed->builder == detail::Builder::kOneflowDtype);
  if (!creatable || args->kind != Kind::kTuple || !args->items.empty()) {
    return fail(ErrorCode::kPickleForbiddenCall,
                fmt::format("NEWOBJ may only create a OneFlow tensor or dtype with no arguments, not '{}.{}'", cls->text,
                            cls->name));
  }
  CKPT_ASSIGN_OR_RETURN(Value * tensor, make(allowed->builder == detail::Builder::kOneflowTensor ? Kind::kOneflowTensor
                                                                                                 : Kind::kOneflowDtype));
  tensor->cls = cls;
  return push(tensor);
}

Status Machine::build() {
  CKPT_ASSIGN_OR_RETURN(Value * state, pop());
  CKPT_ASSIGN_OR_RETURN(Value * target, top());
  if (target->kind == Kind::kDict && target->ordered && state->kind == Kind::kDict && target->metadata == nullptr) {
    for (const auto& [key, value] : state->entries) {
      if (!key->is_string("_metadata") || value->kind != Kind::kDict) {
        return fail(ErrorCode::kPickleForbiddenCall,
                    "BUILD on an OrderedDict may only set `_metadata` to a dict");
      }
      target->metadata = value;
    }
    return {};
  }
  // A TorchScript object's attributes, set once.
  if (target->kind == Kind::kDict && target->cls != nullptr && target->state == nullptr && state->kind == Kind::kDict) {
    target->entries = state->entries;
    target->state = state;
    return {};
  }
  if (target->kind == Kind::kStub && stubbable(*target->cls)) {
    if (target->state != nullptr) return not_allowed(*target->cls, " (a stub built twice)");
    target->state = state;
    return {};
  }
  if (target->kind == Kind::kStub) {
    auto group = [&](std::string_view key) {
      const Value* value = state->kind == Kind::kDict ? state->find(key) : nullptr;
      return value != nullptr && value->kind == Kind::kDict;
    };
    if (target->state != nullptr || !group("_parameters") || !group("_buffers") || !group("_modules")) {
      return not_allowed(*target->cls, " (kept as a stub only with an nn.Module's state: _parameters, _buffers, _modules)");
    }
    target->state = state;
    return {};
  }
  // Each object takes one state of its own shape; the S1 adapter reads its fields.
  bool fits = (target->kind == Kind::kOneflowTensor && state->kind == Kind::kDict) ||
              (target->kind == Kind::kNumpyArray && state->kind == Kind::kTuple && state->items.size() == 5) ||
              (target->kind == Kind::kNumpyDtype && state->kind == Kind::kTuple && state->items.size() == 8) ||
              (target->kind == Kind::kOneflowDtype && state->kind == Kind::kInt);
  if (fits && target->state == nullptr) {
    target->state = state;
    // A numpy array the caller's policy let in is a checkpoint tensor where asked (spec/pickle.md).
    target->array_tensor = target->kind == Kind::kNumpyArray && options_.numpy_array_tensors &&
                           policy_allows(target->cls->text, target->cls->name) && numpy_array_dtype(*target).has_value();
    return {};
  }
  return fail(ErrorCode::kPickleForbiddenCall,
              fmt::format("BUILD with a {} on a {}: only OrderedDict `_metadata`, one OneFlow tensor or dtype state "
                          "and one numpy array or dtype state are allowed",
                          kind_name(state->kind), kind_name(target->kind)));
}

// torch: ('storage', <storage type>, key, location, numel) as BINPERSID; the
// legacy format (torch < 1.6) adds a sixth item, view metadata, which torch
// >= 0.4 always writes as None (storage views are not read).
Status Machine::persistent_id() {
  if (options_.flavor != Flavor::kTorch) {
    return fail(ErrorCode::kPickleForbiddenCall, "a persistent id, which only torch files use");
  }
  CKPT_ASSIGN_OR_RETURN(Value * pid, pop());
  const auto& a = pid->items;
  const detail::AllowedGlobal* type = nullptr;
  if (pid->kind == Kind::kTuple && (a.size() == 5 || (a.size() == 6 && a[5]->kind == Kind::kNone)) &&
      a[0]->is_string("storage") && a[1]->kind == Kind::kGlobal) {
    type = listed(a[1]->text, a[1]->name);
  }
  if (type == nullptr || type->builder != detail::Builder::kTorchStorageType || a[2]->kind != Kind::kString ||
      a[3]->kind != Kind::kString || a[4]->kind != Kind::kInt || a[4]->integer < 0) {
    return fail(ErrorCode::kPickleForbiddenCall,
                "a persistent id must be ('storage', <torch storage type>, key, location, numel[, None])");
  }
  auto [it, inserted] = storages_.try_emplace(a[2]->text, nullptr);
  if (inserted) {
    CKPT_ASSIGN_OR_RETURN(it->second, make(Kind::kTorchStorage));
    it->second->storage = TorchStorageInfo{type->dtype, a[2]->text, a[3]->text, static_cast<std::uint64_t>(a[4]->integer),
                                           type->name == detail::kUntypedStorage};
  } else if (it->second->storage.dtype != type->dtype || it->second->storage.untyped != (type->name == detail::kUntypedStorage)) {
    return fail(ErrorCode::kPickleStructure, fmt::format("storage '{}' is named with two element types", a[2]->text));
  } else if (it->second->storage.numel != static_cast<std::uint64_t>(a[4]->integer)) {
    // torch keeps the first size and ignores the second: readers would disagree.
    return fail(ErrorCode::kPickleStructure, fmt::format("storage '{}' is named with two sizes, {} and {} elements",
                                                         a[2]->text, it->second->storage.numel, a[4]->integer));
  }
  return push(it->second);
}

Status Machine::step(std::uint8_t opcode) {
  switch (opcode) {
    case op::kProto: {
      CKPT_ASSIGN_OR_RETURN(auto version, little_endian<std::uint8_t>());
      if (version < 2 || version > 5) {
        return fail(ErrorCode::kPickleUnsupportedOpcode, fmt::format("protocol {}; only 2 to 5 are read", version));
      }
      protocol_ = version;
      return {};
    }
    case op::kFrame: {
      CKPT_ASSIGN_OR_RETURN(auto length, little_endian<std::uint64_t>());
      if (length > input_.size() - position_) return fail(ErrorCode::kPickleTruncated, "a FRAME longer than the rest");
      return {};
    }
    case op::kStop: stopped_ = true; return {};
    case op::kMark:
      if (marks_.size() >= limits_.max_marks) {
        return fail(ErrorCode::kPickleLimit, fmt::format("more than {} nested MARKs", limits_.max_marks));
      }
      if (stack_.size() + marks_.size() >= limits_.max_stack) {
        return fail(ErrorCode::kPickleLimit, fmt::format("stack deeper than {} entries", limits_.max_stack));
      }
      marks_.push_back(stack_.size());
      return {};
    case op::kPop: return pop().ok() ? Status{} : pop_mark().ok() ? Status{} : malformed("POP on an empty stack");
    case op::kPopMark: return pop_mark().ok() ? Status{} : malformed("POP_MARK without a MARK");
    case op::kDup: {
      CKPT_ASSIGN_OR_RETURN(Value * value, top());
      return push(value);
    }
    case op::kNone: {
      CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kNone));
      return push(value);
    }
    case op::kNewTrue:
    case op::kNewFalse: {
      CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kBool));
      value->boolean = opcode == op::kNewTrue;
      return push(value);
    }
    case op::kBinInt:
    case op::kBinInt1:
    case op::kBinInt2: {
      std::int64_t number = 0;
      if (opcode == op::kBinInt1) {
        CKPT_ASSIGN_OR_RETURN(number, little_endian<std::uint8_t>());
      } else if (opcode == op::kBinInt2) {
        CKPT_ASSIGN_OR_RETURN(number, little_endian<std::uint16_t>());
      } else {
        CKPT_ASSIGN_OR_RETURN(number, little_endian<std::int32_t>());
      }
      CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kInt));
      value->integer = number;
      return push(value);
    }
    case op::kLong1: {
      CKPT_ASSIGN_OR_RETURN(auto length, little_endian<std::uint8_t>());
      CKPT_ASSIGN_OR_RETURN(auto bytes, take(length));
      return push_integer_bytes(bytes);
    }
    case op::kLong4: {
      CKPT_ASSIGN_OR_RETURN(auto length, little_endian<std::int32_t>());
      if (length < 0) return malformed("LONG4 with a negative length");
      CKPT_ASSIGN_OR_RETURN(auto bytes, take(static_cast<std::uint64_t>(length)));
      return push_integer_bytes(bytes);
    }
    case op::kBinFloat: {
      CKPT_ASSIGN_OR_RETURN(auto big_endian, take(8));
      std::uint64_t bits = 0;
      for (std::byte b : big_endian) bits = (bits << 8) | static_cast<std::uint64_t>(b);
      CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kFloat));
      value->real = std::bit_cast<double>(bits);
      return push(value);
    }
    case op::kShortBinUnicode:
    case op::kShortBinBytes:
    case op::kShortBinString: {
      CKPT_ASSIGN_OR_RETURN(auto length, little_endian<std::uint8_t>());
      CKPT_ASSIGN_OR_RETURN(std::string text, take_text(length));
      return push_string(std::move(text), opcode == op::kShortBinBytes);
    }
    case op::kBinUnicode:
    case op::kBinBytes:
    case op::kBinString: {
      CKPT_ASSIGN_OR_RETURN(auto length, little_endian<std::uint32_t>());
      CKPT_ASSIGN_OR_RETURN(std::string text, take_text(length));
      return push_string(std::move(text), opcode == op::kBinBytes);
    }
    case op::kBinUnicode8:
    case op::kBinBytes8:
    case op::kByteArray8: {
      CKPT_ASSIGN_OR_RETURN(auto length, little_endian<std::uint64_t>());
      CKPT_ASSIGN_OR_RETURN(std::string text, take_text(length));
      return push_string(std::move(text), opcode != op::kBinUnicode8);
    }
    case op::kEmptyTuple:
    case op::kEmptyList:
    case op::kEmptyDict:
    case op::kEmptySet: {
      Kind kind = opcode == op::kEmptyTuple ? Kind::kTuple
                  : opcode == op::kEmptyList ? Kind::kList
                  : opcode == op::kEmptyDict ? Kind::kDict
                                             : Kind::kSet;
      CKPT_ASSIGN_OR_RETURN(Value * value, make(kind));
      return push(value);
    }
    case op::kTuple1:
    case op::kTuple2:
    case op::kTuple3: {
      std::vector<const Value*> items(opcode - op::kTuple1 + 1);
      for (auto it = items.rbegin(); it != items.rend(); ++it) {
        CKPT_ASSIGN_OR_RETURN(*it, pop());
      }
      CKPT_TRY(charge_items(items.size()));
      CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kTuple));
      value->items = std::move(items);
      return push(value);
    }
    case op::kTuple:
    case op::kList:
    case op::kFrozenSet: {
      CKPT_ASSIGN_OR_RETURN(auto items, pop_mark());
      Kind kind = opcode == op::kTuple ? Kind::kTuple : opcode == op::kList ? Kind::kList : Kind::kSet;
      CKPT_TRY(charge_items(items.size()));
      CKPT_ASSIGN_OR_RETURN(Value * value, make(kind));
      value->items.assign(items.begin(), items.end());
      return push(value);
    }
    case op::kDict: {
      CKPT_ASSIGN_OR_RETURN(auto items, pop_mark());
      CKPT_ASSIGN_OR_RETURN(Value * value, make(Kind::kDict));
      CKPT_TRY(set_items(*value, items));
      return push(value);
    }
    case op::kAppend: {
      CKPT_ASSIGN_OR_RETURN(Value * item, pop());
      CKPT_ASSIGN_OR_RETURN(Value * list, top());
      if (list->kind != Kind::kList) return malformed(fmt::format("APPEND to a {}, not a list", kind_name(list->kind)));
      CKPT_TRY(charge_items(1));
      list->items.push_back(item);
      return {};
    }
    case op::kAppends: {
      CKPT_ASSIGN_OR_RETURN(auto items, pop_mark());
      CKPT_ASSIGN_OR_RETURN(Value * list, top());
      if (list->kind != Kind::kList) return malformed(fmt::format("APPENDS to a {}, not a list", kind_name(list->kind)));
      CKPT_TRY(charge_items(items.size()));
      list->items.insert(list->items.end(), items.begin(), items.end());
      return {};
    }
    case op::kSetItem: {
      CKPT_ASSIGN_OR_RETURN(Value * value, pop());
      CKPT_ASSIGN_OR_RETURN(Value * key, pop());
      CKPT_ASSIGN_OR_RETURN(Value * dict, top());
      return set_items(*dict, {key, value});
    }
    case op::kSetItems: {
      CKPT_ASSIGN_OR_RETURN(auto items, pop_mark());
      CKPT_ASSIGN_OR_RETURN(Value * dict, top());
      return set_items(*dict, items);
    }
    case op::kAddItems: {
      CKPT_ASSIGN_OR_RETURN(auto items, pop_mark());
      CKPT_ASSIGN_OR_RETURN(Value * set, top());
      return add_items(*set, items);
    }
    case op::kBinGet: {
      CKPT_ASSIGN_OR_RETURN(auto index, little_endian<std::uint8_t>());
      CKPT_TRY(memo_get(index));
      return {};
    }
    case op::kLongBinGet: {
      CKPT_ASSIGN_OR_RETURN(auto index, little_endian<std::uint32_t>());
      CKPT_TRY(memo_get(index));
      return {};
    }
    case op::kBinPut: {
      CKPT_ASSIGN_OR_RETURN(auto index, little_endian<std::uint8_t>());
      return memo_put(index);
    }
    case op::kLongBinPut: {
      CKPT_ASSIGN_OR_RETURN(auto index, little_endian<std::uint32_t>());
      return memo_put(index);
    }
    case op::kMemoize: return memo_put(memo_.size());
    case op::kGlobal: {
      CKPT_ASSIGN_OR_RETURN(std::string module, take_line());
      CKPT_ASSIGN_OR_RETURN(std::string name, take_line());
      return push_global(std::move(module), std::move(name));
    }
    case op::kStackGlobal: {
      CKPT_ASSIGN_OR_RETURN(Value * name, pop());
      CKPT_ASSIGN_OR_RETURN(Value * module, pop());
      if (module->kind != Kind::kString || name->kind != Kind::kString) {
        return malformed("STACK_GLOBAL needs two strs");
      }
      return push_global(module->text, name->text);
    }
    case op::kReduce: return reduce();
    case op::kNewObj: return new_object();
    case op::kBuild: return build();
    case op::kBinPersId: return persistent_id();
    case op::kNewObjEx:
      return fail(ErrorCode::kPickleForbiddenCall, "NEWOBJ_EX (construction with keyword arguments) is never allowed");
    default:
      return fail(ErrorCode::kPickleUnsupportedOpcode,
                  fmt::format("opcode '{}' is not one a data-only reader of protocols 2-5 runs "
                              "(text-mode, extension-registry, out-of-band buffer and instance opcodes are refused)",
                              opcode >= 0x20 && opcode < 0x7f ? std::string(1, static_cast<char>(opcode))
                                                              : fmt::format("\\x{:02x}", opcode)));
  }
}

// The finished value must be a tree with shared leaves at most: no cycle,
// bounded depth, bounded size when every shared node is counted each time
// (a memo-reference bomb is small as a graph and huge as a tree).
Status Machine::check_tree(const Value* root) const {
  struct Info {
    bool done = false;
    std::uint64_t expanded = 0;
  };
  std::unordered_map<const Value*, Info> seen;
  struct Frame {
    const Value* value;
    std::vector<const Value*> children;
    std::size_t next = 0;
    std::uint64_t expanded = 1;
  };
  auto children_of = [](const Value* v) {
    std::vector<const Value*> out(v->items.begin(), v->items.end());
    for (const auto& [key, value] : v->entries) {
      out.push_back(key);
      out.push_back(value);
    }
    for (const Value* extra : {v->metadata, v->cls, v->state, v->decoded, v->tensor.storage}) {
      if (extra != nullptr) out.push_back(extra);
    }
    return out;
  };
  auto error = [&](std::string message) { return Error(ErrorCode::kPickleLimit, std::move(message)).in_file(name_); };
  // Python keeps the last of duplicate keys; a writer never emits them, so they are refused.
  auto check_keys = [&](const Value* v) -> Status {
    std::unordered_set<std::string_view> strings;
    std::unordered_set<std::int64_t> ints;
    for (const auto& [key, value] : v->entries) {
      bool fresh = key->kind == Kind::kString ? strings.insert(key->text).second
                   : key->kind == Kind::kInt  ? ints.insert(key->integer).second
                                              : true;
      if (!fresh) {
        std::string shown = key->kind == Kind::kString ? fmt::format("'{}'", key->text) : std::to_string(key->integer);
        return Error(ErrorCode::kPickleStructure, fmt::format("a dict has the key {} twice", shown)).in_file(name_);
      }
    }
    return {};
  };
  if (unlisted(*root)) return not_allowed(*root, " (as a value)");
  if (root->kind == Kind::kStub && root->state == nullptr && !stubbable(*root->cls)) {
    return not_allowed(*root->cls, " (an object of it without an nn.Module's state)");
  }
  std::vector<Frame> path;
  path.push_back({root, children_of(root)});
  seen[root];
  while (!path.empty()) {
    Frame& frame = path.back();
    if (frame.next == frame.children.size()) {
      Info& info = seen[frame.value];
      info.done = true;
      info.expanded = frame.expanded;
      std::uint64_t expanded = frame.expanded;
      if (frame.value->kind == Kind::kDict) CKPT_TRY(check_keys(frame.value));
      path.pop_back();
      if (!path.empty()) path.back().expanded += expanded;
      if (expanded > limits_.max_expanded) {
        return error(fmt::format("the object expands to more than {} values (shared references counted each time)",
                                 limits_.max_expanded));
      }
      continue;
    }
    const Value* child = frame.children[frame.next++];
    // A class is a value only as the class of a stub or of a TorchScript object.
    const bool object_class = child == frame.value->cls && (frame.value->kind == Kind::kStub || frame.value->kind == Kind::kDict);
    if (unlisted(*child) && !object_class) {
      return not_allowed(*child, " (as a value)");
    }
    if (child->kind == Kind::kStub && child->state == nullptr && !stubbable(*child->cls)) {
      return not_allowed(*child->cls, " (an object of it without an nn.Module's state)");
    }
    auto [it, inserted] = seen.try_emplace(child);
    if (!inserted) {
      if (!it->second.done) {
        return Error(ErrorCode::kPickleStructure, "a container that contains itself").in_file(name_);
      }
      frame.expanded += it->second.expanded;
      continue;
    }
    if (path.size() >= limits_.max_depth) return error(fmt::format("nesting deeper than {}", limits_.max_depth));
    path.push_back({child, children_of(child)});
  }
  return {};
}

Result<Document> Machine::run(bool bytes_after_stop) {
  if (input_.size() > limits_.max_input_bytes) {
    return Error(ErrorCode::kPickleLimit, fmt::format("{} bytes, the limit is {}", input_.size(), limits_.max_input_bytes))
        .in_file(name_);
  }
  while (!stopped_) {
    opcode_offset_ = position_;
    if (position_ == input_.size()) {
      return Error(ErrorCode::kPickleTruncated, fmt::format("ends at byte {} without STOP", position_)).in_file(name_);
    }
    opcode_ = static_cast<std::uint8_t>(input_[static_cast<std::size_t>(position_++)]);
    CKPT_TRY(step(opcode_));
  }
  if (position_ != input_.size() && !bytes_after_stop) return malformed(fmt::format("{} bytes after STOP", input_.size() - position_));
  if (stack_.size() != 1 || !marks_.empty()) {
    return malformed(fmt::format("STOP with {} values and {} marks on the stack, expected one value", stack_.size(),
                                 marks_.size()));
  }
  CKPT_TRY(check_tree(stack_.back()));
  document_.set_root(stack_.back());
  return std::move(document_);
}

}  // namespace

Result<Document> read(std::span<const std::byte> bytes, const ReadOptions& options, std::string_view name) {
  return Machine(bytes, options, name).run();
}

Result<Document> read_prefix(std::span<const std::byte> bytes, const ReadOptions& options, std::string_view name,
                             std::uint64_t& consumed) {
  Machine machine(bytes, options, name);
  CKPT_ASSIGN_OR_RETURN(Document document, machine.run(/*bytes_after_stop=*/true));
  consumed = machine.position();
  return document;
}

Result<Document> read(const ByteSource& source, const ReadOptions& options) {
  if (source.size() > options.limits.max_input_bytes) {
    return Error(ErrorCode::kPickleLimit,
                 fmt::format("{} bytes, the limit is {}", source.size(), options.limits.max_input_bytes))
        .in_file(source.name());
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(source.size()));
  CKPT_TRY(source.read_at(0, bytes));
  return read(bytes, options, source.name());
}

}  // namespace ckpt::pickle
