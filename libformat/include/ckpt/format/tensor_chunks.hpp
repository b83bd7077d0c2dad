// A tensor stored as several boxes ("chunks"), each in C order somewhere in a
// file: how a tensor split across MPI ranks lies on disk (spec/collective.md).
// Any box of the tensor is read from the chunks it overlaps, one read per
// contiguous run, never the whole tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/tensor.hpp"

namespace ckpt {

// The box [offset[d], offset[d] + shape[d]) in every dimension d of a tensor.
struct TensorBox {
  Shape offset;
  Shape shape;
};

// One stored box of a tensor: its bytes, C order over the box, start at
// `start` in `file`.
struct StoredChunk {
  TensorBox box;
  std::shared_ptr<const ByteSource> file;
  std::uint64_t start = 0;
};

// Empty when `box` lies inside a tensor of `shape` (same rank, every dim
// within); else why not.
std::string box_outside(const TensorBox& box, const Shape& shape);

// Empty when `boxes` tile a tensor of `shape` exactly: each inside, no two
// overlapping, their volumes adding up to the tensor's; else the first breach.
// O(boxes²).
std::string tiling_problem(const Shape& shape, std::span<const TensorBox> boxes);

// Fills `out` (C order over `want`, exactly its bytes) with the elements of
// `want`, a box of the tensor of `shape`, from `chunks`, which tile it: only
// the chunks overlapping `want` are read, one read_at per contiguous run
// (runs merge where the overlap spans the trailing dimensions of both the
// chunk and `want`). `name` is the tensor's, for errors.
Status read_box(std::span<const StoredChunk> chunks, const Shape& shape, std::size_t element_size,
                const TensorBox& want, std::span<std::byte> out, std::string_view name);

// The whole tensor as a source: each range read is cut into boxes, each read
// with read_box.
std::unique_ptr<ByteSource> chunked_source(std::vector<StoredChunk> chunks, VariableMeta meta, std::string name);

}  // namespace ckpt
