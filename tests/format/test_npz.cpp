#include "ckpt/format/npz.hpp"

#include <cstring>

#include <doctest/doctest.h>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/zip.hpp"
#include "test_support.hpp"

namespace {

using ckpt::ErrorCode;
using ckpt::ZipMethod;

std::string text_of(const std::vector<std::byte>& bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

// An archive in memory with the given members.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& members, ZipMethod method,
                     bool force_zip64 = false) {
  ckpt::MemorySink sink;
  ckpt::ZipWriter zip(sink, force_zip64);
  for (const auto& [name, content] : members) {
    REQUIRE(zip.add(name, method, [&](ckpt::ByteSink& member) -> ckpt::Status {
                 // Two writes, to exercise streaming.
                 std::string_view view(content);
                 CKPT_TRY(member.write(ckpt::as_bytes(view.substr(0, view.size() / 2))));
                 return member.write(ckpt::as_bytes(view.substr(view.size() / 2)));
               }).ok());
  }
  REQUIRE(zip.finish().ok());
  return text_of(sink.bytes());
}

ckpt::Result<std::string> read_member(const std::string& archive, std::string_view name) {
  ckpt::MemorySource source(ckpt::as_bytes(archive), "t.zip");
  CKPT_ASSIGN_OR_RETURN(ckpt::ZipReader zip, ckpt::ZipReader::open(source));
  const ckpt::ZipEntry* entry = zip.find(name);
  REQUIRE(entry != nullptr);
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<ckpt::ByteSource> member, zip.open_member(*entry));
  ckpt::MemorySink sink;
  CKPT_TRY(sink.write_from(*member, 0, member->size()));
  return text_of(sink.bytes());
}

std::string compressible(std::size_t size) {
  std::string text;
  while (text.size() < size) text += "weights and biases, ";
  text.resize(size);
  return text;
}

std::size_t find(const std::string& haystack, std::string_view needle) {
  std::size_t at = haystack.find(needle);
  REQUIRE(at != std::string::npos);
  return at;
}

}  // namespace

TEST_CASE("zip round trip: stored, deflated, ZIP64 fields, empty members") {
  std::string random = text_of(ckpt::testing::random_bytes(300000, 3));
  std::string repetitive = compressible(1 << 20);
  for (ZipMethod method : {ZipMethod::kStored, ZipMethod::kDeflate}) {
    for (bool force_zip64 : {false, true}) {
      std::string archive = make_zip({{"a.npy", random}, {"b.npy", repetitive}, {"empty.npy", ""}}, method, force_zip64);
      ckpt::MemorySource source(ckpt::as_bytes(archive));
      auto zip = ckpt::ZipReader::open(source);
      REQUIRE(zip.ok());
      REQUIRE(zip->entries().size() == 3);
      CHECK(zip->entries()[1].name == "b.npy");
      CHECK(zip->entries()[1].size == repetitive.size());
      CHECK(zip->entries()[1].method == method);
      if (method == ZipMethod::kDeflate) CHECK(zip->entries()[1].compressed_size < repetitive.size() / 10);
      CHECK(read_member(archive, "a.npy").value() == random);
      CHECK(read_member(archive, "b.npy").value() == repetitive);
      CHECK(read_member(archive, "empty.npy").value().empty());
      CHECK((archive.find("PK\x06\x06") != std::string::npos) == force_zip64);
    }
  }
}

TEST_CASE("deflated members read backwards and in pieces give the same bytes") {
  std::string content = compressible(700000);
  std::string archive = make_zip({{"x.npy", content}}, ZipMethod::kDeflate);
  ckpt::MemorySource source(ckpt::as_bytes(archive));
  auto zip = ckpt::ZipReader::open(source);
  REQUIRE(zip.ok());
  auto member = zip->open_member(zip->entries()[0]);
  REQUIRE(member.ok());
  std::string piece(100, '\0');
  for (std::uint64_t offset : {600000u, 10u, 650000u, 0u}) {
    REQUIRE((*member)->read_at(offset, std::as_writable_bytes(std::span(piece))).ok());
    CHECK(piece == content.substr(offset, 100));
  }
}

