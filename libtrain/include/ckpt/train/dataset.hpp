// MNIST-format data sets: IDX files (gzipped or not) read into memory.
//
//   IDX layout (big-endian header, then row-major uint8 data):
//     bytes 0-1  zero        byte 2  type code (0x08 = unsigned byte)
//     byte 3     rank        then rank x uint32 dims, then the elements
//   images: rank 3 (count, rows, cols), labels: rank 1 (count).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

#include "ckpt/format/error.hpp"

namespace ckpt::train {

// An IDX file of unsigned bytes, as stored.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> values;
};

// Reads an IDX file of unsigned bytes; gzip is detected from the content.
// Errors name the file and what was expected: magic, type, rank, size.
Result<IdxArray> read_idx(const std::filesystem::path& path);

// Images as float32 in [0, 1] (pixel / 255), one row of `features` per sample.
struct Dataset {
  std::vector<float> images;          // (count, features)
  std::vector<std::int32_t> labels;   // (count)
  std::size_t features = 0;
  std::size_t classes = 10;

  std::size_t size() const { return labels.size(); }
  std::span<const float> image(std::size_t index) const { return {images.data() + index * features, features}; }
  // The first `count` samples (all of them when count >= size()).
  Dataset head(std::size_t count) const;
};

enum class Split { kTrain, kTest };

// Debian's dataset-fashion-mnist.
inline constexpr std::string_view kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

// Pairs an image file with a label file: counts must agree and every label
// must be below `classes`.
Result<Dataset> load_idx_pair(const std::filesystem::path& images, const std::filesystem::path& labels,
                              std::size_t classes = 10);

// `<dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`, the MNIST names.
Result<Dataset> load_mnist(const std::filesystem::path& dir, Split split);

}  // namespace ckpt::train
