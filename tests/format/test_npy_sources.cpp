// The sources that present .npy data C-order little-endian, checked against
// bytes numpy wrote (tobytes of the stored array, and of its C-order
// little-endian copy), at every offset and length.
#include "ckpt/format/npy.hpp"

#include <doctest/doctest.h>

#include "ckpt/format/atomic_output.hpp"
#include "test_support.hpp"

namespace {

using ckpt::ErrorCode;

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::unique_ptr<ckpt::ByteSource> memory(const std::string& bytes) {
  return std::make_unique<ckpt::MemorySource>(ckpt::as_bytes(bytes), "t.npy");
}

// Every read [offset, offset + length) of `source` gives those bytes of `expected`.
void check_every_window(const ckpt::ByteSource& source, const std::string& expected) {
  REQUIRE(source.size() == expected.size());
  for (std::size_t offset = 0; offset <= expected.size(); ++offset) {
    for (std::size_t length = 0; offset + length <= expected.size(); ++length) {
      std::string piece(length, '\0');
      auto status = source.read_at(offset, std::as_writable_bytes(std::span(piece)));
      REQUIRE_MESSAGE(status.ok(), status.error().describe());
      CHECK_MESSAGE(piece == expected.substr(offset, length), "offset ", offset, " length ", length);
    }
  }
  std::string past(1, '\0');
  CHECK(source.read_at(expected.size(), std::as_writable_bytes(std::span(past))).error().code() ==
        ErrorCode::kDataSizeMismatch);
}

// (np.arange(6, dtype='<f4').reshape(2, 3) * 1.5 - 2).astype('>f4')
const std::string kBigF4 = from_hex("c0000000bf0000003f800000402000004080000040b00000");
const std::string kLittleF4 = from_hex("000000c0000000bf0000803f00002040000080400000b040");
// (np.arange(3) + 2j * np.arange(3)).astype('>c8'): each float of a pair swaps alone.
const std::string kBigC8 = from_hex("00000000000000003f800000400000004000000040800000");
const std::string kLittleC8 = from_hex("00000000000000000000803f000000400000004000008040");
// np.arange(24, dtype='<i2').reshape(2, 3, 4) stored in Fortran order, and in C order.
const std::string kFortranI2 = from_hex(
    "00000c00040010000800140001000d00050011000900150002000e00060012000a00160003000f00070013000b001700");
const std::string kCI2 = from_hex(
    "00000100020003000400050006000700080009000a000b000c000d000e000f0010001100120013001400150016001700");
// np.asfortranarray((np.arange(6, dtype='<f8').reshape(3, 2) + 0.5).astype('>f8')), and its C-order '<f8' copy.
const std::string kBigFortranF8 =
    from_hex("3fe0000000000000400400000000000040120000000000003ff8000000000000400c0000000000004016000000000000");
const std::string kLittleCF8 =
    from_hex("000000000000e03f000000000000f83f00000000000004400000000000000c4000000000000012400000000000001640");

}  // namespace

TEST_CASE("the byte-swapping source swaps every read, aligned or not") {
  auto f4 = ckpt::ByteSwappedSource::make(memory(kBigF4), 4);
  REQUIRE(f4.ok());
  check_every_window(**f4, kLittleF4);
  auto c8 = ckpt::ByteSwappedSource::make(memory(kBigC8), ckpt::dtype_info(ckpt::DType::kComplex64).swap_unit);
  REQUIRE(c8.ok());
  check_every_window(**c8, kLittleC8);
  CHECK((*f4)->name() == "t.npy");
  CHECK((*f4)->file_descriptor() == -1);  // swapped bytes are not the file's: no kernel copy
  auto uneven = ckpt::ByteSwappedSource::make(memory(kBigF4.substr(0, 6)), 4);
  REQUIRE_FALSE(uneven.ok());
  CHECK(uneven.error().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("the Fortran-order source presents C order at every offset") {
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt16, {2, 3, 4});
  auto i2 = ckpt::FortranOrderSource::make(memory(kFortranI2), *meta, 1 << 20);
  REQUIRE(i2.ok());
  check_every_window(**i2, kCI2);

  // Big-endian and Fortran at once: the transposition reads through the swap.
  auto f8_meta = ckpt::VariableMeta::make(ckpt::DType::kDouble, {3, 2});
  auto swapped = ckpt::ByteSwappedSource::make(memory(kBigFortranF8), 8);
  REQUIRE(swapped.ok());
  auto f8 = ckpt::FortranOrderSource::make(std::move(swapped).value(), *f8_meta, 48);
  REQUIRE(f8.ok());
  check_every_window(**f8, kLittleCF8);
}

TEST_CASE("the Fortran-order source refuses arrays over the cap and sizes that do not match") {
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt16, {2, 3, 4});
  auto capped = ckpt::FortranOrderSource::make(memory(kFortranI2), *meta, 47);
  REQUIRE_FALSE(capped.ok());
  CHECK(capped.error().code() == ErrorCode::kNpyTooLargeToReorder);
  CHECK(capped.error().file() == "t.npy");
  CHECK(capped.error().message().find("48 bytes") != std::string::npos);
  auto short_data = ckpt::FortranOrderSource::make(memory(kFortranI2.substr(2)), *meta, 1 << 20);
  REQUIRE_FALSE(short_data.ok());
  CHECK(short_data.error().code() == ErrorCode::kBufferSizeMismatch);
}

TEST_CASE("plain .npy data is a slice of the file: copied by the kernel at the data offset") {
  ckpt::testing::TempDir dir;
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kInt16, {2, 3, 4});
  ckpt::MemorySink npy;
  REQUIRE(ckpt::write_npy(npy, *meta, ckpt::MemorySource(ckpt::as_bytes(kCI2))).ok());
  ckpt::testing::write_file(dir / "a.npy", npy.bytes());
  auto file = ckpt::FileSource::open(dir / "a.npy");
  REQUIRE(file.ok());
  auto shared = std::make_shared<const ckpt::FileSource>(std::move(file).value());
  auto header = ckpt::read_npy_header(*shared);
  REQUIRE(header.ok());
  auto data = ckpt::open_npy_data(shared, *header);
  REQUIRE(data.ok());
  CHECK((*data)->file_descriptor() == shared->file_descriptor());
  CHECK((*data)->file_offset() == 128);
  auto sink = ckpt::FileSink::create(dir / "copy");
  REQUIRE(sink.ok());
  REQUIRE(sink->write_from(**data, 2, 44).ok());
  REQUIRE(sink->finish().ok());
  CHECK(ckpt::testing::read_file(dir / "copy") == kCI2.substr(2, 44));
}
