// The allow-list: every global a pickle may name, and what it builds.
// spec/pickle.md lists the same table; a name not here is refused.
#pragma once

#include <optional>
#include <string_view>

#include "ckpt/format/dtype.hpp"
#include "ckpt/format/pickle.hpp"

namespace ckpt::pickle::detail {

enum class Builder {
  kOrderedDict,       // collections.OrderedDict(): an empty ordered dict
  kSet,               // builtins.set(list) / frozenset(list): protocols 2-3 sets
  kCodecsEncode,      // _codecs.encode(str, "latin1"): protocol-2 bytes
  kOneflowTensor,     // OneFlow Tensor/Parameter class: NEWOBJ () then BUILD {"path"}
  kRebuildTensorV2,   // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, grad, hooks[, meta])
  kRebuildTensorV3,   // torch._utils._rebuild_tensor_v3(untyped storage, offset, size, stride, grad, hooks, dtype[, meta])
  kRebuildParameter,  // torch._utils._rebuild_parameter(tensor, grad, hooks)
  kTorchSize,         // torch.Size(tuple)
  kTorchStorageType,  // torch.FloatStorage etc.: only an argument of a persistent id
  kTorchDtype,        // torch.uint16 etc.: only the dtype argument of _rebuild_tensor_v3
  kNumpyReconstruct,  // numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype, fortran, bytes)
  kNumpyNdarray,      // numpy.ndarray: only the first argument of _reconstruct
  kNumpyScalar,       // numpy.core.multiarray.scalar(numpy dtype, bytes): a numpy scalar
  kNumpyDtype,        // numpy.dtype(str, False, True) then BUILD (3, byte order, None, None, None, -1, -1, 0)
  kOneflowDtype,      // oneflow._oneflow_internal.dtype: NEWOBJ () then BUILD int (its DataType)
};

struct AllowedGlobal {
  std::string_view module;
  std::string_view name;
  Builder builder;
  std::optional<Flavor> only;  // the flavor that enables it; both when empty
  DType dtype = DType::kInvalidDataType;  // kTorchStorageType, kTorchDtype
};

inline constexpr std::string_view kUntypedStorage = "UntypedStorage";

struct GlobalName {
  std::string_view module;
  std::string_view name;
};

// The Python 3 name of a Python 2 global, as CPython's Unpickler.find_class
// maps it in protocols 0-2 (Lib/_compat_pickle.py: NAME_MAPPING, then
// IMPORT_MAPPING): __builtin__.long -> builtins.int, copy_reg.X -> copyreg.X.
// Other names are returned as they are.
GlobalName python3_name(std::string_view module, std::string_view name);

const AllowedGlobal* find_allowed(std::string_view module, std::string_view name, Flavor flavor);
// As find_allowed, and numpy's globals in any flavor where `policy` allows
// them: `_reconstruct` and `scalar` by name, numpy.ndarray and numpy.dtype
// by name or with either of those.
const AllowedGlobal* find_allowed(std::string_view module, std::string_view name, Flavor flavor,
                                  const PicklePolicy& policy);

// torch's legacy storage class for a dtype ("FloatStorage"), empty when torch has none.
std::string_view torch_storage_class(DType dtype);
// torch's name of a dtype that torch saves through _rebuild_tensor_v3 with an
// untyped storage ("uint16", "float8_e4m3fn"), empty for the others.
std::string_view torch_v3_dtype_name(DType dtype);

}  // namespace ckpt::pickle::detail
