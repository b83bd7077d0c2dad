#include "ckpt/train/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>

#include <fmt/format.h>

namespace ckpt::train {

namespace fs = std::filesystem;

namespace {

constexpr std::uint8_t kUnsignedByteType = 0x08;
// A real IDX file has rank 1 to 4; anything above is a wrong file.
constexpr std::uint8_t kMaxRank = 4;
constexpr std::size_t kReadChunk = 1U << 20U;
// Far above any image set, far below what would overflow a size computation.
constexpr std::uint64_t kMaxElements = std::uint64_t{1} << 40U;

Error idx_error(ErrorCode code, const fs::path& path, std::string message) {
  Error error(code, std::move(message));
  error.in_file(path.string());
  return error;
}

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// zlib reads plain files unchanged, so one path serves both encodings.
class IdxInput {
 public:
  static Result<IdxInput> open(const fs::path& path) {
    std::error_code status;
    if (!fs::exists(path, status)) return idx_error(ErrorCode::kNotFound, path, "IDX file does not exist");
    GzFile file(gzopen(path.c_str(), "rb"));
    if (!file) return idx_error(ErrorCode::kIo, path, "cannot open IDX file");
    return IdxInput(path, std::move(file));
  }

  // Up to out.size() bytes; fewer only at the end of the data.
  Result<std::size_t> read(std::span<std::uint8_t> out) {
    std::size_t total = 0;
    while (total < out.size()) {
      const auto want = static_cast<unsigned>(std::min(out.size() - total, kReadChunk));
      const int got = gzread(file_.get(), out.data() + total, want);
      if (got < 0 || (got == 0 && !gzeof(file_.get()))) return stream_error();
      if (got == 0) break;
      total += static_cast<std::size_t>(got);
    }
    // A truncated gzip stream ends with Z_BUF_ERROR rather than a read error.
    int code = Z_OK;
    const char* text = gzerror(file_.get(), &code);
    if (code != Z_OK) {
      return idx_error(ErrorCode::kIdxTruncated, path_, fmt::format("corrupt or truncated gzip stream: {}", text));
    }
    return total;
  }

 private:
  IdxInput(fs::path path, GzFile file) : path_(std::move(path)), file_(std::move(file)) {}
  Error stream_error() const {
    int code = Z_OK;
    const char* text = gzerror(file_.get(), &code);
    return idx_error(code == Z_ERRNO ? ErrorCode::kIo : ErrorCode::kIdxTruncated, path_,
                     fmt::format("cannot read IDX data: {}", text));
  }

  fs::path path_;
  GzFile file_;
};

std::uint32_t read_be32(const std::uint8_t* bytes) {
  return (std::uint32_t{bytes[0]} << 24U) | (std::uint32_t{bytes[1]} << 16U) | (std::uint32_t{bytes[2]} << 8U) |
         std::uint32_t{bytes[3]};
}

std::string dims_to_string(const std::vector<std::uint32_t>& dims) {
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

fs::path find_mnist_file(const fs::path& dir, std::string_view stem) {
  const fs::path plain = dir / stem;
  fs::path gzipped = plain;
  gzipped += ".gz";
  std::error_code status;
  return fs::exists(gzipped, status) ? gzipped : plain;
}

}  // namespace

Result<IdxArray> read_idx(const fs::path& path) {
  CKPT_ASSIGN_OR_RETURN(auto input, IdxInput::open(path));

  std::array<std::uint8_t, 4> magic{};
  CKPT_ASSIGN_OR_RETURN(const std::size_t magic_bytes, input.read(magic));
  if (magic_bytes < magic.size()) {
    return idx_error(ErrorCode::kIdxTruncated, path,
                     fmt::format("IDX header: expected 4 magic bytes, found {}", magic_bytes));
  }
  if (magic[0] != 0 || magic[1] != 0) {
    return idx_error(ErrorCode::kIdxFormat, path,
                     fmt::format("IDX magic: expected 00 00 <type> <rank>, found {:02x} {:02x} {:02x} {:02x}", magic[0],
                                 magic[1], magic[2], magic[3]));
  }
  if (magic[2] != kUnsignedByteType) {
    return idx_error(ErrorCode::kIdxFormat, path,
                     fmt::format("IDX type: expected 0x08 (unsigned byte), found 0x{:02x}", magic[2]));
  }
  const std::uint8_t rank = magic[3];
  if (rank == 0 || rank > kMaxRank) {
    return idx_error(ErrorCode::kIdxFormat, path, fmt::format("IDX rank: expected 1 to {}, found {}", kMaxRank, rank));
  }

  std::vector<std::uint8_t> dim_bytes(std::size_t{rank} * 4U);
  CKPT_ASSIGN_OR_RETURN(const std::size_t dim_read, input.read(dim_bytes));
  if (dim_read < dim_bytes.size()) {
    return idx_error(ErrorCode::kIdxTruncated, path,
                     fmt::format("IDX header: expected {} bytes of dims, found {}", dim_bytes.size(), dim_read));
  }

  IdxArray array;
  std::uint64_t count = 1;
  for (std::size_t i = 0; i < rank; ++i) {
    array.dims.push_back(read_be32(dim_bytes.data() + 4 * i));
    // Checked before multiplying, so the product cannot overflow.
    const std::uint64_t dim = array.dims.back();
    if (dim != 0 && count > kMaxElements / dim) {
      return idx_error(ErrorCode::kIdxFormat, path,
                       fmt::format("IDX dims {} describe more than 2^40 elements", dims_to_string(array.dims)));
    }
    count *= dim;
  }

  // Grown while reading, so a header that lies about its size cannot make us
  // allocate more than the file holds.
  while (array.values.size() < count) {
    const std::size_t offset = array.values.size();
    const std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(count - offset, kReadChunk));
    array.values.resize(offset + step);
    CKPT_ASSIGN_OR_RETURN(const std::size_t got, input.read({array.values.data() + offset, step}));
    if (got < step) {
      return idx_error(ErrorCode::kIdxTruncated, path,
                       fmt::format("IDX data for dims {}: expected {} bytes, found {}", dims_to_string(array.dims),
                                   count, offset + got));
    }
  }

