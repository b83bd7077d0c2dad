#include "ckpt/format/oneflow_pickle.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>

#include <fmt/format.h>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"
#include "oneflow/pickle_dir_scan.hpp"

namespace ckpt {
namespace {

namespace fs = std::filesystem;

Error structure(std::string message, std::string_view file) {
  return Error(ErrorCode::kPickleStructure, std::move(message)).in_file(file);
}

}  // namespace

Result<OneflowTensorRefs> flatten_oneflow_tensors(const pickle::Value& data, std::string_view file) {
  CKPT_ASSIGN_OR_RETURN(auto named, pickle::named_tensors(data, file));
  OneflowTensorRefs refs;
  for (auto& [name, node] : named) {
    if (node->kind == pickle::Kind::kNumpyArray) {
      CKPT_ASSIGN_OR_RETURN(pickle::NumpyArrayData array, pickle::numpy_array_data(*node, file, name));
      refs.arrays.push_back({std::move(name), std::move(array.meta), node});
      continue;
    }
    if (node->kind != pickle::Kind::kOneflowTensor) {
      return std::move(structure("a torch tensor in a OneFlow pickle", file).in_variable(name));
    }
    std::string_view path = node->oneflow_path();
    if (path.empty()) return std::move(structure("a tensor whose state has no \"path\" str", file).in_variable(name));
    // The path is joined to the checkpoint root: it must be one plain directory name.
    if (auto safe = check_variable_name(path); !safe.ok()) {
      return std::move(Error(ErrorCode::kUnsafeName,
                             fmt::format("tensor path {:?} is not a directory inside the checkpoint: {}", path,
                                         safe.error().message()))
                           .in_file(file)
                           .in_variable(name));
    }
    refs.tensors.push_back({std::move(name), std::string(path), node});
  }
  return refs;
}

Result<OneflowPickle> read_oneflow_pickle(const fs::path& root, const pickle::PicklePolicy& policy) {
  std::string file = (root / kPickleFile).string();
  // Never followed: the scan refuses a link leaving the checkpoint (E208),
  // and a caller without the scan must not read (and quote) a file elsewhere.
  CKPT_ASSIGN_OR_RETURN(FileSource source, FileSource::open(root / kPickleFile, FollowSymlink::kNo));
  CKPT_ASSIGN_OR_RETURN(pickle::Document document,
                        pickle::read(source, {.flavor = pickle::Flavor::kOneflow, .policy = policy,
                                              .numpy_array_tensors = true}));
  const pickle::Value* top = document.root();
  if (top->kind != pickle::Kind::kDict) {
    return structure(fmt::format("the top level is a {}, OneFlow writes a dict", pickle::kind_name(top->kind)), file);
  }
  const pickle::Value* version = top->find("protocol_version");
  if (version == nullptr || version->kind != pickle::Kind::kInt || version->integer != 1) {
    return structure("expected \"protocol_version\": 1 at the top level, as OneFlow 0.6+ writes", file);
  }
  const pickle::Value* data = top->find("data");
  if (data == nullptr) return structure("no \"data\" entry at the top level", file);
  CKPT_ASSIGN_OR_RETURN(OneflowTensorRefs refs, flatten_oneflow_tensors(*data, file));
  OneflowPickle result{std::move(document), data, top->find("__oneflow__") != nullptr, std::move(refs.tensors),
                       std::move(refs.arrays)};
  return result;
}

// ---- writer ----

Result<OneflowPickleWriter> OneflowPickleWriter::create(const fs::path& destination, OneflowPickleOptions options) {
  if (options.protocol < 2 || options.protocol > 4) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("pickle protocol {}; OneFlow files use 3 or 4", options.protocol));
  }
  CKPT_ASSIGN_OR_RETURN(SnapshotWriter writer, SnapshotWriter::create(destination, options.write));
  return OneflowPickleWriter(std::move(writer), std::move(options));
}

Result<const pickle::Value*> OneflowPickleWriter::add_tensor(const VariableMeta& meta, const ByteSource& data) {
  std::string directory = fmt::format("tensor_{}", tensor_count_ + 1);
  CKPT_TRY(writer_.add(directory, meta, data));
  ++tensor_count_;
  if (tensor_class_ == nullptr) {
    tensor_class_ = document_.global("oneflow.nn", "Parameter");
    path_key_ = document_.string("path");
  }
  pickle::Value* state = document_.dict();
  state->entries.emplace_back(path_key_, document_.string(directory));
  pickle::Value* tensor = document_.make(pickle::Kind::kOneflowTensor);
  tensor->cls = tensor_class_;
  tensor->state = state;
  return tensor;
}

pickle::Value* OneflowPickleWriter::state_dict() {
  pickle::Value* dict = document_.dict(true);
  dict->metadata = document_.dict(true);
  return dict;
}

Status OneflowPickleWriter::commit(const pickle::Value& data) {
  pickle::Value* top = document_.dict();
  top->entries.emplace_back(document_.string("protocol_version"), document_.integer(1));
  if (options_.oneflow_marker) top->entries.emplace_back(document_.string("__oneflow__"), document_.none());
  top->entries.emplace_back(document_.string("data"), &data);
  CKPT_ASSIGN_OR_RETURN(auto bytes, pickle::write(*top, options_.protocol));
  return writer_.commit_pickle_dir(bytes);
}

// ---- the scan's view of P1 ----

