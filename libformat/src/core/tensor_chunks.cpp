#include "ckpt/format/tensor_chunks.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

#include <fmt/format.h>

namespace ckpt {
namespace {

std::uint64_t volume(const Shape& shape) {
  std::uint64_t count = 1;
  for (auto dim : shape) count *= static_cast<std::uint64_t>(dim);
  return count;
}

std::string box_to_string(const TensorBox& box) {
  return fmt::format("offset {} shape {}", shape_to_string(box.offset), shape_to_string(box.shape));
}

bool overlaps(const TensorBox& a, const TensorBox& b) {
  for (std::size_t d = 0; d < a.shape.size(); ++d) {
    if (a.offset[d] + a.shape[d] <= b.offset[d] || b.offset[d] + b.shape[d] <= a.offset[d]) return false;
  }
  return true;
}

// Element index of `position` (a point of `box`) in C order over `box`.
std::uint64_t index_in(const TensorBox& box, const Shape& position) {
  std::uint64_t index = 0;
  for (std::size_t d = 0; d < box.shape.size(); ++d) {
    index = index * static_cast<std::uint64_t>(box.shape[d]) + static_cast<std::uint64_t>(position[d] - box.offset[d]);
  }
  return index;
}

// A scalar is read as a tensor of shape [1].
TensorBox at_least_1d(TensorBox box) {
  if (box.shape.empty()) box = {{0}, {1}};
  return box;
}

// The elements [first, end) of a tensor of `shape` (C order) as boxes, in
// order, each contiguous in the tensor: a partial first row, whole slabs, a
// partial last row, recursively. At most 2 x rank + 1 boxes.
void linear_boxes(const Shape& shape, std::size_t dim, Shape prefix, std::uint64_t first, std::uint64_t end,
                  const std::function<void(const TensorBox&)>& emit) {
  if (first >= end) return;
  std::uint64_t inner = 1;
  for (std::size_t d = dim + 1; d < shape.size(); ++d) inner *= static_cast<std::uint64_t>(shape[d]);
  auto slab = [&](std::uint64_t from, std::uint64_t to) {
    TensorBox box{prefix, Shape(prefix.size(), 1)};
    box.offset.push_back(static_cast<std::int64_t>(from));
    box.shape.push_back(static_cast<std::int64_t>(to - from));
    for (std::size_t d = dim + 1; d < shape.size(); ++d) {
      box.offset.push_back(0);
      box.shape.push_back(shape[d]);
    }
    emit(box);
  };
  auto within = [&](std::uint64_t row, std::uint64_t from, std::uint64_t to) {
    Shape deeper = prefix;
    deeper.push_back(static_cast<std::int64_t>(row));
    linear_boxes(shape, dim + 1, std::move(deeper), from, to, emit);
  };
  const std::uint64_t first_row = first / inner, last_row = (end - 1) / inner;
  if (first_row == last_row && (first % inner != 0 || end - first != inner)) {
    within(first_row, first % inner, end - first_row * inner);
    return;
  }
  std::uint64_t full_from = first_row;
  if (first % inner != 0) {
    within(first_row, first % inner, inner);
    ++full_from;
  }
  const std::uint64_t tail = end - last_row * inner;
  const std::uint64_t full_to = tail == inner ? last_row + 1 : last_row;
  if (full_from < full_to) slab(full_from, full_to);
  if (tail != inner) within(last_row, 0, tail);
}

class ChunkedSource final : public ByteSource {
 public:
  ChunkedSource(std::vector<StoredChunk> chunks, VariableMeta meta, std::string name)
      : chunks_(std::move(chunks)), meta_(std::move(meta)), name_(std::move(name)) {}

  std::uint64_t size() const override { return meta_.byte_size(); }
  const std::string& name() const override { return name_; }

  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    CKPT_TRY(check_range(*this, offset, out.size()));
    if (out.empty()) return {};
    const std::size_t element = dtype_size(meta_.dtype());
    const std::uint64_t first = offset / element, end = (offset + out.size() + element - 1) / element;
    // A range cut inside an element goes through whole elements.
    std::vector<std::byte> whole;
    std::span<std::byte> target = out;
    if (offset % element != 0 || out.size() % element != 0) {
      whole.resize((end - first) * element);
      target = whole;
    }
    const TensorBox full = at_least_1d({Shape(meta_.shape().size(), 0), meta_.shape()});
    Status status;
    std::uint64_t written = 0;
    linear_boxes(full.shape, 0, {}, first, end, [&](const TensorBox& box) {
      if (!status.ok()) return;
      const std::uint64_t bytes = volume(box.shape) * element;
      status = read_box(chunks_, full.shape, element, box, target.subspan(written, bytes), name_);
      written += bytes;
    });
    CKPT_TRY(status);
    if (!whole.empty()) std::memcpy(out.data(), whole.data() + offset % element, out.size());
    return {};
  }