  std::array<std::uint8_t, 1> extra{};
  CKPT_ASSIGN_OR_RETURN(const std::size_t extra_bytes, input.read(extra));
  if (extra_bytes != 0) {
    return idx_error(ErrorCode::kIdxTrailingBytes, path,
                     fmt::format("IDX data for dims {}: expected {} bytes, found more", dims_to_string(array.dims),
                                 count));
  }
  return array;
}

Dataset Dataset::head(std::size_t count) const {
  Dataset subset;
  subset.features = features;
  subset.classes = classes;
  const std::size_t kept = std::min(count, size());
  subset.images.assign(images.begin(), images.begin() + static_cast<std::ptrdiff_t>(kept * features));
  subset.labels.assign(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(kept));
  return subset;
}

Result<Dataset> load_idx_pair(const fs::path& images_path, const fs::path& labels_path, std::size_t classes) {
  CKPT_ASSIGN_OR_RETURN(auto images, read_idx(images_path));
  CKPT_ASSIGN_OR_RETURN(auto labels, read_idx(labels_path));
  if (images.dims.size() != 3) {
    return idx_error(ErrorCode::kDatasetMismatch, images_path,
                     fmt::format("images: expected rank 3 (count, rows, cols), found dims {}",
                                 dims_to_string(images.dims)));
  }
  if (labels.dims.size() != 1) {
    return idx_error(ErrorCode::kDatasetMismatch, labels_path,
                     fmt::format("labels: expected rank 1 (count), found dims {}", dims_to_string(labels.dims)));
  }
  if (images.dims[0] != labels.dims[0]) {
    return idx_error(ErrorCode::kDatasetMismatch, labels_path,
                     fmt::format("labels: expected {} (the image count of '{}'), found {}", images.dims[0],
                                 images_path.string(), labels.dims[0]));
  }

  Dataset dataset;
  dataset.classes = classes;
  dataset.features = std::size_t{images.dims[1]} * images.dims[2];
  dataset.labels.reserve(labels.values.size());
  for (std::size_t i = 0; i < labels.values.size(); ++i) {
    if (labels.values[i] >= classes) {
      return idx_error(ErrorCode::kDatasetMismatch, labels_path,
                       fmt::format("label {}: expected below {}, found {}", i, classes, labels.values[i]));
    }
    dataset.labels.push_back(labels.values[i]);
  }
  dataset.images.resize(images.values.size());
  std::transform(images.values.begin(), images.values.end(), dataset.images.begin(),
                 [](std::uint8_t pixel) { return static_cast<float>(pixel) / 255.0f; });
  return dataset;
}

Result<Dataset> load_mnist(const fs::path& dir, Split split) {
  const std::string_view prefix = split == Split::kTrain ? "train" : "t10k";
  return load_idx_pair(find_mnist_file(dir, fmt::format("{}-images-idx3-ubyte", prefix)),
                       find_mnist_file(dir, fmt::format("{}-labels-idx1-ubyte", prefix)));
}

}  // namespace ckpt::train
