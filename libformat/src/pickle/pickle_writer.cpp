// CPython's pickler (Lib/pickle.py, which the C pickler matches byte for
// byte) for protocols 2 to 4, over our values. A node saved twice becomes a
// memo reference, as an object saved twice does in Python; constants that
// Python programs share by identity ("storage", "cpu", class objects) are
// memoized by value through `constant_memo_`.
#include <bit>
#include <unordered_map>

#include <fmt/format.h>

#include "ckpt/format/pickle.hpp"
#include "pickle/pickle_allowlist.hpp"
#include "pickle/pickle_opcodes.hpp"
#include "core/little_endian.hpp"

namespace ckpt::pickle {
namespace {

constexpr std::size_t kBatchSize = 1000;                 // pickle.py _BATCHSIZE
constexpr std::size_t kFrameSizeTarget = 64 * 1024;     // _Framer._FRAME_SIZE_TARGET
constexpr std::size_t kFrameSizeMin = 4;                // _Framer._FRAME_SIZE_MIN

class Pickler {
 public:
  explicit Pickler(int protocol) : protocol_(protocol) {}

  Result<std::vector<std::byte>> dump(const Value& root) {
    if (protocol_ < 2 || protocol_ > 4) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("pickle protocol {}; the writer supports 2 to 4", protocol_));
    }
    out_.push_back(std::byte{op::kProto});
    out_.push_back(static_cast<std::byte>(protocol_));
    framing_ = protocol_ >= 4;
    CKPT_TRY(save(root));
    put_op(op::kStop);
    if (framing_) commit_frame(true);
    return std::move(out_);
  }

 private:
  std::vector<std::byte>& sink() { return framing_ ? frame_ : out_; }
  void put(std::span<const std::byte> bytes) { sink().insert(sink().end(), bytes.begin(), bytes.end()); }
  void put_op(std::uint8_t opcode) { sink().push_back(std::byte{opcode}); }
  template <class T>
  void put_le(T value, std::size_t width = sizeof(T)) {
    ckpt::detail::append_le(sink(), static_cast<std::uint64_t>(value), width);
  }

  void commit_frame(bool force = false) {
    if (!framing_ || frame_.empty() || (frame_.size() < kFrameSizeTarget && !force)) return;
    if (frame_.size() >= kFrameSizeMin) {
      out_.push_back(std::byte{op::kFrame});
      ckpt::detail::append_le(out_, frame_.size(), 8);
    }
    out_.insert(out_.end(), frame_.begin(), frame_.end());
    frame_.clear();
  }

  // A string or bytes payload: large ones go outside frames, as pickle.py does.
  void put_payload(std::uint8_t opcode, std::size_t width, std::string_view payload) {
    bool large = framing_ && payload.size() >= kFrameSizeTarget;
    if (large) commit_frame(true);
    std::vector<std::byte>& target = large ? out_ : sink();
    target.push_back(std::byte{opcode});
    ckpt::detail::append_le(target, payload.size(), width);
    auto bytes = as_bytes(payload);
    target.insert(target.end(), bytes.begin(), bytes.end());
  }

  std::uint32_t memoize() {
    auto index = next_memo_++;
    if (protocol_ >= 4) {
      put_op(op::kMemoize);
    } else if (index < 256) {
      put_op(op::kBinPut);
      put_le<std::uint8_t>(static_cast<std::uint8_t>(index));
    } else {
      put_op(op::kLongBinPut);
      put_le<std::uint32_t>(index);
    }
    return index;
  }
  void memoize(const Value* value) { memo_[value] = memoize(); }
  void get(std::uint32_t index) {
    if (index < 256) {
      put_op(op::kBinGet);
      put_le<std::uint8_t>(static_cast<std::uint8_t>(index));
    } else {
      put_op(op::kLongBinGet);
      put_le<std::uint32_t>(index);
    }
  }
  // Emits a memo reference for `key` if it was memoized; else false and the caller saves it.
  bool get_constant(const std::string& key) {
    auto it = constant_memo_.find(key);
    if (it == constant_memo_.end()) return false;
    get(it->second);
    return true;
  }

