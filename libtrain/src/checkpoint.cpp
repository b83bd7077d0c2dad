#include "ckpt/train/checkpoint.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <span>

#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"

namespace ckpt::train {

namespace fs = std::filesystem;

// Variables hold raw host bytes; OneFlow's are little-endian.
static_assert(std::endian::native == std::endian::little, "checkpoint I/O assumes a little-endian host");

namespace {

constexpr std::int64_t kTrainingStateVersion = 1;
constexpr std::string_view kMomentumPrefix = "momentum_buffer.";
// Every scalar a training state holds (spec/training-state.md).
constexpr std::array<std::string_view, 10> kScalarNames = {
    "format_version", "epoch", "batch_size", "seed", "shuffle_rng.state", "shuffle_rng.increment",
    "sgd.lr", "sgd.momentum", "sgd.weight_decay", "model_fingerprint"};

template <class T>
std::span<const std::byte> bytes_of(std::span<const T> values) {
  return std::as_bytes(values);
}

WriteOptions overwrite_options(bool overwrite) {
  WriteOptions options;
  options.overwrite = overwrite;
  return options;
}

Status add_variable(SnapshotWriter& writer, std::string_view name, DType dtype, Shape shape,
                    std::span<const std::byte> bytes) {
  CKPT_ASSIGN_OR_RETURN(const VariableMeta meta, VariableMeta::make(dtype, std::move(shape)));
  return writer.add(name, meta, bytes);
}

template <class T>
Status add_scalar(SnapshotWriter& writer, std::string_view name, DType dtype, T value) {
  return add_variable(writer, name, dtype, {}, std::as_bytes(std::span<const T>(&value, 1)));
}

Error mismatch(const Snapshot& snapshot, std::string_view name, std::string message) {
  Error error(ErrorCode::kStateDictMismatch, std::move(message));
  error.in_variable(name);
  error.in_file(snapshot.root().string());
  return error;
}

// Reads `name` into `out` after checking its dtype and shape.
template <class T>
Status read_checked(const Snapshot& snapshot, std::string_view name, DType dtype, const Shape& shape,
                    std::span<T> out) {
  const VariableInfo* info = snapshot.find(name);
  if (info == nullptr) return mismatch(snapshot, name, "missing from the snapshot");
  if (!info->meta) return mismatch(snapshot, name, "has no meta, so its dtype and shape are unknown");
  if (info->meta->dtype() != dtype) {
    return mismatch(snapshot, name,
                    fmt::format("dtype: expected {}, found {}", dtype_name(dtype), dtype_name(info->meta->dtype())));
  }
  if (info->meta->shape() != shape) {
    return mismatch(snapshot, name,
                    fmt::format("shape: expected {}, found {}", shape_to_string(shape),
                                shape_to_string(info->meta->shape())));
  }
  return snapshot.read(name, std::as_writable_bytes(out));
}

template <class T>
Result<T> read_scalar(const Snapshot& snapshot, std::string_view name, DType dtype) {
  T value{};
  CKPT_TRY(read_checked(snapshot, name, dtype, {}, std::span<T>(&value, 1)));
  return value;
}

Result<Snapshot> open_snapshot(const fs::path& dir) {
  auto snapshot = Snapshot::open(dir);
  if (!snapshot.ok()) return std::move(std::move(snapshot).error().in_file(dir.string()));
  if (snapshot->layout() != Layout::kSnapshot) {
    return Error(ErrorCode::kUnsupportedLayout,
                 fmt::format("expected OneFlow layout {} (meta + out per variable), found {}",
                             layout_id(Layout::kSnapshot), layout_id(snapshot->layout())))
        .in_file(dir.string());
  }
  return snapshot;
}

// Every variable of `snapshot` must be one `expected` accepts.
template <class Accept>
Status check_no_unexpected(const Snapshot& snapshot, std::string_view what, Accept&& expected) {
  for (const VariableInfo& variable : snapshot.variables()) {
    if (!expected(variable.name)) return mismatch(snapshot, variable.name, fmt::format("unexpected variable: not part of {}", what));
  }
  return {};
}

// The model's parameters from `reader`: exactly its names, each float32 of
// the parameter's shape. Read into a copy so a failure leaves the model
// unchanged, as load_state_dict.
Status load_parameters(const CheckpointReader& reader, Mlp& model) {
  auto mismatch = [&](std::string_view name, std::string message) {
    Error error(ErrorCode::kStateDictMismatch, std::move(message));
    error.in_variable(name);
    error.in_file(reader.path().string());
    return error;
  };
  std::vector<std::string> expected;
  for (const Parameter& parameter : model.parameters()) expected.push_back(parameter.name);
  for (const TensorInfo& tensor : reader.tensors()) {
    if (std::find(expected.begin(), expected.end(), tensor.name) == expected.end()) {
      return mismatch(tensor.name, fmt::format("unexpected variable: not part of the model (its parameters: {})",
                                               fmt::join(expected, ", ")));
    }
  }
  std::vector<Parameter> loaded = model.parameters();
  for (Parameter& parameter : loaded) {
    const TensorInfo* tensor = reader.find(parameter.name);
    if (tensor == nullptr) {
      return mismatch(parameter.name, fmt::format("missing from the {} checkpoint", reader.format_name()));
    }
    if (tensor->meta.dtype() != DType::kFloat) {
      return mismatch(parameter.name, fmt::format("dtype: expected {}, found {}", dtype_name(DType::kFloat),
                                                  dtype_name(tensor->meta.dtype())));
    }
    if (tensor->meta.shape() != parameter.shape) {
      return mismatch(parameter.name, fmt::format("shape: expected {}, found {}", shape_to_string(parameter.shape),
                                                  shape_to_string(tensor->meta.shape())));
    }
    CKPT_ASSIGN_OR_RETURN(const auto source, reader.open(parameter.name));
    auto read = source->read_at(0, std::as_writable_bytes(std::span<float>(parameter.values)));
    if (!read.ok()) return std::move(std::move(read).error().in_variable(parameter.name));
  }
  model.parameters() = std::move(loaded);
  return {};
}

}  // namespace

Status save_state_dict(const Mlp& model, const fs::path& dir, bool overwrite) {
  CKPT_ASSIGN_OR_RETURN(SnapshotWriter writer, SnapshotWriter::create(dir, overwrite_options(overwrite)));
  for (const Parameter& parameter : model.parameters()) {
    CKPT_TRY(add_variable(writer, parameter.name, DType::kFloat, parameter.shape,
                          bytes_of(std::span<const float>(parameter.values))));
  }
  return writer.commit();
}

Status load_state_dict(const fs::path& dir, Mlp& model) {
  OpenOptions options;
  options.format = "oneflow";
  auto reader = open_checkpoint(dir, options);
  if (!reader.ok()) return std::move(std::move(reader).error().in_file(dir.string()));
  if ((*reader)->layout() != layout_id(Layout::kSnapshot)) {
    return Error(ErrorCode::kUnsupportedLayout,
                 fmt::format("expected OneFlow layout {} (meta + out per variable), found {}",
                             layout_id(Layout::kSnapshot), (*reader)->layout()))
        .in_file(dir.string());
  }
  return load_parameters(**reader, model);
}

Status load_initial_weights(const fs::path& path, Mlp& model) {
  CKPT_ASSIGN_OR_RETURN(const auto reader, open_checkpoint(path));
  return load_parameters(*reader, model);
}

fs::path training_state_path(const fs::path& model_dir) {
  fs::path path = model_dir;
  // "out/" names the same directory as "out".
  if (!path.has_filename()) path = path.parent_path();
  path += ".train-state";
  return path;
}

std::uint64_t parameter_fingerprint(const Mlp& model) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const Parameter& parameter : model.parameters()) {
    for (const std::byte byte : bytes_of(std::span<const float>(parameter.values))) {
      hash = (hash ^ static_cast<std::uint64_t>(byte)) * 0x100000001b3ULL;
    }
  }
  return hash;
}