namespace detail {
namespace {

// The names OneFlow gives tensor directories: tensor_<N>, and for global
// tensors global_tensor_<id> (0.7+) or consistent_tensor_<id> (0.6).
bool is_tensor_directory(std::string_view name) {
  for (std::string_view prefix : {"tensor_", "global_tensor_", "consistent_tensor_"}) {
    if (!name.starts_with(prefix) || name.size() == prefix.size()) continue;
    std::string_view digits = name.substr(prefix.size());
    return digits.find_first_not_of("0123456789") == std::string_view::npos;
  }
  return false;
}

// Refusals of pickled_data that leave its tensor directories intact: the
// pickle was well formed, its content is what this reader will not build.
bool refusal_leaves_tensors_readable(ErrorCode code) {
  return code == ErrorCode::kPickleUnsupportedOpcode || code == ErrorCode::kPickleForbiddenGlobal ||
         code == ErrorCode::kPickleForbiddenCall || code == ErrorCode::kPickleStructure;
}

// The directory of every tensor in the tree wherever it sits (a set, a dict
// key, a stub's other attributes), each shared node visited once.
std::set<std::string, std::less<>> tensor_directories(const pickle::Value& data) {
  std::set<std::string, std::less<>> directories;
  std::unordered_set<const pickle::Value*> seen{&data};
  std::vector<const pickle::Value*> pending{&data};
  auto visit = [&](const pickle::Value* value) {
    if (value != nullptr && seen.insert(value).second) pending.push_back(value);
  };
  while (!pending.empty()) {
    const pickle::Value* value = pending.back();
    pending.pop_back();
    if (value->kind == pickle::Kind::kOneflowTensor) {
      directories.emplace(value->oneflow_path());
      continue;
    }
    for (const pickle::Value* item : value->items) visit(item);
    for (const auto& [key, item] : value->entries) {
      visit(key);
      visit(item);
    }
    visit(value->state);
    visit(value->metadata);
  }
  return directories;
}

Error names_fallback(std::string message, const fs::path& file, std::string_view variable = {}) {
  Error warning(ErrorCode::kPickleNamesFallback, std::move(message));
  warning.in_file(file.string());
  if (!variable.empty()) warning.in_variable(variable);
  return warning;
}

}  // namespace

PickleVariables name_pickle_variables(const fs::path& root, std::vector<VariableInfo>& variables,
                                      bool directories_valid, ProblemSink& problems,
                                      const pickle::PicklePolicy& policy) {
  PickleVariables result;
  const bool fallback_allowed =
      directories_valid && std::all_of(variables.begin(), variables.end(),
                                       [](const VariableInfo& v) { return is_tensor_directory(v.name); });
  auto pickle = read_oneflow_pickle(root, policy);
  if (!pickle.ok()) {
    if (!variables.empty() && fallback_allowed && refusal_leaves_tensors_readable(pickle.error().code())) {
      // Keep the directories as the variables, under their own names.
      problems.warning(names_fallback(fmt::format("pickled_data gives no tensor names ({}); its {} tensor "
                                                  "directories are read under their own names (tensor_N)",
                                                  pickle.error().describe(), variables.size()),
                                      root / kPickleFile));
      return result;
    }
    problems.error(std::move(pickle).error());
    return result;
  }
  result.pickle = std::make_shared<const OneflowPickle>(std::move(pickle).value());
  std::vector<VariableInfo> named;
  std::vector<bool> referenced(variables.size(), false);
  for (const PickleTensorRef& ref : result.pickle->tensors) {
    auto it = std::find_if(variables.begin(), variables.end(), [&](const auto& v) { return v.name == ref.directory; });
    if (it == variables.end()) {
      bool go_on = problems.error(std::move(Error(ErrorCode::kMissingData,
                                                  fmt::format("pickled_data refers to tensor directory '{}', which is "
                                                              "missing or has no readable `out`",
                                                              ref.directory))
                                                .in_file((root / ref.directory).string())
                                                .in_variable(ref.name)));
      if (!go_on) return result;
      continue;
    }
    referenced[static_cast<std::size_t>(it - variables.begin())] = true;
    named.push_back(*it);
    named.back().name = ref.name;
    result.directories.emplace(ref.name, ref.directory);
  }
  std::set<std::string, std::less<>> held;  // tensor directories the pickle holds, named or not
  if (fallback_allowed && std::find(referenced.begin(), referenced.end(), false) != referenced.end()) {
    held = tensor_directories(*result.pickle->data);
  }
  for (std::size_t i = 0; i < variables.size(); ++i) {
    if (referenced[i]) continue;
    const std::string& directory = variables[i].name;
    const bool name_free = !result.directories.contains(directory);
    if (held.contains(directory) && name_free) {
      named.push_back(variables[i]);
      bool go_on = problems.warning(
          names_fallback("pickled_data holds this tensor outside any dict, list or module attribute, so it has no "
                         "name there; read under its directory name",
                         root / directory, directory));
      if (!go_on) return result;
      continue;
    }
    bool go_on = problems.warning(
        std::move(Error(ErrorCode::kUnexpectedEntry, "tensor directory not referenced by pickled_data; OneFlow never reads it")
                      .in_file((root / directory).string())));
    if (!go_on) return result;
  }
  std::sort(named.begin(), named.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  variables = std::move(named);
  return result;
}

}  // namespace detail
}  // namespace ckpt
