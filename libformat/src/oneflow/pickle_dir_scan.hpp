// The checkpoint scan's step for P1: pickled_data names the tensor directories.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/format/oneflow_pickle.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/tensor.hpp"

namespace ckpt::detail {

// Dotted variable name -> tensor directory.
using PickleDirectories = std::map<std::string, std::string, std::less<>>;

struct PickleVariables {
  PickleDirectories directories;
  std::shared_ptr<const OneflowPickle> pickle;  // null when pickled_data could not be read
};

// Reads pickled_data once and replaces the scanned tensor directories in
// `variables` by the tensors it names (a tied tensor under each of its
// names). A reference to a missing directory is an error, an unreferenced
// directory a warning. When pickled_data gives a tensor no name (refused by
// policy or structure, or the tensor held outside any dict, list or module)
// and every directory is a valid tensor_N (`directories_valid`: the scan
// found no error), the directory is kept under its own name with E730.
PickleVariables name_pickle_variables(const std::filesystem::path& root, std::vector<VariableInfo>& variables,
                                      bool directories_valid, ProblemSink& problems,
                                      const pickle::PicklePolicy& policy);

}  // namespace ckpt::detail
