// NumPy .npy files (numpy/lib/format.py):
//
//   offset 0   "\x93NUMPY"
//          6   major version 1, 2 or 3; minor version 0
//          8   header length: u16 little-endian (v1), u32 (v2, v3)
//   10 or 12   header: a Python dict literal
//              {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//              padded with spaces and a final '\n' so data starts at a
//              multiple of 64; latin1 in v1/v2, UTF-8 in v3
//          …   the elements, C order (or Fortran order), no padding after
//
// The reader accepts all three versions and never requires alignment. The
// header parser reads the dict literal itself (no evaluation) and caps its
// size. Read data always comes out C order, little-endian.
//
// bfloat16: numpy has no such type; numpy with ml_dtypes saves it as '<V2',
// losing the type. We write kBFloat16 as '<V2' so numpy can load the bytes,
// and read '<V2' back as kBFloat16 only when NpyReadOptions::void2_as_bfloat16
// is set; otherwise a V2 file is refused. The descr 'bfloat16' (an
// ml_dtypes-aware writer's choice) is always read as kBFloat16.
//
// int8: OneFlow kChar and kInt8 are both numpy int8; '|i1' reads as kInt8.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/problems.hpp"
#include "ckpt/format/read_options.hpp"
#include "ckpt/format/validation.hpp"

namespace ckpt {

inline constexpr std::string_view kNpyMagicBytes = "\x93NUMPY";
inline constexpr std::string_view kNpyExtension = ".npy";
// numpy refuses headers over 10,000 characters by default; v2 headers of
// a legitimate array stay far below this.
inline constexpr std::uint64_t kNpyMaxHeaderBytes = 1u << 20;
// Alignment of the data written by numpy >= 1.14 and by us.
inline constexpr std::uint64_t kNpyAlignment = 64;
// What numpy (1.24 and later) loads: np.load refuses a header over
// _MAX_HEADER_SIZE bytes, and an ndarray has at most NPY_MAXDIMS dimensions.
inline constexpr std::uint64_t kNumpyMaxHeaderLength = 10000;
inline constexpr std::size_t kNumpyMaxDims = 32;

// The dict of a header, as parsed from its text.
struct NpyDict {
  DType dtype;
  bool big_endian = false;  // the data must be byte-swapped to little-endian
  bool fortran_order = false;
  Shape shape;
};

struct NpyHeader {
  int major_version = 1;
  bool big_endian = false;
  bool fortran_order = false;
  std::uint64_t data_offset = 0;  // first element byte in the file
  // The array as a OneFlow variable (C order, little-endian once read);
  // meta.byte_size() is the data size.
  VariableMeta meta;
  // Whether the stored bytes already are C order little-endian, so they can
  // be copied as they are.
  bool is_plain() const;
};

// Parses the dict literal of a header (the text after the length field).
// Keys in any order, trailing commas, any whitespace, Python-2 'L' suffixes;
// nothing is evaluated. Object, structured and other unsupported dtypes are
// refused with kNpyUnsupportedDtype.
Result<NpyDict> parse_npy_dict(std::string_view text, const NpyReadOptions& options = {});

// Reads and checks magic, version and header of an .npy held by `source`,
// and checks the data size: missing bytes are an error (kNpyTruncated),
// extra bytes a warning (kNpyTrailingBytes). Problems go to `problems`;
// nullopt after an error.
std::optional<NpyHeader> read_npy_header(const ByteSource& source, const NpyReadOptions& options,
                                         ProblemSink& problems);
// The same, failing on the first error; warnings are dropped.
Result<NpyHeader> read_npy_header(const ByteSource& source, const NpyReadOptions& options = {});

// The descr of the .npy held by `source` as its header writes it ("|S3",
// "[('a', '<i4')]"), for naming a type ckpt cannot represent; empty when
// the header cannot be read.
std::string npy_header_descr(const ByteSource& source);

// Presents the big-endian scalars of `inner` little-endian: each read_at
// swaps what it returns, at any offset (a partial scalar at either end
// included), holding no more than one scalar of its own.
class ByteSwappedSource final : public ByteSource {
 public:
  // `unit` is the scalar size to reverse (DTypeInfo::swap_unit: complex
  // types swap each half); the size of `inner` must be a multiple of it.
  static Result<std::unique_ptr<ByteSwappedSource>> make(std::unique_ptr<ByteSource> inner, std::size_t unit);
  std::uint64_t size() const override { return inner_->size(); }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return inner_->name(); }

 private:
  ByteSwappedSource(std::unique_ptr<ByteSource> inner, std::size_t unit) : inner_(std::move(inner)), unit_(unit) {}
  std::unique_ptr<ByteSource> inner_;
  std::size_t unit_;
};

// Presents a Fortran-order array held by `inner` in C order. Any element may
// be asked for first, so the whole array is read into memory on the first
// read; arrays over `max_bytes` are refused (kNpyTooLargeToReorder). Not
// safe for concurrent reads.
class FortranOrderSource final : public ByteSource {
 public:
  static Result<std::unique_ptr<FortranOrderSource>> make(std::unique_ptr<ByteSource> inner, const VariableMeta& meta,
                                                          std::uint64_t max_bytes);
  std::uint64_t size() const override { return inner_->size(); }
  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::string& name() const override { return inner_->name(); }

 private:
  FortranOrderSource(std::unique_ptr<ByteSource> inner, VariableMeta meta);
  std::unique_ptr<ByteSource> inner_;
  VariableMeta meta_;
  std::vector<std::uint64_t> fortran_strides_;  // in elements; the first axis is contiguous
  mutable std::vector<std::byte> fortran_;      // the whole array once read
  mutable bool loaded_ = false;
};

// The elements of the .npy held by `npy` in C order, little-endian: a slice
// of `npy` when they already are (a file stays a file, for copy_file_range),
// else the slice behind a ByteSwappedSource and/or a FortranOrderSource
// (capped by options.max_reorder_bytes).
Result<std::unique_ptr<ByteSource>> open_npy_data(std::shared_ptr<const ByteSource> npy, const NpyHeader& header,
                                                  const NpyReadOptions& options = {});

// The magic, version, length, dict and padding numpy would write for
// `meta` (C order, little-endian): the oldest version that holds the
// header, data aligned to 64 bytes. Fails for a dtype numpy cannot name.
Result<std::string> make_npy_header(const VariableMeta& meta);

// The descr written for `dtype` ("<f4"; "<V2" for kBFloat16), empty when
// numpy has none.
std::string_view npy_descr(DType dtype);

// Whether `data` can be written as an .npy of `meta`: numpy must name the
// dtype (kNpyUnsupportedDtype) and `data` must be exactly meta.byte_size()
// long (kBufferSizeMismatch). Writers check it before writing anything.
Status check_npy_data(const VariableMeta& meta, const ByteSource& data);

// Header, then the elements of `data` (C order, little-endian), checked by
// check_npy_data first.
Status write_npy(ByteSink& sink, const VariableMeta& meta, const ByteSource& data);

// Every .npy in `directory` checked: names, headers, sizes. Layout stays
// empty: the caller reports the format as "npy".
ValidationReport validate_npy_directory(const std::filesystem::path& directory,
                                        const NpyReadOptions& options = {});

}  // namespace ckpt
