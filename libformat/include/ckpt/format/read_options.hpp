// Reading choices a format offers, as plain structs: the generic interface
// (OpenOptions in checkpoint.hpp) carries them without including the
// format's own header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

// npy and npz.
struct NpyReadOptions {
  // Read '<V2' (numpy's spelling of ml_dtypes.bfloat16) as kBFloat16.
  bool void2_as_bfloat16 = false;
  // Fortran-order data is transposed with the whole array in memory;
  // larger Fortran-order arrays are refused (kNpyTooLargeToReorder).
  std::uint64_t max_reorder_bytes = std::uint64_t{1} << 30;
};

namespace pickle {

// What the pickle reader does with a global that is not on its allow-list
// (spec/pickle.md, "Pickle policy"). By default it is refused (E704),
// except where a rule below keeps it as an inert stub: its module, name,
// arguments and state as data, never imported or called.
struct PicklePolicy {
  // NEWOBJ () of such a class followed by BUILD with an nn.Module's state (a
  // dict with "_parameters", "_buffers" and "_modules") becomes a kStub
  // whose tensors are named as state_dict() names them. Any other use of
  // the class is still E704 unless the class is allowed below.
  bool stub_modules = true;
  // "module.name" of globals the caller allows (--allow-global): any use of
  // one (a value, REDUCE, NEWOBJ, BUILD, SETITEMS) builds a stub. numpy's
  // `_reconstruct` and `scalar` (numpy.core.multiarray or numpy._core.multiarray)
  // build numpy arrays and scalars instead, with numpy.ndarray and
  // numpy.dtype allowed as their arguments.
  std::vector<std::string> allowed_globals;
  // Every global off the allow-list is allowed as above (--stub-unknown).
  bool stub_unknown = false;

  // Whether the caller allowed `module.name`. The reader asks with Python 3
  // names: a protocol-2 pickle's Python 2 names (`__builtin__.long`) are
  // mapped first as CPython maps them (`builtins.int`; spec/pickle.md).
  bool allows(std::string_view module, std::string_view name) const;
};

}  // namespace pickle
}  // namespace ckpt