  void save_int(std::int64_t value) {
    if (value >= 0 && value <= 0xFF) {
      put_op(op::kBinInt1);
      put_le<std::uint8_t>(static_cast<std::uint8_t>(value));
    } else if (value >= 0 && value <= 0xFFFF) {
      put_op(op::kBinInt2);
      put_le<std::uint16_t>(static_cast<std::uint16_t>(value));
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
      put_op(op::kBinInt);
      put_le<std::int32_t>(static_cast<std::int32_t>(value));
    } else {
      // encode_long: the fewest little-endian two's complement bytes.
      std::size_t bits = value < 0 ? 64 - static_cast<std::size_t>(std::countl_one(static_cast<std::uint64_t>(value)))
                                   : 64 - static_cast<std::size_t>(std::countl_zero(static_cast<std::uint64_t>(value)));
      std::size_t width = bits / 8 + 1;
      auto raw = static_cast<std::uint64_t>(value);
      if (value < 0 && width > 1 && ((raw >> (8 * (width - 1))) & 0xFF) == 0xFF &&
          ((raw >> (8 * (width - 2))) & 0x80) != 0) {
        --width;
      }
      width = std::min<std::size_t>(width, 8);
      put_op(op::kLong1);
      put_le<std::uint8_t>(static_cast<std::uint8_t>(width));
      put_le<std::uint64_t>(raw, width);
    }
  }

  void save_str(std::string_view text) {
    commit_frame();
    if (text.size() <= 0xFF && protocol_ >= 4) {
      put_payload(op::kShortBinUnicode, 1, text);
    } else if (text.size() > 0xFFFFFFFFu) {
      put_payload(op::kBinUnicode8, 8, text);
    } else {
      put_payload(op::kBinUnicode, 4, text);
    }
  }

  // A str that Python code shares by identity: saved once, then referenced.
  void save_constant_str(const std::string& text) {
    commit_frame();
    if (get_constant("str:" + text)) return;
    save_str(text);
    constant_memo_["str:" + text] = memoize();
  }

  void save_global_name(std::string_view module, std::string_view name) {
    if (protocol_ >= 4) {
      save_str(module);
      memoize();
      save_str(name);
      memoize();
      put_op(op::kStackGlobal);
    } else {
      // Protocol 2 keeps Python 2 names for the builtins (fix_imports).
      std::string_view written = protocol_ < 3 && module == "builtins" ? "__builtin__" : module;
      put_op(op::kGlobal);
      put(as_bytes(fmt::format("{}\n{}\n", written, name)));
    }
  }

  void save_constant_global(std::string_view module, std::string_view name) {
    commit_frame();
    std::string key = fmt::format("global:{}.{}", module, name);
    if (get_constant(key)) return;
    save_global_name(module, name);
    constant_memo_[key] = memoize();
  }

  // func(*args) for a func pickle.py would save as a global: args are saved by `save_args`.
  template <class SaveArgs>
  Status save_call(std::string_view module, std::string_view name, std::size_t arg_count, SaveArgs save_args) {
    save_constant_global(module, name);
    commit_frame();
    if (arg_count == 0) {
      put_op(op::kEmptyTuple);
    } else {
      if (arg_count > 3) put_op(op::kMark);
      CKPT_TRY(save_args());
      put_op(arg_count > 3 ? op::kTuple : static_cast<std::uint8_t>(op::kTuple1 + arg_count - 1));
      memoize();
    }
    put_op(op::kReduce);
    return {};
  }