TEST_CASE("a corrupted member fails its CRC; a deflate bomb stops at the declared size") {
  std::string content = "0123456789abcdef";
  std::string stored = make_zip({{"x.npy", content}}, ZipMethod::kStored);
  stored[find(stored, content) + 3] ^= 1;
  auto bad = read_member(stored, "x.npy");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code() == ErrorCode::kZipCrc);
  CHECK(bad.error().file() == "t.zip:x.npy");

  // Declare 100 bytes for a member that inflates to 1 MiB.
  std::string bomb = make_zip({{"x.npy", compressible(1 << 20)}}, ZipMethod::kDeflate);
  std::size_t central = find(bomb, "PK\x01\x02");
  std::uint32_t small = 100;
  std::memcpy(bomb.data() + central + 24, &small, 4);
  auto inflated = read_member(bomb, "x.npy");
  REQUIRE_FALSE(inflated.ok());
  CHECK(inflated.error().code() == ErrorCode::kZipFormat);
  CHECK(inflated.error().message().find("past the declared") != std::string::npos);
}

TEST_CASE("broken archives are refused with their reason") {
  std::string good = make_zip({{"a.npy", "aa"}, {"b.npy", "bb"}}, ZipMethod::kStored);
  auto open_code = [](const std::string& archive) {
    ckpt::MemorySource source(ckpt::as_bytes(archive), "t.zip");
    auto zip = ckpt::ZipReader::open(source);
    REQUIRE_FALSE(zip.ok());
    CHECK(zip.error().file() == "t.zip");
    return zip.error().code();
  };
  CHECK(open_code("not a zip file at all, just some text") == ErrorCode::kZipFormat);
  CHECK(open_code(good.substr(0, good.size() - 5)) == ErrorCode::kZipFormat);  // end record cut
  std::string duplicate = make_zip({{"a.npy", "1"}, {"a.npy", "2"}}, ZipMethod::kStored);
  CHECK(open_code(duplicate) == ErrorCode::kDuplicateName);
  std::string bzip2 = good;
  bzip2[find(bzip2, "PK\x01\x02") + 10] = 12;
  CHECK(open_code(bzip2) == ErrorCode::kZipUnsupported);
  std::string encrypted = good;
  encrypted[find(encrypted, "PK\x01\x02") + 8] |= 1;
  CHECK(open_code(encrypted) == ErrorCode::kZipUnsupported);
  std::string far_directory = good;
  std::uint32_t beyond = 0x7fffffff;
  std::memcpy(far_directory.data() + find(far_directory, "PK\x05\x06") + 16, &beyond, 4);
  CHECK(open_code(far_directory) == ErrorCode::kZipFormat);
  std::string many = good;
  std::uint16_t count = 60000;
  std::memcpy(many.data() + find(many, "PK\x05\x06") + 8, &count, 2);
  std::memcpy(many.data() + find(many, "PK\x05\x06") + 10, &count, 2);
  CHECK(open_code(many) == ErrorCode::kZipFormat);  // more records than the directory holds
}

TEST_CASE("npz member names must be plain variable names") {
  CHECK(ckpt::npz_variable_name("layer.0.weight.npy").value() == "layer.0.weight");
  for (const char* unsafe : {"../evil.npy", "a/b.npy", "a\\b.npy", "/abs.npy", "..npy", ".npy", "x.ckpt-tmp-1.npy"}) {
    auto name = ckpt::npz_variable_name(unsafe);
    REQUIRE_FALSE_MESSAGE(name.ok(), unsafe);
    CHECK_MESSAGE(name.error().code() == ErrorCode::kZipUnsafeName, unsafe);
  }
  CHECK(ckpt::npz_variable_name("readme.txt").error().code() == ErrorCode::kUnexpectedEntry);
  // OneFlow's reserved file names are OneFlow's: its writer refuses them, an npz holds them.
  CHECK(ckpt::npz_variable_name("snapshot_done.npy").value() == "snapshot_done");
}