Status save_training_state(const TrainingState& state, const Mlp& model, const fs::path& dir, bool overwrite) {
  CKPT_ASSIGN_OR_RETURN(SnapshotWriter writer, SnapshotWriter::create(dir, overwrite_options(overwrite)));
  CKPT_TRY(add_scalar(writer, "format_version", DType::kInt64, kTrainingStateVersion));
  CKPT_TRY(add_scalar(writer, "epoch", DType::kInt64, state.epochs_done));
  CKPT_TRY(add_scalar(writer, "batch_size", DType::kInt64, state.batch_size));
  CKPT_TRY(add_scalar(writer, "seed", DType::kUInt64, state.seed));
  CKPT_TRY(add_scalar(writer, "shuffle_rng.state", DType::kUInt64, state.shuffle_rng.state()));
  CKPT_TRY(add_scalar(writer, "shuffle_rng.increment", DType::kUInt64, state.shuffle_rng.increment()));
  CKPT_TRY(add_scalar(writer, "sgd.lr", DType::kFloat, state.sgd.learning_rate));
  CKPT_TRY(add_scalar(writer, "sgd.momentum", DType::kFloat, state.sgd.momentum));
  CKPT_TRY(add_scalar(writer, "sgd.weight_decay", DType::kFloat, state.sgd.weight_decay));
  CKPT_TRY(add_scalar(writer, "model_fingerprint", DType::kUInt64, parameter_fingerprint(model)));
  for (std::size_t i = 0; i < state.momentum_buffers.size(); ++i) {
    const Parameter& parameter = model.parameters()[i];
    CKPT_TRY(add_variable(writer, fmt::format("{}{}", kMomentumPrefix, parameter.name), DType::kFloat,
                          parameter.shape, bytes_of(std::span<const float>(state.momentum_buffers[i]))));
  }
  return writer.commit();
}