  Status save_items(const std::vector<const Value*>& items, std::uint8_t one, std::uint8_t many, bool mark_single) {
    for (std::size_t begin = 0; begin < items.size(); begin += kBatchSize) {
      std::size_t end = std::min(items.size(), begin + kBatchSize);
      bool batch = end - begin > 1 || mark_single;
      if (batch) put_op(op::kMark);
      for (std::size_t i = begin; i < end; ++i) CKPT_TRY(save(*items[i]));
      put_op(batch ? many : one);
    }
    return {};
  }

  Status save_entries(const std::vector<std::pair<const Value*, const Value*>>& entries) {
    for (std::size_t begin = 0; begin < entries.size(); begin += kBatchSize) {
      std::size_t end = std::min(entries.size(), begin + kBatchSize);
      if (end - begin > 1) put_op(op::kMark);
      for (std::size_t i = begin; i < end; ++i) {
        CKPT_TRY(save(*entries[i].first));
        CKPT_TRY(save(*entries[i].second));
      }
      put_op(end - begin > 1 ? op::kSetItems : op::kSetItem);
    }
    return {};
  }

  Status save_tuple(const Value& value) {
    const auto& items = value.items;
    if (items.empty()) {
      put_op(op::kEmptyTuple);
      return {};
    }
    if (items.size() > 3) put_op(op::kMark);
    for (const Value* item : items) CKPT_TRY(save(*item));
    put_op(items.size() > 3 ? op::kTuple : static_cast<std::uint8_t>(op::kTuple1 + items.size() - 1));
    memoize(&value);
    return {};
  }

  Status save_dict(const Value& value) {
    if (!value.ordered) {
      put_op(op::kEmptyDict);
      memoize(&value);
      return save_entries(value.entries);
    }
    // OrderedDict.__reduce__: (cls, (), vars(self) or None, None, items)
    CKPT_TRY(save_call("collections", "OrderedDict", 0, [] { return Status{}; }));
    memoize(&value);
    CKPT_TRY(save_entries(value.entries));
    if (value.metadata != nullptr) {
      commit_frame();
      put_op(op::kEmptyDict);
      memoize();
      save_str("_metadata");
      memoize();
      CKPT_TRY(save(*value.metadata));
      put_op(op::kSetItem);
      put_op(op::kBuild);
    }
    return {};
  }

  Status save_set(const Value& value) {
    if (protocol_ >= 4) {
      put_op(op::kEmptySet);
      memoize(&value);
      return save_items(value.items, op::kAddItems, op::kAddItems, true);
    }
    // set.__reduce__ on protocols 2-3: builtins.set([items])
    CKPT_TRY(save_call("builtins", "set", 1, [&]() -> Status {
      commit_frame();
      put_op(op::kEmptyList);
      memoize();
      return save_items(value.items, op::kAppend, op::kAppends, false);
    }));
    memoize(&value);
    return {};
  }

  Status save_bytes(const Value& value) {
    if (protocol_ >= 3) {
      if (value.text.size() <= 0xFF) {
        put_payload(op::kShortBinBytes, 1, value.text);
      } else if (value.text.size() > 0xFFFFFFFFu) {
        put_payload(op::kBinBytes8, 8, value.text);
      } else {
        put_payload(op::kBinBytes, 4, value.text);
      }
      memoize(&value);
      return {};
    }
    // Protocol 2 has no bytes opcode: _codecs.encode(latin-1 text, 'latin1').
    std::string latin1;
    for (char c : value.text) {
      auto byte = static_cast<unsigned char>(c);
      if (byte < 0x80) {
        latin1.push_back(c);
      } else {
        latin1.push_back(static_cast<char>(0xC0 | (byte >> 6)));
        latin1.push_back(static_cast<char>(0x80 | (byte & 0x3F)));
      }
    }
    CKPT_TRY(save_call("_codecs", "encode", 2, [&]() -> Status {
      save_str(latin1);
      memoize();
      save_constant_str("latin1");
      return {};
    }));
    memoize(&value);
    return {};
  }