TEST_CASE("the npz reader and writer round trip, crash-safe and refusing to overwrite") {
  ckpt::testing::TempDir dir;
  auto data = ckpt::testing::random_bytes(2 * 3 * 4, 11);
  auto meta = ckpt::VariableMeta::make(ckpt::DType::kFloat, {2, 3});
  for (bool compress : {false, true}) {
    auto path = dir / (compress ? "d.npz" : "s.npz");
    {
      ckpt::WriteOptions options;
      options.compress = compress;
      auto writer = ckpt::create_checkpoint(path, "npz", options);
      REQUIRE(writer.ok());
      REQUIRE((*writer)->add("w", *meta, ckpt::MemorySource(data)).ok());
      ckpt::MemorySource all(data);
      REQUIRE((*writer)->add("scalar", *ckpt::VariableMeta::make(ckpt::DType::kInt64, {}),
                             ckpt::SliceSource::make(all, 8, 8).value()).ok());
      auto twice = (*writer)->add("w", *meta, ckpt::MemorySource(data));
      CHECK(twice.error().code() == ErrorCode::kDuplicateName);
      CHECK_FALSE(std::filesystem::exists(path));
      REQUIRE((*writer)->commit().ok());
    }
    auto zip_file = ckpt::FileSource::open(path);
    REQUIRE(zip_file.ok());
    auto zip = ckpt::ZipReader::open(*zip_file);
    REQUIRE(zip.ok());
    CHECK(zip->entries()[0].method == (compress ? ZipMethod::kDeflate : ZipMethod::kStored));
    auto reader = ckpt::open_checkpoint(path);
    REQUIRE(reader.ok());
    CHECK((*reader)->format_name() == "npz");
    REQUIRE((*reader)->tensors().size() == 2);
    CHECK((*reader)->tensors()[0].name == "scalar");
    CHECK((*reader)->tensors()[1].name == "w");
    CHECK((*reader)->tensors()[1].meta == *meta);
    auto w = (*reader)->open("w");
    REQUIRE(w.ok());
    ckpt::MemorySink sink;
    REQUIRE(sink.write_from(**w, 0, (*w)->size()).ok());
    CHECK(sink.bytes() == data);
    CHECK((*reader)->tensors()[0].meta.shape().empty());
    auto missing = (*reader)->open("nope");
    CHECK(missing.error().code() == ErrorCode::kUnknownVariable);
    CHECK(missing.error().variable() == "nope");
    auto report = ckpt::validate_npz(path);
    CHECK(report.valid());
    CHECK(report.variables.size() == 2);
    CHECK(ckpt::create_checkpoint(path, "npz").error().code() == ErrorCode::kDestinationExists);
  }
}

TEST_CASE("validate_npz reports a bad CRC and an unsafe name, and keeps going") {
  ckpt::testing::TempDir dir;
  std::string header = ckpt::make_npy_header(*ckpt::VariableMeta::make(ckpt::DType::kUInt8, {4})).value();
  std::string archive =
      make_zip({{"good.npy", header + "abcd"}, {"bad.npy", header + "wxyz"}, {"../up.npy", header + "0000"}},
               ZipMethod::kStored);
  archive[find(archive, "wxyz")] = 'W';
  ckpt::testing::write_file(dir / "t.npz", archive);
  auto report = ckpt::validate_npz(dir / "t.npz");
  CHECK_FALSE(report.valid());
  REQUIRE(report.variables.size() == 1);
  CHECK(report.variables[0].name == "good");
  REQUIRE(report.issues.size() == 2);
  CHECK(report.issues[0].code == ErrorCode::kZipCrc);
  CHECK(report.issues[0].variable == "bad");
  CHECK(report.issues[1].code == ErrorCode::kZipUnsafeName);
  auto reader = ckpt::open_checkpoint(dir / "t.npz");
  REQUIRE_FALSE(reader.ok());
  CHECK(reader.error().code() == ErrorCode::kZipUnsafeName);
}