Result<TrainingState> load_training_state(const fs::path& dir, const Mlp& model) {
  CKPT_ASSIGN_OR_RETURN(const Snapshot snapshot, open_snapshot(dir));
  CKPT_ASSIGN_OR_RETURN(const auto version, read_scalar<std::int64_t>(snapshot, "format_version", DType::kInt64));
  if (version != kTrainingStateVersion) {
    return Error(ErrorCode::kUnsupportedLayout,
                 fmt::format("training state format_version: expected {}, found {}", kTrainingStateVersion, version))
        .in_file(dir.string());
  }

  TrainingState state;
  CKPT_ASSIGN_OR_RETURN(state.epochs_done, read_scalar<std::int64_t>(snapshot, "epoch", DType::kInt64));
  CKPT_ASSIGN_OR_RETURN(state.batch_size, read_scalar<std::int64_t>(snapshot, "batch_size", DType::kInt64));
  CKPT_ASSIGN_OR_RETURN(state.seed, read_scalar<std::uint64_t>(snapshot, "seed", DType::kUInt64));
  CKPT_ASSIGN_OR_RETURN(const auto rng_state, read_scalar<std::uint64_t>(snapshot, "shuffle_rng.state", DType::kUInt64));
  CKPT_ASSIGN_OR_RETURN(const auto rng_increment,
                        read_scalar<std::uint64_t>(snapshot, "shuffle_rng.increment", DType::kUInt64));
  state.shuffle_rng = Pcg32::from_state(rng_state, rng_increment);
  CKPT_ASSIGN_OR_RETURN(state.sgd.learning_rate, read_scalar<float>(snapshot, "sgd.lr", DType::kFloat));
  CKPT_ASSIGN_OR_RETURN(state.sgd.momentum, read_scalar<float>(snapshot, "sgd.momentum", DType::kFloat));
  CKPT_ASSIGN_OR_RETURN(state.sgd.weight_decay, read_scalar<float>(snapshot, "sgd.weight_decay", DType::kFloat));
  CKPT_ASSIGN_OR_RETURN(const auto fingerprint, read_scalar<std::uint64_t>(snapshot, "model_fingerprint", DType::kUInt64));
  if (fingerprint != parameter_fingerprint(model)) {
    return mismatch(snapshot, "model_fingerprint",
                    fmt::format("expected {:#018x} (the parameters being resumed), found {:#018x}: the training "
                                "state belongs to another model snapshot",
                                parameter_fingerprint(model), fingerprint));
  }

  const bool has_momentum = snapshot.find(fmt::format("{}{}", kMomentumPrefix, model.parameters()[0].name)) != nullptr;
  if (state.sgd.momentum != 0.0f || has_momentum) {
    for (const Parameter& parameter : model.parameters()) {
      state.momentum_buffers.emplace_back(parameter.values.size());
      CKPT_TRY(read_checked(snapshot, fmt::format("{}{}", kMomentumPrefix, parameter.name), DType::kFloat,
                            parameter.shape, std::span<float>(state.momentum_buffers.back())));
    }
  }
  CKPT_TRY(check_no_unexpected(snapshot, "a training state", [&](std::string_view name) {
    if (name.starts_with(kMomentumPrefix)) return !state.momentum_buffers.empty();
    return std::find(kScalarNames.begin(), kScalarNames.end(), name) != kScalarNames.end();
  }));
  return state;
}

}  // namespace ckpt::train
