// NumPy .npz archives: a zip of "<name>.npy" members. np.savez stores them,
// np.savez_compressed deflates them, and numpy always writes ZIP64 records.
// Member names become variable names, so they are checked like directory
// names: no '/', '\', '..', absolute path or control character.
//
// Reading and writing go through the checkpoint registry (format "npz",
// ckpt/format/checkpoint.hpp): stored members are read in place as a slice
// of the archive, deflated ones inflated on the fly; WriteOptions::compress
// deflates the members written.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "ckpt/format/npy.hpp"
#include "ckpt/format/validation.hpp"

namespace ckpt {

inline constexpr std::string_view kNpzExtension = ".npz";

// Whether `member` is "<variable>.npy" with a safe variable name; returns the name.
Result<std::string> npz_variable_name(std::string_view member);

// Every member checked: names, headers, sizes, and the CRC of all data
// (which reads the whole archive once).
ValidationReport validate_npz(const std::filesystem::path& path, const NpyReadOptions& options = {});

}  // namespace ckpt
