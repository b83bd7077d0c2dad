#include "pickle/pickle_allowlist.hpp"

#include <algorithm>
#include <array>

namespace ckpt::pickle::detail {
namespace {

constexpr std::array kAllowed = {
    AllowedGlobal{"collections", "OrderedDict", Builder::kOrderedDict, std::nullopt},
    // Protocol 2 writes Python 3's builtins module under its Python 2 name.
    AllowedGlobal{"builtins", "set", Builder::kSet, std::nullopt},
    AllowedGlobal{"__builtin__", "set", Builder::kSet, std::nullopt},
    AllowedGlobal{"builtins", "frozenset", Builder::kSet, std::nullopt},
    AllowedGlobal{"__builtin__", "frozenset", Builder::kSet, std::nullopt},
    AllowedGlobal{"_codecs", "encode", Builder::kCodecsEncode, std::nullopt},
    // OneFlow v0.6-v0.7 (real files), v0.8+, and v0.6-v0.7 parameters (pybind11 naming).
    AllowedGlobal{"oneflow._oneflow_internal", "Tensor", Builder::kOneflowTensor, Flavor::kOneflow},
    AllowedGlobal{"oneflow", "Tensor", Builder::kOneflowTensor, Flavor::kOneflow},
    AllowedGlobal{"oneflow.nn", "Parameter", Builder::kOneflowTensor, Flavor::kOneflow},
    AllowedGlobal{"oneflow._oneflow_internal.nn", "Parameter", Builder::kOneflowTensor, Flavor::kOneflow},
    // OneFlow 1.0 single files: tensors as numpy arrays (numpy._core under NumPy >= 2), OneFlow dtypes.
    AllowedGlobal{"numpy.core.multiarray", "_reconstruct", Builder::kNumpyReconstruct, Flavor::kOneflow},
    AllowedGlobal{"numpy._core.multiarray", "_reconstruct", Builder::kNumpyReconstruct, Flavor::kOneflow},
    AllowedGlobal{"numpy.core.multiarray", "scalar", Builder::kNumpyScalar, Flavor::kOneflow},
    AllowedGlobal{"numpy._core.multiarray", "scalar", Builder::kNumpyScalar, Flavor::kOneflow},
    AllowedGlobal{"numpy", "ndarray", Builder::kNumpyNdarray, Flavor::kOneflow},
    AllowedGlobal{"numpy", "dtype", Builder::kNumpyDtype, Flavor::kOneflow},
    AllowedGlobal{"oneflow._oneflow_internal", "dtype", Builder::kOneflowDtype, Flavor::kOneflow},
    AllowedGlobal{"torch._utils", "_rebuild_tensor_v2", Builder::kRebuildTensorV2, Flavor::kTorch},
    AllowedGlobal{"torch._utils", "_rebuild_tensor_v3", Builder::kRebuildTensorV3, Flavor::kTorch},
    AllowedGlobal{"torch._utils", "_rebuild_parameter", Builder::kRebuildParameter, Flavor::kTorch},
    AllowedGlobal{"torch", "Size", Builder::kTorchSize, Flavor::kTorch},
    AllowedGlobal{"torch", "FloatStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kFloat},
    AllowedGlobal{"torch", "DoubleStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kDouble},
    AllowedGlobal{"torch", "HalfStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kFloat16},
    AllowedGlobal{"torch", "BFloat16Storage", Builder::kTorchStorageType, Flavor::kTorch, DType::kBFloat16},
    AllowedGlobal{"torch", "LongStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt64},
    AllowedGlobal{"torch", "IntStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt32},
    AllowedGlobal{"torch", "ShortStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt16},
    AllowedGlobal{"torch", "CharStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt8},
    AllowedGlobal{"torch", "ByteStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kUInt8},
    AllowedGlobal{"torch", "BoolStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kBool},
    AllowedGlobal{"torch", "ComplexFloatStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kComplex64},
    AllowedGlobal{"torch", "ComplexDoubleStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kComplex128},
    // torch >= 2.1 (torch/_tensor.py, _reduce_ex_internal): the dtypes of
    // torch.storage._new_dtypes() are saved as an UntypedStorage (numel in
    // bytes) and rebuilt by _rebuild_tensor_v3 with the dtype as an argument.
    AllowedGlobal{"torch", kUntypedStorage, Builder::kTorchStorageType, Flavor::kTorch, DType::kUInt8},
    AllowedGlobal{"torch", "uint16", Builder::kTorchDtype, Flavor::kTorch, DType::kUInt16},
    AllowedGlobal{"torch", "uint32", Builder::kTorchDtype, Flavor::kTorch, DType::kUInt32},
    AllowedGlobal{"torch", "uint64", Builder::kTorchDtype, Flavor::kTorch, DType::kUInt64},
    AllowedGlobal{"torch", "complex32", Builder::kTorchDtype, Flavor::kTorch, DType::kComplex32},
    AllowedGlobal{"torch", "float8_e4m3fn", Builder::kTorchDtype, Flavor::kTorch, DType::kFloat8E4M3},
    AllowedGlobal{"torch", "float8_e5m2", Builder::kTorchDtype, Flavor::kTorch, DType::kFloat8E5M2},
    AllowedGlobal{"torch", "float8_e8m0fnu", Builder::kTorchDtype, Flavor::kTorch, DType::kFloat8E8M0},
};

}  // namespace

const AllowedGlobal* find_allowed(std::string_view module, std::string_view name, Flavor flavor) {
  for (const AllowedGlobal& entry : kAllowed) {
    if (entry.module == module && entry.name == name && (!entry.only || *entry.only == flavor)) return &entry;
  }
  return nullptr;
}

const AllowedGlobal* find_allowed(std::string_view module, std::string_view name, Flavor flavor,
                                  const PicklePolicy& policy) {
  if (const AllowedGlobal* entry = find_allowed(module, name, flavor)) return entry;
  const AllowedGlobal* numpy = find_allowed(module, name, Flavor::kOneflow);
  if (numpy == nullptr) return nullptr;
  auto allowed_with = [&](Builder builder) {
    return std::any_of(kAllowed.begin(), kAllowed.end(),
                       [&](const AllowedGlobal& entry) { return entry.builder == builder && policy.allows(entry.module, entry.name); });
  };
  switch (numpy->builder) {
    case Builder::kNumpyReconstruct:
    case Builder::kNumpyScalar: return policy.allows(module, name) ? numpy : nullptr;
    case Builder::kNumpyNdarray:
    case Builder::kNumpyDtype:
      return policy.allows(module, name) || allowed_with(Builder::kNumpyReconstruct) || allowed_with(Builder::kNumpyScalar)
                 ? numpy
                 : nullptr;
    default: return nullptr;  // OneFlow's own classes stay OneFlow's
  }
}

std::string_view torch_storage_class(DType dtype) {
  for (const AllowedGlobal& entry : kAllowed) {
    if (entry.builder == Builder::kTorchStorageType && entry.dtype == dtype) return entry.name;
  }
  return {};
}

std::string_view torch_v3_dtype_name(DType dtype) {
  for (const AllowedGlobal& entry : kAllowed) {
    if (entry.builder == Builder::kTorchDtype && entry.dtype == dtype) return entry.name;
  }
  return {};
}

}  // namespace ckpt::pickle::detail

namespace ckpt::pickle {

bool PicklePolicy::allows(std::string_view module, std::string_view name) const {
  if (stub_unknown) return true;
  std::string_view canonical = module == "__builtin__" ? std::string_view("builtins") : module;
  return std::any_of(allowed_globals.begin(), allowed_globals.end(), [&](const std::string& allowed) {
    return allowed.size() == canonical.size() + 1 + name.size() && allowed.starts_with(canonical) &&
           allowed[canonical.size()] == '.' && std::string_view(allowed).substr(canonical.size() + 1) == name;
  });
}

}  // namespace ckpt::pickle
