// Sharded safetensors sets, the layout huggingface_hub's
// save_torch_state_dict and transformers' save_pretrained write for large
// models: a directory holding
//
//   model-00001-of-00004.safetensors ... model-00004-of-00004.safetensors
//   model.safetensors.index.json   {"metadata": {"total_size": N},
//                                   "weight_map": {"tensor": "model-00001-of-00004.safetensors", ...}}
//
// Registered as "safetensors-sharded": the directory, or its index file,
// opens as one checkpoint; the shards are checked together. Rules, the
// split rule and codes: spec/safetensors-sharded.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/error.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/tensor_chunks.hpp"

namespace ckpt {

// What the writer names the index; the reader takes any "*.safetensors.index.json".
inline constexpr std::string_view kShardedIndexName = "model.safetensors.index.json";
inline constexpr std::string_view kShardedIndexSuffix = ".safetensors.index.json";
// Larger index files are refused before they are read.
inline constexpr std::uint64_t kShardedMaxIndexBytes = 100'000'000;

// "5GB", "500MB", "1.5GB", "64KiB", "1000" -> bytes, as huggingface_hub
// reads max_shard_size (KB/MB/GB/TB are powers of 1000), plus KiB/MiB/GiB/TiB
// and a plain byte count. Fractions are cut to whole bytes; zero is refused.
Result<std::uint64_t> parse_byte_size(std::string_view text);

// huggingface_hub's split_state_dict_into_shards_factory: the tensors, in
// the order given, go into the current shard until the next would take it
// over `max_shard_bytes`; a tensor larger than the limit gets a shard of its
// own, placed before the current one. Returns the indices of each shard's
// tensors, in order.
std::vector<std::vector<std::size_t>> plan_shards(std::span<const std::uint64_t> tensor_bytes,
                                                  std::uint64_t max_shard_bytes);

// "model.safetensors" for a single shard, else "model-00002-of-00004.safetensors"
// (`index` counts from 0).
std::string shard_file_name(std::size_t index, std::size_t count);

// Tensors split across MPI ranks (spec/collective.md) are stored as chunks:
// each a tensor of its own in some shard, named by chunk_tensor_name, and
// listed under this key of the index. The reader returns the whole tensors.
inline constexpr std::string_view kChunkedTensorsKey = "chunked_tensors";

// "w@0,512": the stored name of the chunk of `name` at `offset`.
std::string chunk_tensor_name(std::string_view name, const Shape& offset);

// A tensor of a sharded set as the boxes it is stored in: one box covering
// it for a whole tensor, its chunks for a split one.
struct ChunkedTensor {
  std::string name;
  VariableMeta meta;
  std::vector<StoredChunk> chunks;
};

// The set at `path`, checked as open_checkpoint checks it, every tensor as
// its stored boxes, sorted by name: for reading any box with read_box.
Result<std::vector<ChunkedTensor>> open_sharded_chunks(const std::filesystem::path& path);

}  // namespace ckpt
