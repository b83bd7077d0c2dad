#include "ckpt/format/zip.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <cstring>
#include <unordered_set>

#include <fmt/format.h>
#include <zlib.h>

#include "core/little_endian.hpp"

namespace ckpt {
namespace {

constexpr std::uint32_t kLocalSignature = 0x04034b50;
constexpr std::uint32_t kCentralSignature = 0x02014b50;
constexpr std::uint32_t kEndSignature = 0x06054b50;
constexpr std::uint32_t kZip64EndSignature = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr std::uint32_t kDescriptorSignature = 0x08074b50;
constexpr std::size_t kLocalHeaderBytes = 30;
constexpr std::size_t kCentralRecordBytes = 46;
constexpr std::size_t kEndRecordBytes = 22;
constexpr std::size_t kZip64EndRecordBytes = 56;
constexpr std::size_t kZip64LocatorBytes = 20;
constexpr std::size_t kMaxCommentBytes = 0xffff;
constexpr std::uint16_t kPaddingExtraId = 0x4246;  // "FB", little-endian
constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::uint16_t kVersionZip64 = 45;
constexpr std::uint16_t kFlagEncrypted = 0x0001;
constexpr std::uint16_t kFlagDataDescriptor = 0x0008;
constexpr std::uint16_t kFlagUtf8 = 0x0800;
constexpr std::uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;  // fixed: output is reproducible
constexpr std::uint32_t kMax32 = 0xffffffff;
constexpr std::uint16_t kMax16 = 0xffff;
// Buffer between the archive and zlib, either way.
constexpr std::size_t kInflateChunkBytes = 256u << 10;
// zlib counts in 32 bits: larger spans go through it in pieces.
constexpr std::size_t kMaxZlibSpan = 1u << 30;

// Little-endian fields out of a byte span whose size the caller checked.
class FieldReader {
 public:
  explicit FieldReader(std::span<const std::byte> bytes, std::size_t pos = 0) : bytes_(bytes), pos_(pos) {}
  std::uint64_t take(std::size_t width) {
    std::uint64_t value = detail::load_le(bytes_.subspan(pos_, width));
    pos_ += width;
    return value;
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>(take(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(take(4)); }
  std::uint64_t u64() { return take(8); }
  void skip(std::size_t n) { pos_ += n; }
  std::size_t pos() const { return pos_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_;
};

class FieldWriter {
 public:
  FieldWriter& put(std::uint64_t value, std::size_t width) {
    detail::append_le(bytes_, value, width);
    return *this;
  }
  FieldWriter& u16(std::uint64_t v) { return put(v, 2); }
  FieldWriter& u32(std::uint64_t v) { return put(v, 4); }
  FieldWriter& u64(std::uint64_t v) { return put(v, 8); }
  FieldWriter& text(std::string_view t) {
    bytes_ += t;
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

Error zip_error(ErrorCode code, const ByteSource& source, std::string message) {
  return Error(code, std::move(message)).in_file(source.name());
}

// Fills the fields that the fixed record marks 0xffffffff from a ZIP64
// extended-information extra field, in the order the APPNOTE gives.
Status apply_zip64_extra(std::span<const std::byte> extra, ZipEntry& entry, const ByteSource& source) {
  for (FieldReader fields(extra); fields.pos() + 4 <= extra.size();) {
    std::uint16_t id = fields.u16();
    std::uint16_t length = fields.u16();
    if (fields.pos() + length > extra.size()) {
      return zip_error(ErrorCode::kZipFormat, source, fmt::format("member '{}': extra field overruns", entry.name));
    }
    if (id != kZip64ExtraId) {
      fields.skip(length);
      continue;
    }
    FieldReader zip64(extra.subspan(fields.pos(), length));
    std::size_t left = length;
    for (std::uint64_t* field : {&entry.size, &entry.compressed_size, &entry.local_header_offset}) {
      if (*field != kMax32) continue;
      if (left < 8) {
        return zip_error(ErrorCode::kZipFormat, source, fmt::format("member '{}': ZIP64 field too short", entry.name));
      }
      *field = zip64.u64();
      left -= 8;
    }
    return {};
  }
  return {};
}

// The uncompressed bytes of one member, see ZipReader::open_member.
class MemberSource final : public ByteSource {
 public:
  MemberSource(const ByteSource& archive, ZipEntry entry, std::uint64_t data_offset)
      : archive_(archive), entry_(std::move(entry)), data_offset_(data_offset),
        name_(fmt::format("{}:{}", archive.name(), entry_.name)) {}
  ~MemberSource() override {
    if (inflating_) inflateEnd(&stream_);
  }
  MemberSource(const MemberSource&) = delete;
  MemberSource& operator=(const MemberSource&) = delete;

  std::uint64_t size() const override { return entry_.size; }
  const std::string& name() const override { return name_; }
  // A stored member is a window of the archive file: mappable in place.
  // (A mapping skips the CRC check that reads from the start do.)
  int file_descriptor() const override {
    return entry_.method == ZipMethod::kStored ? archive_.file_descriptor() : -1;
  }
  std::uint64_t file_offset() const override { return archive_.file_offset() + data_offset_; }

  Status read_at(std::uint64_t offset, std::span<std::byte> out) const override {
    CKPT_TRY(check_range(*this, offset, out.size()));
    if (entry_.method == ZipMethod::kStored) {
      CKPT_TRY(archive_.read_at(data_offset_ + offset, out));
      if (offset == 0) {  // a new pass from the start
        crc_position_ = 0;
        crc_ = 0;
      }
      if (offset == crc_position_) return account(out);
      return {};
    }
    if (!inflating_ || offset < crc_position_) CKPT_TRY(restart_inflate());
    std::vector<std::byte> skipped;
    while (crc_position_ < offset) {  // inflate and drop what comes before `offset`
      skipped.resize(static_cast<std::size_t>(std::min<std::uint64_t>(offset - crc_position_, kInflateChunkBytes)));
      CKPT_TRY(inflate_into(skipped));
    }
    return inflate_into(out);
  }

 private:
  // CRC of the bytes [0, crc_position_) read in order; checked at the end,
  // after a deflate stream is known to end there.
  Status account(std::span<const std::byte> bytes) const {
    crc_ = crc32_z(crc_, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
    crc_position_ += bytes.size();
    if (crc_position_ != entry_.size) return {};
    if (entry_.method == ZipMethod::kDeflate) CKPT_TRY(check_stream_end());
    if (crc_ != entry_.crc32) {
      return Error(ErrorCode::kZipCrc, fmt::format("CRC-32 is {:08x}, the directory says {:08x}", crc_, entry_.crc32))
          .in_file(name_);
    }
    return {};
  }

  Status restart_inflate() const {
    if (inflating_) inflateEnd(&stream_);
    stream_ = {};
    if (inflateInit2(&stream_, -MAX_WBITS) != Z_OK) {
      return Error(ErrorCode::kZipFormat, "zlib inflateInit2 failed").in_file(name_);
    }
    inflating_ = true;
    input_.resize(kInflateChunkBytes);
    input_used_ = 0;
    crc_position_ = 0;
    crc_ = 0;
    return {};
  }

  // Feeds zlib the next piece of compressed data once it has used the last.
  Status refill() const {
    if (stream_.avail_in > 0 || input_used_ == entry_.compressed_size) return {};
    std::size_t piece =
        static_cast<std::size_t>(std::min<std::uint64_t>(entry_.compressed_size - input_used_, input_.size()));
    CKPT_TRY(archive_.read_at(data_offset_ + input_used_, std::span(input_.data(), piece)));
    input_used_ += piece;
    stream_.next_in = reinterpret_cast<Bytef*>(input_.data());
    stream_.avail_in = static_cast<uInt>(piece);
    return {};
  }

  // Produces exactly out.size() bytes of the stream, or fails.
  Status inflate_into(std::span<std::byte> out) const {
    for (; out.size() > kMaxZlibSpan; out = out.subspan(kMaxZlibSpan)) CKPT_TRY(inflate_into(out.first(kMaxZlibSpan)));
    auto corrupt = [&](std::string what) {
      return Error(ErrorCode::kZipFormat, fmt::format("deflate data: {} at uncompressed byte {}", what, crc_position_))
          .in_file(name_);
    };
    stream_.next_out = reinterpret_cast<Bytef*>(out.data());
    stream_.avail_out = static_cast<uInt>(out.size());
    while (stream_.avail_out > 0) {
      CKPT_TRY(refill());
      int rc = inflate(&stream_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END && stream_.avail_out > 0) return corrupt("the stream ends early");
      if (rc == Z_BUF_ERROR && stream_.avail_in == 0) return corrupt("the compressed data ends early");
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        return corrupt(stream_.msg != nullptr ? stream_.msg : "zlib error");
      }
    }
    return account(out);
  }

  // The declared size is reached: the stream must end here, not inflate on.
  Status check_stream_end() const {
    std::byte extra{};
    stream_.next_out = reinterpret_cast<Bytef*>(&extra);
    stream_.avail_out = 1;
    while (true) {
      CKPT_TRY(refill());
      int rc = inflate(&stream_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END && stream_.avail_out == 1) return {};
      if (stream_.avail_out == 0) {
        return Error(ErrorCode::kZipFormat,
                     fmt::format("deflate data inflates past the declared {} bytes", entry_.size))
            .in_file(name_);
      }
      if (rc != Z_OK) return Error(ErrorCode::kZipFormat, "deflate data does not end").in_file(name_);
    }
  }

  const ByteSource& archive_;
  ZipEntry entry_;
  std::uint64_t data_offset_;
  std::string name_;
  mutable z_stream stream_{};
  mutable bool inflating_ = false;
  mutable std::vector<std::byte> input_;
  mutable std::uint64_t input_used_ = 0;
  mutable std::uint64_t crc_position_ = 0;
  mutable std::uint32_t crc_ = 0;
};

// Counts, checksums and (for deflate) compresses one member's content on
// its way to the archive.
class MemberSink final : public ByteSink {
 public:
  MemberSink(std::string name, ZipMethod method, const std::function<Status(std::span<const std::byte>)>& out)
      : name_(std::move(name)), method_(method), out_(out) {}
  ~MemberSink() override {
    if (deflating_) deflateEnd(&stream_);
  }
  MemberSink(const MemberSink&) = delete;
  MemberSink& operator=(const MemberSink&) = delete;

  Status start() {
    if (method_ == ZipMethod::kStored) return {};
    if (deflateInit2(&stream_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return Error(ErrorCode::kIo, "zlib deflateInit2 failed").in_file(name_);
    }
    deflating_ = true;
    output_.resize(kInflateChunkBytes);
    return {};
  }

  Status write(std::span<const std::byte> bytes) override {
    for (; bytes.size() > kMaxZlibSpan; bytes = bytes.subspan(kMaxZlibSpan)) CKPT_TRY(write(bytes.first(kMaxZlibSpan)));
    crc_ = crc32_z(crc_, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
    size_ += bytes.size();
    if (method_ == ZipMethod::kStored) {
      compressed_ += bytes.size();
      return out_(bytes);
    }
    stream_.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(bytes.data()));
    stream_.avail_in = static_cast<uInt>(bytes.size());
    return pump(Z_NO_FLUSH);
  }

  Status finish() override { return method_ == ZipMethod::kDeflate ? pump(Z_FINISH) : Status{}; }
  const std::string& name() const override { return name_; }

  std::uint32_t crc() const { return crc_; }
  std::uint64_t size() const { return size_; }
  std::uint64_t compressed() const { return compressed_; }

 private:
  Status pump(int flush) {
    while (true) {
      stream_.next_out = reinterpret_cast<Bytef*>(output_.data());
      stream_.avail_out = static_cast<uInt>(output_.size());
      int rc = deflate(&stream_, flush);
      if (rc == Z_STREAM_ERROR) return Error(ErrorCode::kIo, "zlib deflate failed").in_file(name_);
      std::size_t produced = output_.size() - stream_.avail_out;
      compressed_ += produced;
      CKPT_TRY(out_(std::span(output_.data(), produced)));
      if (flush == Z_FINISH ? rc == Z_STREAM_END : (stream_.avail_in == 0 && stream_.avail_out > 0)) return {};
    }
  }

  std::string name_;
  ZipMethod method_;
  const std::function<Status(std::span<const std::byte>)>& out_;
  z_stream stream_{};
  bool deflating_ = false;
  std::vector<std::byte> output_;
  std::uint32_t crc_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t compressed_ = 0;
};

}  // namespace

ZipStart sniff_zip(const ByteSource& source) {
  std::array<std::byte, 4> signature{};
  if (source.size() < signature.size() || !source.read_at(0, signature).ok()) return ZipStart::kNotZip;
  switch (detail::load_le(signature)) {
    case kLocalSignature: return ZipStart::kMember;
    case kEndSignature: return ZipStart::kEmpty;
    default: return ZipStart::kNotZip;
  }
}

Result<ZipReader> ZipReader::open(const ByteSource& source) {
  const std::uint64_t size = source.size();
  if (size < kEndRecordBytes) return zip_error(ErrorCode::kZipFormat, source, "too short for a zip archive");
  // The end record sits in the last 22 bytes plus a comment of up to 64 KiB.
  std::size_t tail_bytes = static_cast<std::size_t>(std::min<std::uint64_t>(size, kEndRecordBytes + kMaxCommentBytes));
  std::vector<std::byte> tail(tail_bytes);
  const std::uint64_t tail_offset = size - tail_bytes;
  CKPT_TRY(source.read_at(tail_offset, tail));
  std::optional<std::size_t> end_at;
  for (std::size_t i = tail_bytes - kEndRecordBytes + 1; i-- > 0;) {
    FieldReader probe(tail, i);
    if (probe.u32() != kEndSignature) continue;
    probe.skip(16);
    if (i + kEndRecordBytes + probe.u16() <= tail_bytes) {
      end_at = i;
      break;
    }
  }
  if (!end_at) return zip_error(ErrorCode::kZipFormat, source, "no end-of-central-directory record: not a zip archive");
  FieldReader end(tail, *end_at + 4);
  std::uint16_t disk = end.u16(), directory_disk = end.u16();
  std::uint64_t disk_entries = end.u16(), count = end.u16();
  std::uint64_t directory_size = end.u32(), directory_offset = end.u32();
  if (disk != 0 || directory_disk != 0 || disk_entries != count) {
    return zip_error(ErrorCode::kZipUnsupported, source, "multi-disk archives are not supported");
  }
  const std::uint64_t end_offset = tail_offset + *end_at;
  std::uint64_t directory_limit = end_offset;  // the directory ends before the end records
  if (end_offset >= kZip64LocatorBytes) {
    std::array<std::byte, kZip64LocatorBytes> locator{};
    CKPT_TRY(source.read_at(end_offset - kZip64LocatorBytes, locator));
    FieldReader fields(locator);
    if (fields.u32() == kZip64LocatorSignature) {
      fields.skip(4);
      std::uint64_t record_offset = fields.u64();
      if (record_offset > end_offset - kZip64LocatorBytes ||
          end_offset - kZip64LocatorBytes - record_offset < kZip64EndRecordBytes) {
        return zip_error(ErrorCode::kZipFormat, source,
                         fmt::format("ZIP64 end record offset {} is outside the archive", record_offset));
      }
      std::array<std::byte, kZip64EndRecordBytes> record{};
      CKPT_TRY(source.read_at(record_offset, record));
      FieldReader zip64(record);
      if (zip64.u32() != kZip64EndSignature) {
        return zip_error(ErrorCode::kZipFormat, source, fmt::format("no ZIP64 end record at offset {}", record_offset));
      }
      zip64.skip(8 + 2 + 2 + 4 + 4);
      disk_entries = zip64.u64();
      count = zip64.u64();
      directory_size = zip64.u64();
      directory_offset = zip64.u64();
      directory_limit = record_offset;
    }
  }
  if (directory_offset > directory_limit || directory_size > directory_limit - directory_offset) {
    return zip_error(ErrorCode::kZipFormat, source,
                     fmt::format("central directory ({} bytes at {}) overruns the end records at {}", directory_size,
                                 directory_offset, directory_limit));
  }
  if (directory_size > kZipMaxDirectoryBytes) {
    return zip_error(ErrorCode::kZipUnsupported, source,
                     fmt::format("central directory of {} bytes is over the cap of {}", directory_size,
                                 kZipMaxDirectoryBytes));
  }
  if (count > directory_size / kCentralRecordBytes) {
    return zip_error(ErrorCode::kZipFormat, source,
                     fmt::format("{} members cannot fit a central directory of {} bytes", count, directory_size));
  }
  std::vector<std::byte> directory(static_cast<std::size_t>(directory_size));
  CKPT_TRY(source.read_at(directory_offset, directory));

  std::vector<ZipEntry> entries;
  entries.reserve(static_cast<std::size_t>(count));
  std::unordered_set<std::string> names;
  std::size_t pos = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (directory.size() - pos < kCentralRecordBytes) {
      return zip_error(ErrorCode::kZipFormat, source, fmt::format("central record {} is cut short", i));
    }
    FieldReader record(directory, pos);
    if (record.u32() != kCentralSignature) {
      return zip_error(ErrorCode::kZipFormat, source, fmt::format("central record {} has a bad signature", i));
    }
    record.skip(4);  // versions
    std::uint16_t flags = record.u16();
    std::uint16_t method = record.u16();
    record.skip(4);  // time, date
    ZipEntry entry;
    entry.crc32 = record.u32();
    entry.compressed_size = record.u32();
    entry.size = record.u32();
    std::size_t name_length = record.u16(), extra_length = record.u16(), comment_length = record.u16();
    record.skip(8);  // disk, attributes
    entry.local_header_offset = record.u32();
    if (directory.size() - pos - kCentralRecordBytes < name_length + extra_length + comment_length) {
      return zip_error(ErrorCode::kZipFormat, source, fmt::format("central record {} overruns the directory", i));
    }
    const auto* name_bytes = reinterpret_cast<const char*>(directory.data() + pos + kCentralRecordBytes);
    entry.name.assign(name_bytes, name_length);
    CKPT_TRY(apply_zip64_extra(std::span(directory).subspan(pos + kCentralRecordBytes + name_length, extra_length),
                               entry, source));
    pos += kCentralRecordBytes + name_length + extra_length + comment_length;
    if ((flags & kFlagEncrypted) != 0) {
      return zip_error(ErrorCode::kZipUnsupported, source, fmt::format("member '{}' is encrypted", entry.name));
    }
    if (method != static_cast<std::uint16_t>(ZipMethod::kStored) &&
        method != static_cast<std::uint16_t>(ZipMethod::kDeflate)) {
      return zip_error(ErrorCode::kZipUnsupported, source,
                       fmt::format("member '{}' uses compression method {}; supported: stored (0), deflate (8)",
                                   entry.name, method));
    }
    entry.method = static_cast<ZipMethod>(method);
    if (entry.method == ZipMethod::kStored && entry.compressed_size != entry.size) {
      return zip_error(ErrorCode::kZipFormat, source,
                       fmt::format("stored member '{}' has {} compressed and {} uncompressed bytes", entry.name,
                                   entry.compressed_size, entry.size));
    }
    if (entry.local_header_offset > directory_offset) {
      return zip_error(ErrorCode::kZipFormat, source,
                       fmt::format("member '{}' starts at {}, after the central directory", entry.name,
                                   entry.local_header_offset));
    }
    if (!names.insert(entry.name).second) {
      return zip_error(ErrorCode::kDuplicateName, source, fmt::format("member '{}' appears twice", entry.name));
    }
    entries.push_back(std::move(entry));
  }
  return ZipReader(source, std::move(entries));
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  for (const auto& entry : entries_) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

Result<std::unique_ptr<ByteSource>> ZipReader::open_member(const ZipEntry& entry) const {
  CKPT_ASSIGN_OR_RETURN(std::uint64_t offset, data_offset(entry));
  return std::unique_ptr<ByteSource>(std::make_unique<MemberSource>(*source_, entry, offset));
}

Result<std::uint64_t> ZipReader::data_offset(const ZipEntry& entry) const {
  const ByteSource& source = *source_;
  auto fail = [&](std::string what) {
    return zip_error(ErrorCode::kZipFormat, source, fmt::format("member '{}': {}", entry.name, what));
  };
  std::uint64_t offset = entry.local_header_offset;
  if (source.size() - offset < kLocalHeaderBytes) return fail("local header is cut short");
  std::array<std::byte, kLocalHeaderBytes> header{};
  CKPT_TRY(source.read_at(offset, header));
  FieldReader fields(header);
  if (fields.u32() != kLocalSignature) return fail(fmt::format("no local header at offset {}", offset));
  fields.skip(22);
  std::uint64_t name_length = fields.u16(), extra_length = fields.u16();
  std::uint64_t data_start = offset + kLocalHeaderBytes + name_length + extra_length;
  if (data_start > source.size() || source.size() - data_start < entry.compressed_size) {
    return fail(fmt::format("{} bytes of data at offset {} run past the end of the archive", entry.compressed_size,
                            data_start));
  }
  std::string local_name(static_cast<std::size_t>(name_length), '\0');
  CKPT_TRY(source.read_at(offset + kLocalHeaderBytes, std::as_writable_bytes(std::span(local_name))));
  if (local_name != entry.name) return fail(fmt::format("local header names it '{}'", local_name));
  return data_start;
}

Status ZipWriter::write(std::span<const std::byte> bytes) {
  CKPT_TRY(sink_->write(bytes));
  offset_ += bytes.size();
  return {};
}

Status ZipWriter::add(std::string_view name, ZipMethod method, const std::function<Status(ByteSink&)>& write_content,
                      std::uint64_t data_alignment) {
  if (name.empty() || name.size() > kMax16) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("zip member name of {} bytes", name.size()))
        .in_file(sink_->name());
  }
  ZipEntry entry{std::string(name), method, 0, 0, 0, offset_};
  // Sizes and CRC follow the data (flag 3), in a ZIP64 descriptor: the local
  // header says so with 0xffffffff sizes and a zeroed ZIP64 extra field.
  FieldWriter local;
  local.u32(kLocalSignature).u16(kVersionZip64).u16(kFlagDataDescriptor | kFlagUtf8).u16(static_cast<std::uint16_t>(method));
  // Alignment pads with an extra field 'FB' of 'Z' bytes, as torch's writer does.
  constexpr std::uint64_t kFixedBytes = 30 + 20 + 4;
  std::uint64_t padding = data_alignment > 1
                              ? (data_alignment - (offset_ + kFixedBytes + name.size()) % data_alignment) % data_alignment
                              : 0;
  std::uint64_t extra_size = 20 + (data_alignment > 1 ? 4 + padding : 0);
  local.u16(0).u16(kDosDate1980).u32(0).u32(kMax32).u32(kMax32).u16(name.size()).u16(extra_size);
  local.text(name).u16(kZip64ExtraId).u16(16).u64(0).u64(0);
  if (data_alignment > 1) local.u16(kPaddingExtraId).u16(padding).text(std::string(padding, 'Z'));
  CKPT_TRY(write(as_bytes(local.bytes())));

  std::function<Status(std::span<const std::byte>)> out = [this](std::span<const std::byte> bytes) {
    return write(bytes);
  };
  MemberSink member(std::string(name), method, out);
  CKPT_TRY(member.start());
  CKPT_TRY(write_content(member));
  CKPT_TRY(member.finish());
  entry.crc32 = member.crc();
  entry.size = member.size();
  entry.compressed_size = member.compressed();
  FieldWriter descriptor;
  descriptor.u32(kDescriptorSignature).u32(entry.crc32).u64(entry.compressed_size).u64(entry.size);
  CKPT_TRY(write(as_bytes(descriptor.bytes())));
  entries_.push_back(std::move(entry));
  return {};
}

Status ZipWriter::finish() {
  const std::uint64_t directory_offset = offset_;
  for (const ZipEntry& entry : entries_) {
    // ZIP64 values replace the 32-bit fields that overflow, in APPNOTE order.
    FieldWriter zip64;
    auto field32 = [&](std::uint64_t value) -> std::uint64_t {
      if (value < kMax32 && !force_zip64_) return value;
      zip64.u64(value);
      return kMax32;
    };
    std::uint64_t size = field32(entry.size);
    std::uint64_t compressed = field32(entry.compressed_size);
    std::uint64_t local_offset = field32(entry.local_header_offset);
    std::string extra;
    if (!zip64.bytes().empty()) {
      extra = FieldWriter().u16(kZip64ExtraId).u16(zip64.bytes().size()).text(zip64.bytes()).bytes();
    }
    FieldWriter record;
    record.u32(kCentralSignature).u16(kVersionZip64).u16(kVersionZip64);
    record.u16(kFlagDataDescriptor | kFlagUtf8).u16(static_cast<std::uint16_t>(entry.method)).u16(0).u16(kDosDate1980);
    record.u32(entry.crc32).u32(compressed).u32(size).u16(entry.name.size()).u16(extra.size()).u16(0);
    record.u16(0).u16(0).u32(0).u32(local_offset).text(entry.name).text(extra);
    CKPT_TRY(write(as_bytes(record.bytes())));
  }
  const std::uint64_t directory_size = offset_ - directory_offset;
  const std::uint64_t count = entries_.size();
  const bool needs_zip64 =
      force_zip64_ || count >= kMax16 || directory_size >= kMax32 || directory_offset >= kMax32;
  if (needs_zip64) {
    const std::uint64_t record_offset = offset_;
    FieldWriter records;
    records.u32(kZip64EndSignature).u64(kZip64EndRecordBytes - 12).u16(kVersionZip64).u16(kVersionZip64);
    records.u32(0).u32(0).u64(count).u64(count).u64(directory_size).u64(directory_offset);
    records.u32(kZip64LocatorSignature).u32(0).u64(record_offset).u32(1);
    CKPT_TRY(write(as_bytes(records.bytes())));
  }
  FieldWriter end;
  end.u32(kEndSignature).u16(0).u16(0);
  end.u16(std::min<std::uint64_t>(count, kMax16)).u16(std::min<std::uint64_t>(count, kMax16));
  end.u32(std::min<std::uint64_t>(directory_size, kMax32)).u32(std::min<std::uint64_t>(directory_offset, kMax32));
  end.u16(0);
  return write(as_bytes(end.bytes()));
}

}  // namespace ckpt
