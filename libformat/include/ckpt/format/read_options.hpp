// Reading choices a format offers, as plain structs: the generic interface
// (OpenOptions in checkpoint.hpp) carries them without including the
// format's own header.
#pragma once

#include <cstdint>

namespace ckpt {

// npy and npz.
struct NpyReadOptions {
  // Read '<V2' (numpy's spelling of ml_dtypes.bfloat16) as kBFloat16.
  bool void2_as_bfloat16 = false;
  // Fortran-order data is transposed with the whole array in memory;
  // larger Fortran-order arrays are refused (kNpyTooLargeToReorder).
  std::uint64_t max_reorder_bytes = std::uint64_t{1} << 30;
};

}  // namespace ckpt
