// The checkpoint scan's hook for P1: pickled_data names the tensor directories.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/format/snapshot.hpp"

namespace ckpt::detail {

// Dotted variable name -> tensor directory.
using PickleDirectories = std::map<std::string, std::string, std::less<>>;

// Replaces the scanned tensor directories in `variables` by the tensors
// pickled_data names (a tied tensor under each of its names). Reports a
// reference to a missing directory as an error, an unreferenced directory as
// a warning; `report` returns false to stop.
PickleDirectories name_pickle_variables(const std::filesystem::path& root, std::vector<VariableInfo>& variables,
                                        const std::function<bool(Severity, Error)>& report);

}  // namespace ckpt::detail
