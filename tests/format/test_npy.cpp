#include "ckpt/format/npy.hpp"

#include <cstring>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "test_support.hpp"

namespace {

using namespace std::string_literals;
using ckpt::DType;
using ckpt::ErrorCode;

// An .npy with the given version and dict, deliberately not aligned: the
// reader must not require alignment.
std::string npy_file(int major, std::string_view dict, std::string_view data) {
  std::string header = std::string(dict) + "\n";
  std::string out(ckpt::kNpyMagicBytes);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  std::size_t length_bytes = major == 1 ? 2 : 4;
  for (std::size_t i = 0; i < length_bytes; ++i) out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  return out + header + std::string(data);
}

std::string bytes_of(const std::vector<std::byte>& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

template <class T>
std::string raw(std::initializer_list<T> values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), std::data(values), out.size());
  return out;
}

ckpt::Result<ckpt::NpyHeader> header_of(const std::string& file, const ckpt::NpyReadOptions& options = {}) {
  return ckpt::read_npy_header(ckpt::MemorySource(ckpt::as_bytes(file), "t.npy"), options);
}

// The data source of an .npy held in memory (which outlives it).
ckpt::Result<std::unique_ptr<ckpt::ByteSource>> data_of(const std::string& file,
                                                        const ckpt::NpyReadOptions& options = {}) {
  auto source = std::make_shared<const ckpt::MemorySource>(ckpt::as_bytes(file), "t.npy");
  CKPT_ASSIGN_OR_RETURN(ckpt::NpyHeader header, ckpt::read_npy_header(*source, options));
  return ckpt::open_npy_data(source, header, options);
}

// The C-order little-endian elements of an .npy held in memory.
std::string elements_of(const std::string& file, const ckpt::NpyReadOptions& options = {}) {
  auto data = data_of(file, options);
  REQUIRE_MESSAGE(data.ok(), data.error().describe());
  ckpt::MemorySink sink;
  auto status = sink.write_from(**data, 0, (*data)->size());
  REQUIRE_MESSAGE(status.ok(), status.error().describe());
  return bytes_of(sink.bytes());
}

}  // namespace

TEST_CASE("the dict numpy writes parses") {
  auto dict = ckpt::parse_npy_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }                \n");
  REQUIRE(dict.ok());
  CHECK(dict->dtype == DType::kFloat);
  CHECK_FALSE(dict->fortran_order);
  CHECK_FALSE(dict->big_endian);
  CHECK(dict->shape == ckpt::Shape{2, 3});
}

TEST_CASE("Python literal syntax: key order, spacing, tuples, Python-2 longs") {
  auto dict = ckpt::parse_npy_dict("{ \"shape\" : ( 7 , ) ,\n\t'fortran_order':True,'descr':'>i8'}");
  REQUIRE(dict.ok());
  CHECK(dict->shape == ckpt::Shape{7});
  CHECK(dict->fortran_order);
  CHECK(dict->dtype == DType::kInt64);
  CHECK(dict->big_endian);
  auto scalar = ckpt::parse_npy_dict("{'descr': '|b1', 'fortran_order': False, 'shape': ()}");
  REQUIRE(scalar.ok());
  CHECK(scalar->shape.empty());
  CHECK(scalar->dtype == DType::kBool);
  auto longs = ckpt::parse_npy_dict("{'descr': '<u2', 'fortran_order': False, 'shape': (3L, 4L)}");
  REQUIRE(longs.ok());
  CHECK(longs->shape == ckpt::Shape{3, 4});
  CHECK(longs->dtype == DType::kUInt16);
  auto empty = ckpt::parse_npy_dict("{'descr': '<c16', 'fortran_order': False, 'shape': (0, 3,),}");
  REQUIRE(empty.ok());
  CHECK(empty->shape == ckpt::Shape{0, 3});
  CHECK(empty->dtype == DType::kComplex128);
}