 private:
  std::vector<StoredChunk> chunks_;
  VariableMeta meta_;
  std::string name_;
};

}  // namespace

std::string box_outside(const TensorBox& box, const Shape& shape) {
  if (box.offset.size() != shape.size() || box.shape.size() != shape.size()) {
    return fmt::format("{} has not the rank of the tensor's shape {}", box_to_string(box), shape_to_string(shape));
  }
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (box.offset[d] < 0 || box.shape[d] < 0 || box.offset[d] > shape[d] || box.shape[d] > shape[d] - box.offset[d]) {
      return fmt::format("{} is outside the tensor's shape {} in dimension {}", box_to_string(box),
                         shape_to_string(shape), d);
    }
  }
  return {};
}

std::string tiling_problem(const Shape& shape, std::span<const TensorBox> boxes) {
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    if (auto outside = box_outside(boxes[i], shape); !outside.empty()) return outside;
    if (volume(boxes[i].shape) == 0) continue;
    for (std::size_t j = 0; j < i; ++j) {
      if (volume(boxes[j].shape) != 0 && overlaps(boxes[i], boxes[j])) {
        return fmt::format("{} overlaps {}", box_to_string(boxes[i]), box_to_string(boxes[j]));
      }
    }
    covered += volume(boxes[i].shape);
  }
  if (covered != volume(shape)) {
    return fmt::format("the pieces hold {} of the {} elements of shape {}", covered, volume(shape),
                       shape_to_string(shape));
  }
  return {};
}

Status read_box(std::span<const StoredChunk> chunks, const Shape& shape, std::size_t element_size,
                const TensorBox& requested, std::span<std::byte> out, std::string_view name) {
  if (auto outside = box_outside(requested, shape); !outside.empty()) {
    return Error(ErrorCode::kCollectivePieces, "the box asked for: " + outside).in_variable(name);
  }
  const TensorBox want = at_least_1d(requested);
  if (out.size() != volume(want.shape) * element_size) {
    return Error(ErrorCode::kBufferSizeMismatch, fmt::format("the buffer has {} bytes, the box {} x {}", out.size(),
                                                             volume(want.shape), element_size))
        .in_variable(name);
  }
  const std::size_t rank = want.shape.size();
  std::uint64_t filled = 0;
  for (const auto& stored : chunks) {
    const TensorBox chunk = at_least_1d(stored.box);
    Shape low(rank), high(rank);
    bool empty = false;
    for (std::size_t d = 0; d < rank; ++d) {
      low[d] = std::max(chunk.offset[d], want.offset[d]);
      high[d] = std::min(chunk.offset[d] + chunk.shape[d], want.offset[d] + want.shape[d]);
      empty = empty || low[d] >= high[d];
    }
    if (empty) continue;
    // Dimensions after `split` are spanned whole by the overlap, the chunk
    // and the box alike: one run covers them and part of dimension `split`.
    std::size_t split = rank - 1;
    auto spanned = [&](std::size_t d) {
      return high[d] - low[d] == chunk.shape[d] && chunk.shape[d] == want.shape[d];
    };
    while (split > 0 && spanned(split)) --split;
    std::uint64_t run = 1;
    for (std::size_t d = split; d < rank; ++d) run *= static_cast<std::uint64_t>(high[d] - low[d]);
    Shape position = low;
    while (true) {
      const std::uint64_t from = stored.start + index_in(chunk, position) * element_size;
      CKPT_TRY(stored.file->read_at(from, out.subspan(index_in(want, position) * element_size, run * element_size)));
      filled += run;
      // The next run: count up the dimensions before `split`.
      bool every_run_read = true;
      for (std::size_t d = split; d > 0 && every_run_read;) {
        --d;
        if (++position[d] < high[d]) {
          every_run_read = false;
        } else {
          position[d] = low[d];
        }
      }
      if (every_run_read) break;
    }
  }
  if (filled != volume(want.shape)) {
    return Error(ErrorCode::kShardedChunks,
                 fmt::format("the stored chunks hold {} of the {} elements asked for ({})", filled, volume(want.shape),
                             box_to_string(requested)))
        .in_variable(name);
  }
  return {};
}

std::unique_ptr<ByteSource> chunked_source(std::vector<StoredChunk> chunks, VariableMeta meta, std::string name) {
  return std::make_unique<ChunkedSource>(std::move(chunks), std::move(meta), std::move(name));
}

}  // namespace ckpt
