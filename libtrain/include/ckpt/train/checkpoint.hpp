// Checkpoints of a training run, both written through libformat as E1
// snapshots (what flow.save(state_dict, dir) writes):
//
//   <dir>/               the model: a plain state_dict, one float32 variable
//                        per parameter (l1.weight, l1.bias, ...), nothing else
//   <dir>.train-state/   epoch, SGD options and momentum buffers, the shuffling
//                        generator, and a fingerprint of <dir>'s parameters
//
// spec/training-state.md documents the second.
#pragma once

#include <cstdint>
#include <filesystem>

#include "ckpt/format/error.hpp"
#include "ckpt/train/model.hpp"
#include "ckpt/train/trainer.hpp"

namespace ckpt::train {

// flow.save(model.state_dict(), dir).
Status save_state_dict(const Mlp& model, const std::filesystem::path& dir, bool overwrite);

// model.load_state_dict(flow.load(dir)): the snapshot must have exactly the
// model's variables, each kFloat with the parameter's shape; a difference is
// kStateDictMismatch naming the variable, expected and found.
Status load_state_dict(const std::filesystem::path& dir, Mlp& model);

// The starting weights of `ckpt-train --init`: a checkpoint of any format
// libformat reads holding exactly the model's parameters, each float32 of
// its shape; otherwise kStateDictMismatch naming the tensor (unexpected,
// missing, dtype or shape with expected and found), the model unchanged.
Status load_initial_weights(const std::filesystem::path& path, Mlp& model);

// "<dir>.train-state", the sibling holding the training state of `dir`.
std::filesystem::path training_state_path(const std::filesystem::path& model_dir);

// 64-bit FNV-1a over every parameter's bytes in state_dict order: ties a
// training state to the model snapshot saved with it.
std::uint64_t parameter_fingerprint(const Mlp& model);

// Writes `state` for `model` (the parameters saved with it) to `dir`.
Status save_training_state(const TrainingState& state, const Mlp& model, const std::filesystem::path& dir,
                           bool overwrite);

// Reads a training state written for `model`: momentum buffers must match its
// parameters, and the fingerprint its values (kStateDictMismatch otherwise).
Result<TrainingState> load_training_state(const std::filesystem::path& dir, const Mlp& model);

}  // namespace ckpt::train