TEST_CASE("every supported descr maps to its OneFlow type; i1 is kInt8") {
  const std::pair<const char*, DType> cases[] = {
      {"|b1", DType::kBool},    {"|i1", DType::kInt8},    {"|u1", DType::kUInt8},    {"<i2", DType::kInt16},
      {"<u2", DType::kUInt16},  {"<i4", DType::kInt32},   {"<u4", DType::kUInt32},   {"<i8", DType::kInt64},
      {"<u8", DType::kUInt64},  {"<f2", DType::kFloat16}, {"<f4", DType::kFloat},    {"<f8", DType::kDouble},
      {"<c8", DType::kComplex64}, {"<c16", DType::kComplex128}, {"bfloat16", DType::kBFloat16}};
  for (auto [descr, dtype] : cases) {
    auto dict = ckpt::parse_npy_dict(fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': (1,)}}", descr));
    REQUIRE_MESSAGE(dict.ok(), descr);
    CHECK_MESSAGE(dict->dtype == dtype, descr);
  }
}

TEST_CASE("object, structured, void and exotic dtypes are refused with their reason") {
  auto with_descr = [](std::string_view descr) {
    return ckpt::parse_npy_dict(fmt::format("{{'descr': {}, 'fortran_order': False, 'shape': (1,)}}", descr));
  };
  auto object = with_descr("'|O'");
  REQUIRE_FALSE(object.ok());
  CHECK(object.error().code() == ErrorCode::kNpyUnsupportedDtype);
  CHECK(object.error().message().find("unpickling") != std::string::npos);
  auto structured = with_descr("[('x', '<f4'), ('y', '<i2')]");
  REQUIRE_FALSE(structured.ok());
  CHECK(structured.error().code() == ErrorCode::kNpyUnsupportedDtype);
  CHECK(structured.error().message().find("structured") != std::string::npos);
  for (const char* descr : {"'<U3'", "'|S5'", "'<M8[ns]'", "'<f16'", "'<V4'", "'<i16'"}) {
    auto refused = with_descr(descr);
    REQUIRE_FALSE_MESSAGE(refused.ok(), descr);
    CHECK(refused.error().code() == ErrorCode::kNpyUnsupportedDtype);
  }
  auto void2 = with_descr("'<V2'");
  REQUIRE_FALSE(void2.ok());
  CHECK(void2.error().message().find("bfloat16") != std::string::npos);
  ckpt::NpyReadOptions bf16;
  bf16.void2_as_bfloat16 = true;
  auto as_bf16 = ckpt::parse_npy_dict("{'descr': '<V2', 'fortran_order': False, 'shape': (1,)}", bf16);
  REQUIRE(as_bf16.ok());
  CHECK(as_bf16->dtype == DType::kBFloat16);
}

TEST_CASE("malformed dicts are refused as header errors, nothing evaluated") {
  const char* bad[] = {
      "",
      "{'descr': '<f4', 'fortran_order': False}",                                  // missing shape
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }",                   // (3) is an int
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",                 // negative
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", // over 2^63
      "{'descr': '<f4', 'fortran_order': False, 'shape': (01,)}",                   // leading zero
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",                        // not a bool
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",        // unknown key
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",    // duplicate key
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x",                  // trailing text
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,),,}",                  // double comma
      "{'descr': __import__('os'), 'fortran_order': False, 'shape': (1,)}",         // an expression
      "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,)}",                // escapes
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",                     // unterminated
  };
  for (const char* text : bad) {
    auto dict = ckpt::parse_npy_dict(text);
    REQUIRE_FALSE_MESSAGE(dict.ok(), text);
    CHECK_MESSAGE(dict.error().code() == ErrorCode::kNpyHeader, text);
  }
}

TEST_CASE("versions 1, 2 and 3 are read; the header length is checked against the file") {
  std::string data = raw<float>({1.5f, -2.0f});
  for (int major : {1, 2, 3}) {
    auto header = header_of(npy_file(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data));
    REQUIRE_MESSAGE(header.ok(), major);
    CHECK(header->major_version == major);
    CHECK(header->meta.byte_size() == 8);
    CHECK(header->data_offset == (major == 1 ? 10u : 12u) + 58u);
  }
  // numpy 1.24's exact bytes for np.save of np.float32(0): 128-byte header.
  std::string numpy_scalar = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (), }"s;
  numpy_scalar += std::string(128 - 1 - numpy_scalar.size(), ' ') + "\n" + raw<float>({0.25f});
  auto scalar = header_of(numpy_scalar);
  REQUIRE(scalar.ok());
  CHECK(scalar->data_offset == 128);
  CHECK(scalar->meta.shape().empty());
  CHECK(elements_of(numpy_scalar) == raw<float>({0.25f}));
}

