// A fixed batch order shared with other trainers (`ckpt-train --order FILE`,
// spec/training-state.md "Batch order"): one row of sample indices per epoch,
// batches taken in row order, so OneFlow, PyTorch and ckpt-train see the same
// samples in the same batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "ckpt/format/error.hpp"

namespace ckpt::train {

// Row e is epoch e + 1's sample order; every row has the same length.
using EpochOrder = std::vector<std::vector<std::uint32_t>>;

// Reads FILE: a checkpoint of any readable format (an .npy in practice)
// holding exactly one tensor, kInt32 or kInt64 of shape [epochs, samples],
// every index in [0, train_size). Anything else is kDatasetMismatch naming
// the file, the tensor and what was expected.
Result<EpochOrder> load_epoch_order(const std::filesystem::path& path, std::size_t train_size);

// 0, 1, ..., samples - 1 for each of `epochs` epochs: --no-shuffle.
EpochOrder sequential_order(std::size_t epochs, std::size_t samples);

}  // namespace ckpt::train
