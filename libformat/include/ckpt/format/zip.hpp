// Zip archives, the container of .npz (PKWARE APPNOTE 6.3):
//
//   per member: local header (30 bytes + name + extra), data, [data descriptor]
//   central directory: one 46-byte record (+ name, extra, comment) per member
//   [ZIP64 end record (56 bytes), ZIP64 locator (20 bytes)]
//   end record (22 bytes + comment)
//
// The reader trusts the central directory (local headers may carry zero
// sizes), reads ZIP64 sizes and offsets, and supports stored and deflated
// members. The writer streams: members end with a ZIP64 data descriptor, as
// Python's zipfile writes to a pipe, so the sink never needs to seek.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

enum class ZipMethod : std::uint16_t { kStored = 0, kDeflate = 8 };

struct ZipEntry {
  std::string name;  // as stored: not checked for safety here
  ZipMethod method = ZipMethod::kStored;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;  // uncompressed
  std::uint64_t local_header_offset = 0;
};

// A central directory larger than this is refused before it is read.
inline constexpr std::uint64_t kZipMaxDirectoryBytes = 256u << 20;

// What the first 4 bytes of `source` say: a zip that starts with a member
// (a local header, as numpy and torch write), an empty zip (the end record
// alone), or not a zip. The one cheap look every zip-based format detects with.
enum class ZipStart { kNotZip, kMember, kEmpty };
ZipStart sniff_zip(const ByteSource& source);

class ZipReader {
 public:
  // Reads the central directory of the archive in `source`, which must
  // outlive the reader. Fails on encryption, multi-disk archives, methods
  // other than stored and deflate, duplicate names, and any record that
  // points outside the archive.
  static Result<ZipReader> open(const ByteSource& source);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;

  // The member's uncompressed bytes. Stored members are read in place;
  // deflated ones are inflated on the fly (cheap front to back, restarted on
  // a backward read), never inflated past the declared size. The CRC-32 is
  // checked when a front-to-back pass reaches the end (kZipCrc). Not safe
  // for concurrent reads.
  Result<std::unique_ptr<ByteSource>> open_member(const ZipEntry& entry) const;

  // Where the member's (compressed) data starts in the archive, after its
  // local header, checked to lie inside the archive: a stored member is the
  // slice [data_offset, data_offset + size).
  Result<std::uint64_t> data_offset(const ZipEntry& entry) const;

 private:
  ZipReader(const ByteSource& source, std::vector<ZipEntry> entries) : source_(&source), entries_(std::move(entries)) {}
  const ByteSource* source_;
  std::vector<ZipEntry> entries_;
};

class ZipWriter {
 public:
  // Writes to `sink`, which must outlive the writer. `force_zip64` writes
  // ZIP64 fields in every central record even when 32 bits would do.
  explicit ZipWriter(ByteSink& sink, bool force_zip64 = false) : sink_(&sink), force_zip64_(force_zip64) {}

  // Adds a member whose content `write_content` writes to the sink it is
  // given, any amount, in any number of writes. A `data_alignment` > 1 pads
  // the local header so the content starts at a multiple of it (torch: 64).
  Status add(std::string_view name, ZipMethod method, const std::function<Status(ByteSink&)>& write_content,
             std::uint64_t data_alignment = 0);

  // Writes the central directory and end records. The caller finishes the sink.
  Status finish();

 private:
  Status write(std::span<const std::byte> bytes);

  ByteSink* sink_;
  bool force_zip64_;
  std::uint64_t offset_ = 0;
  std::vector<ZipEntry> entries_;
};

}  // namespace ckpt