TEST_CASE("bad magic, versions, lengths and sizes have their own codes") {
  std::string good = npy_file(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}", raw<std::int32_t>({1, 2}));
  auto code_of = [](const std::string& file) {
    auto header = header_of(file);
    REQUIRE(!header.ok());
    CHECK(header.error().file() == "t.npy");
    return header.error().code();
  };
  CHECK(code_of("PK\x03\x04 not numpy at all") == ErrorCode::kNpyMagic);
  CHECK(code_of("\x93NUM") == ErrorCode::kNpyMagic);
  std::string v4 = good;
  v4[6] = 4;
  CHECK(code_of(v4) == ErrorCode::kNpyVersion);
  std::string v1_1 = good;
  v1_1[7] = 1;
  CHECK(code_of(v1_1) == ErrorCode::kNpyVersion);
  CHECK(code_of(good.substr(0, 9)) == ErrorCode::kNpyTruncated);
  CHECK(code_of(good.substr(0, 30)) == ErrorCode::kNpyTruncated);               // inside the dict
  CHECK(code_of(good.substr(0, good.size() - 1)) == ErrorCode::kNpyTruncated);  // inside the data
  std::string huge = "\x93NUMPY\x02\x00\xff\xff\xff\x7f"s;
  CHECK(code_of(huge) == ErrorCode::kNpyHeader);  // over the cap, refused before reading
  auto overflow =
      header_of(npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", ""));
  REQUIRE_FALSE(overflow.ok());
  CHECK(overflow.error().code() == ErrorCode::kMetaCountOverflow);
}

TEST_CASE("trailing bytes are a warning, not an error") {
  const std::string file = npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}", "\x01\x02\x03\x04");
  ckpt::FailFast problems;
  auto header = ckpt::read_npy_header(ckpt::MemorySource(ckpt::as_bytes(file), "t.npy"), {}, problems);
  REQUIRE(header.has_value());
  CHECK_FALSE(problems.failed());
  REQUIRE(problems.warnings().size() == 1);
  CHECK(problems.warnings()[0].code() == ErrorCode::kNpyTrailingBytes);
  CHECK(problems.warnings()[0].message().find("2 bytes") != std::string::npos);
}

TEST_CASE("big-endian data comes out little-endian") {
  std::string big_f4("\x3f\xc0\x00\x00\xc0\x00\x00\x00", 8);  // 1.5, -2.0
  CHECK(elements_of(npy_file(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", big_f4)) ==
        raw<float>({1.5f, -2.0f}));
  std::string big_c8("\x3f\x80\x00\x00\x40\x00\x00\x00", 8);  // 1+2j: each half swapped
  CHECK(elements_of(npy_file(1, "{'descr': '>c8', 'fortran_order': False, 'shape': ()}", big_c8)) ==
        raw<float>({1.0f, 2.0f}));
  std::string big_i2("\x01\x02\xff\xfe", 4);
  CHECK(elements_of(npy_file(3, "{'descr': '>i2', 'fortran_order': False, 'shape': (2,)}", big_i2)) ==
        raw<std::int16_t>({0x0102, -2}));
}

TEST_CASE("Fortran-order data is reordered to C order") {
  // 2x3 [[0,1,2],[3,4,5]] stored column by column.
  std::string fortran = raw<std::int32_t>({0, 3, 1, 4, 2, 5});
  CHECK(elements_of(npy_file(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3)}", fortran)) ==
        raw<std::int32_t>({0, 1, 2, 3, 4, 5}));
  // 2x3x2 with value = 100*i + 10*j + k, Fortran order: i fastest.
  std::vector<std::int16_t> f_values, c_values;
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 2; ++i) f_values.push_back(static_cast<std::int16_t>(100 * i + 10 * j + k));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) c_values.push_back(static_cast<std::int16_t>(100 * i + 10 * j + k));
  auto as_string = [](const std::vector<std::int16_t>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2);
  };
  CHECK(elements_of(npy_file(2, "{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3, 2)}", as_string(f_values))) ==
        as_string(c_values));
  // Big-endian and Fortran at once.
  std::string big_fortran("\x00\x00\x00\x03\x00\x01\x00\x04\x00\x02\x00\x05", 12);
  CHECK(elements_of(npy_file(1, "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3)}", big_fortran)) ==
        raw<std::int16_t>({0, 1, 2, 3, 4, 5}));
  // Empty and 1-d Fortran arrays need nothing.
  CHECK(elements_of(npy_file(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (0, 4)}", "")).empty());
  CHECK(header_of(npy_file(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (3,)}", std::string(24, 'x')))
            ->is_plain());
}

TEST_CASE("reordering refuses arrays over the memory cap") {
  ckpt::NpyReadOptions options;
  options.max_reorder_bytes = 16;
  std::string file = npy_file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2)}", std::string(24, '\0'));
  CHECK(header_of(file, options).ok());
  auto data = data_of(file, options);
  REQUIRE_FALSE(data.ok());
  CHECK(data.error().code() == ErrorCode::kNpyTooLargeToReorder);
  CHECK(data.error().file() == "t.npy");
}