  // torch's persistent_id: ('storage', storage_type, key, location, numel)
  Status save_storage(const Value& value) {
    const TorchStorageInfo& info = value.storage;
    std::string_view type = info.untyped ? detail::kUntypedStorage : detail::torch_storage_class(info.dtype);
    if (type.empty()) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("torch has no storage type for {}", dtype_name(info.dtype)));
    }
    commit_frame();
    put_op(op::kMark);
    save_constant_str("storage");
    save_constant_global("torch", type);
    save_constant_str(info.key);
    save_constant_str(info.location);
    save_int(static_cast<std::int64_t>(info.numel));
    put_op(op::kTuple);
    memoize();
    put_op(op::kBinPersId);
    return {};
  }

  Status save_torch_tensor(const Value& value) {
    const TorchTensorInfo& info = value.tensor;
    if (info.storage == nullptr || info.storage->kind != Kind::kTorchStorage) {
      return Error(ErrorCode::kInvalidArgument, "a torch tensor without a storage");
    }
    auto ints = [&](const std::vector<std::int64_t>& dims) {
      commit_frame();
      if (dims.empty()) {
        put_op(op::kEmptyTuple);
        return;
      }
      if (dims.size() > 3) put_op(op::kMark);
      for (std::int64_t d : dims) save_int(d);
      put_op(dims.size() > 3 ? op::kTuple : static_cast<std::uint8_t>(op::kTuple1 + dims.size() - 1));
      memoize();
    };
    auto empty_ordered_dict = [&] {
      commit_frame();
      (void)save_call("collections", "OrderedDict", 0, [] { return Status{}; });
      memoize();
    };
    // torch >= 2.1 saves a tensor over an untyped storage with its dtype (torch/_tensor.py).
    const bool v3 = info.storage->storage.untyped;
    std::string_view v3_dtype = detail::torch_v3_dtype_name(info.dtype);
    if (v3 && v3_dtype.empty()) {
      return Error(ErrorCode::kInvalidArgument, fmt::format("torch has no dtype name for {}", dtype_name(info.dtype)));
    }
    auto rebuild = [&]() -> Status {
      return save_call("torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2", v3 ? 7 : 6, [&]() -> Status {
        CKPT_TRY(save_storage(*info.storage));
        save_int(static_cast<std::int64_t>(info.storage_offset));
        ints(info.shape);
        ints(info.stride);
        put_op(info.requires_grad && !info.parameter ? op::kNewTrue : op::kNewFalse);
        empty_ordered_dict();
        if (v3) save_constant_global("torch", v3_dtype);
        return {};
      });
    };
    if (!info.parameter) {
      CKPT_TRY(rebuild());
    } else {
      CKPT_TRY(save_call("torch._utils", "_rebuild_parameter", 3, [&]() -> Status {
        CKPT_TRY(rebuild());
        memoize();
        put_op(info.requires_grad ? op::kNewTrue : op::kNewFalse);
        empty_ordered_dict();
        return {};
      }));
    }
    memoize(&value);
    return {};
  }

  // pickle.py save_reduce: cls, args, NEWOBJ or REDUCE, memoize, dict items, BUILD state.
  Status save_stub(const Value& value) {
    if (value.is_module_stub()) {
      return Error(ErrorCode::kInvalidArgument,
                   "a module stub is not written as such; copy_replacing_tensors makes it its state_dict");
    }
    if (value.cls == nullptr || value.items.size() != 1) {
      return Error(ErrorCode::kInvalidArgument, "a stub needs its class and its argument tuple");
    }
    CKPT_TRY(save(*value.cls));
    CKPT_TRY(save(*value.items[0]));
    put_op(value.newobj ? op::kNewObj : op::kReduce);
    memoize(&value);
    CKPT_TRY(save_entries(value.entries));
    if (value.state != nullptr) {
      CKPT_TRY(save(*value.state));
      put_op(op::kBuild);
    }
    return {};
  }

  Status save(const Value& value) {
    commit_frame();
    if (value.kind == Kind::kTorchStorage) return save_storage(value);
    if (auto it = memo_.find(&value); it != memo_.end()) {
      get(it->second);
      return {};
    }
    switch (value.kind) {
      case Kind::kNone: put_op(op::kNone); return {};
      case Kind::kBool: put_op(value.boolean ? op::kNewTrue : op::kNewFalse); return {};
      case Kind::kInt: save_int(value.integer); return {};
      case Kind::kFloat: {
        put_op(op::kBinFloat);
        auto bits = std::bit_cast<std::uint64_t>(value.real);
        for (int shift = 56; shift >= 0; shift -= 8) sink().push_back(static_cast<std::byte>((bits >> shift) & 0xFF));
        return {};
      }
      case Kind::kString: save_str(value.text); memoize(&value); return {};
      case Kind::kBytes: return save_bytes(value);
      case Kind::kTuple: return save_tuple(value);
      case Kind::kList:
        put_op(op::kEmptyList);
        memoize(&value);
        return save_items(value.items, op::kAppend, op::kAppends, false);
      case Kind::kSet: return save_set(value);
      case Kind::kDict: return save_dict(value);
      case Kind::kGlobal:
        if (value.items.size() == 2 && protocol_ >= 4) {  // module and name as shared str nodes
          CKPT_TRY(save(*value.items[0]));
          CKPT_TRY(save(*value.items[1]));
          put_op(op::kStackGlobal);
        } else {
          save_global_name(value.text, value.name);
        }
        memoize(&value);
        return {};
      case Kind::kStub: return save_stub(value);
      case Kind::kNumpyScalar:
        if (value.cls == nullptr || value.items.size() != 1) {
          return Error(ErrorCode::kInvalidArgument, "a numpy scalar needs its callable and its arguments");
        }
        CKPT_TRY(save(*value.cls));
        CKPT_TRY(save(*value.items[0]));
        put_op(op::kReduce);
        memoize(&value);
        return {};
      case Kind::kOneflowTensor:
      case Kind::kOneflowDtype:
        if (value.cls == nullptr || value.state == nullptr) {
          return Error(ErrorCode::kInvalidArgument, fmt::format("a {} needs its class and its state", kind_name(value.kind)));
        }
        CKPT_TRY(save(*value.cls));
        put_op(op::kEmptyTuple);
        put_op(op::kNewObj);
        memoize(&value);
        CKPT_TRY(save(*value.state));
        put_op(op::kBuild);
        return {};
      case Kind::kNumpyArray:
      case Kind::kNumpyDtype:  // callable(*args), then BUILD state, as numpy's __reduce__ gives
        if (value.cls == nullptr || value.items.size() != 1 || value.state == nullptr) {
          return Error(ErrorCode::kInvalidArgument,
                       fmt::format("a {} needs its callable, its arguments and its state", kind_name(value.kind)));
        }
        CKPT_TRY(save(*value.cls));
        CKPT_TRY(save(*value.items[0]));
        put_op(op::kReduce);
        memoize(&value);
        CKPT_TRY(save(*value.state));
        put_op(op::kBuild);
        return {};
      case Kind::kTorchTensor: return save_torch_tensor(value);
      case Kind::kTorchStorage: break;  // handled above: persistent ids are never memoized
    }
    return {};
  }

  int protocol_;
  bool framing_ = false;
  std::vector<std::byte> out_;
  std::vector<std::byte> frame_;
  std::uint32_t next_memo_ = 0;
  std::unordered_map<const Value*, std::uint32_t> memo_;
  std::unordered_map<std::string, std::uint32_t> constant_memo_;
};

}  // namespace

Result<std::vector<std::byte>> write(const Value& root, int protocol) { return Pickler(protocol).dump(root); }

}  // namespace ckpt::pickle