TEST_CASE("written headers are numpy's: oldest version, 64-byte aligned, read back the same") {
  for (const ckpt::Shape& shape : {ckpt::Shape{}, ckpt::Shape{5}, ckpt::Shape{0, 3}, ckpt::Shape{128, 784, 3, 3}}) {
    for (const auto& info : ckpt::all_dtypes()) {
      auto meta = ckpt::VariableMeta::make(info.dtype, shape);
      if (!meta.ok()) continue;  // not fixed-size
      auto header = ckpt::make_npy_header(*meta);
      if (info.numpy_descr.empty() && info.dtype != DType::kBFloat16) {
        REQUIRE_FALSE(header.ok());
        CHECK(header.error().code() == ErrorCode::kNpyUnsupportedDtype);
        continue;
      }
      REQUIRE(header.ok());
      CHECK(header->size() % 64 == 0);
      CHECK(header->back() == '\n');
      CHECK((*header)[6] == '\x01');
      ckpt::NpyReadOptions options;
      options.void2_as_bfloat16 = true;
      auto back = header_of(*header + std::string(meta->byte_size(), '\0'), options);
      REQUIRE(back.ok());
      DType expected = info.dtype == DType::kChar ? DType::kInt8 : info.dtype;
      CHECK(back->meta.dtype() == expected);
      CHECK(back->meta.shape() == shape);
      CHECK(back->data_offset == header->size());
    }
  }
  CHECK(ckpt::make_npy_header(*ckpt::VariableMeta::make(DType::kFloat, {2, 3})).value().find(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") == 10);
  // numpy loads at most 32 dimensions and a 10,000-byte header: more is refused
  // before anything is written (E174), the most is version 1.0.
  auto widest = ckpt::VariableMeta::make(DType::kUInt8, ckpt::Shape(32, 1));
  auto fits = ckpt::make_npy_header(*widest);
  REQUIRE(fits.ok());
  CHECK((*fits)[6] == '\x01');
  auto too_many = ckpt::make_npy_header(*ckpt::VariableMeta::make(DType::kUInt8, ckpt::Shape(33, 1)));
  REQUIRE_FALSE(too_many.ok());
  CHECK(too_many.error().code() == ErrorCode::kOverFormatLimit);
  CHECK(too_many.error().message().find("rank 33") != std::string::npos);
}

TEST_CASE("write_npy then read: the same bytes, from any offset of the source") {
  auto data = ckpt::testing::random_bytes(4 + 6 * 8, 7);
  ckpt::MemorySource source(data);
  auto meta = ckpt::VariableMeta::make(DType::kDouble, {2, 3});
  ckpt::MemorySink sink;
  REQUIRE(ckpt::write_npy(sink, *meta, ckpt::SliceSource::make(source, 4, 48).value()).ok());
  std::string file = bytes_of(sink.bytes());
  CHECK(file.size() == 128 + 48);
  CHECK(elements_of(file) == bytes_of(data).substr(4));
}

TEST_CASE("validate_npy_directory lists arrays and collects every problem") {
  ckpt::testing::TempDir dir;
  ckpt::testing::write_file(dir / "good.npy",
                            npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", raw<float>({1.0f})));
  ckpt::testing::write_file(dir / "short.npy",
                            npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", raw<float>({1.0f})));
  ckpt::testing::write_file(dir / "long.npy",
                            npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,)}", "ab"));
  ckpt::testing::write_file(dir / "notes.txt", "hello");
  auto report = ckpt::validate_npy_directory(dir.path());
  CHECK_FALSE(report.valid());
  REQUIRE(report.variables.size() == 2);
  CHECK(report.variables[0].name == "good");
  CHECK(report.variables[1].name == "long");
  auto has = [&](ErrorCode code, ckpt::Severity severity, std::string_view variable) {
    for (const auto& issue : report.issues) {
      if (issue.code == code && issue.severity == severity && issue.variable == variable) return true;
    }
    return false;
  };
  CHECK(has(ErrorCode::kNpyTruncated, ckpt::Severity::kError, "short"));
  CHECK(has(ErrorCode::kNpyTrailingBytes, ckpt::Severity::kWarning, "long"));
  CHECK(has(ErrorCode::kUnexpectedEntry, ckpt::Severity::kWarning, ""));
  CHECK(report.issues.size() == 3);
}
