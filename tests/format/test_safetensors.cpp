#include "ckpt/format/safetensors.hpp"

#include <chrono>
#include <cstring>
#include <set>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;

namespace {

// A safetensors file from its parts: the length field says `header.size()`
// unless `declared_length` overrides it.
std::string make_file(std::string_view header, std::string_view data = {},
                      std::optional<std::uint64_t> declared_length = std::nullopt) {
  std::uint64_t length = declared_length.value_or(header.size());
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xFF);
  return file.append(header).append(data);
}

ckpt::Result<ckpt::SafetensorsHeader> read(const std::string& file) {
  return ckpt::read_safetensors_header(ckpt::MemorySource(ckpt::as_bytes(file), "defect.safetensors"));
}

// Every problem of `file`, collected.
std::vector<ckpt::Issue> all_issues(const std::string& file) {
  ckpt::CollectAll problems;
  auto header = ckpt::read_safetensors_header(ckpt::MemorySource(ckpt::as_bytes(file)), problems);
  CHECK(header.has_value() == !problems.has_errors());
  return std::move(problems.issues());
}

std::set<ErrorCode> all_codes(const std::string& file) {
  std::set<ErrorCode> codes;
  for (const auto& issue : all_issues(file)) codes.insert(issue.code);
  return codes;
}

constexpr std::string_view kOneF32 = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";

struct Defect {
  std::string_view rule;
  std::string file;
  ErrorCode code;
};

std::vector<Defect> defect_corpus() {
  const std::string eight(8, 'x');
  return {
      {"shorter than the length field", std::string(5, '\0'), ErrorCode::kSafetensorsTooSmall},
      {"header length over the cap", make_file("{}", "", 100'000'001), ErrorCode::kSafetensorsHeaderTooLarge},
      {"header length past the end", make_file("{}", "", 3), ErrorCode::kSafetensorsHeaderLength},
      {"header length near 2^64", make_file("{}", "", ~std::uint64_t{0} - 4), ErrorCode::kSafetensorsHeaderTooLarge},
      {"header not UTF-8", make_file("{\"w\xff\": {}}"), ErrorCode::kSafetensorsHeaderUtf8},
      {"overlong UTF-8", make_file("{\"\xc0\xaf\": {}}"), ErrorCode::kSafetensorsHeaderUtf8},
      {"UTF-16 surrogate", make_file("{\"\xed\xa0\x80\": {}}"), ErrorCode::kSafetensorsHeaderUtf8},
      {"not JSON", make_file("{\"w\": "), ErrorCode::kSafetensorsHeaderJson},
      {"JSON but not an object", make_file("[1, 2]  "), ErrorCode::kSafetensorsHeaderJson},
      {"NUL padding instead of spaces", make_file(std::string("{}") + std::string(6, '\0')),
       ErrorCode::kSafetensorsHeaderJson},
      {"entry not an object", make_file(R"({"w": 3})"), ErrorCode::kSafetensorsHeaderSchema},
      {"no dtype", make_file(R"({"w": {"shape": [], "data_offsets": [0, 0]}})"), ErrorCode::kSafetensorsHeaderSchema},
      {"negative dim", make_file(R"({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}})"),
       ErrorCode::kSafetensorsHeaderSchema},
      {"fractional dim", make_file(R"({"w": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 0]}})"),
       ErrorCode::kSafetensorsHeaderSchema},
      {"three offsets", make_file(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}})", "x"),
       ErrorCode::kSafetensorsHeaderSchema},
      {"negative offset", make_file(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}})", "x"),
       ErrorCode::kSafetensorsHeaderSchema},
      {"identical duplicate names (the reference accepts them)",
       make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                     "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                 eight),
       ErrorCode::kSafetensorsDuplicateKey},
      {"duplicate field", make_file(R"({"w": {"dtype": "F32", "dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})", eight),
       ErrorCode::kSafetensorsDuplicateKey},
      {"duplicate metadata key", make_file(R"({"__metadata__": {"a": "1", "a": "2"}})"),
       ErrorCode::kSafetensorsDuplicateKey},
      {"float8 fnuz dtype", make_file(R"({"w": {"dtype": "F8_E4M3FNUZ", "shape": [1], "data_offsets": [0, 1]}})", "x"),
       ErrorCode::kSafetensorsUnknownDtype},
      {"lower-case dtype", make_file(R"({"w": {"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}})", eight),
       ErrorCode::kSafetensorsUnknownDtype},
      {"metadata value not a string", make_file(R"({"__metadata__": {"epoch": 3}})"), ErrorCode::kSafetensorsMetadata},
      {"metadata not an object", make_file(R"({"__metadata__": ["a"]})"), ErrorCode::kSafetensorsMetadata},
      {"first tensor not at 0", make_file(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})", "xx"),
       ErrorCode::kSafetensorsOffsets},
      {"a hole between tensors",
       make_file(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                     "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}})",
                 "xxx"),
       ErrorCode::kSafetensorsOffsets},
      {"overlapping tensors",
       make_file(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                     "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}})",
                 "xxx"),
       ErrorCode::kSafetensorsOffsets},
      {"end before begin",
       make_file(R"({"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]},
                     "b": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]},
                     "c": {"dtype": "U8", "shape": [1], "data_offsets": [1, 0]}})"),
       ErrorCode::kSafetensorsOffsets},
      {"element count overflow",
       make_file(R"({"w": {"dtype": "F64", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})"),
       ErrorCode::kSafetensorsSizeOverflow},
      {"dim over 2^63", make_file(R"({"w": {"dtype": "U8", "shape": [9223372036854775808], "data_offsets": [0, 0]}})"),
       ErrorCode::kSafetensorsSizeOverflow},
      {"dim of 2^64 (past 64 bits, read as a float by the JSON parser)",
       make_file(R"({"w": {"dtype": "U8", "shape": [18446744073709551616], "data_offsets": [0, 0]}})"),
       ErrorCode::kSafetensorsSizeOverflow},
      {"a fractional dim", make_file(R"({"w": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 0]}})"),
       ErrorCode::kSafetensorsHeaderSchema},
      {"byte length differs from dtype x shape",
       make_file(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", eight),
       ErrorCode::kSafetensorsTensorSize},
      {"trailing bytes after the data (polyglot)", make_file(kOneF32, eight + "PK"), ErrorCode::kSafetensorsBufferEnd},
      {"truncated data", make_file(kOneF32, "xxxx"), ErrorCode::kSafetensorsBufferEnd},
  };
}

}  // namespace

TEST_CASE("each defect is refused with its own code, by the reader and by the checker") {
  for (const auto& defect : defect_corpus()) {
    CAPTURE(defect.rule);
    auto header = read(defect.file);
    REQUIRE_FALSE(header.ok());
    CHECK(header.error().code() == defect.code);
    CHECK(header.error().file() == "defect.safetensors");
    CHECK(all_codes(defect.file).count(defect.code) == 1);
  }
}

TEST_CASE("messages name the tensor and the numbers") {
  auto size = read(make_file(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, 'x')));
  CHECK(size.error().variable() == "w");
  CHECK(size.error().describe() ==
        "E812 safetensors_tensor_size: variable 'w': file 'defect.safetensors': data_offsets [0, 8]: "
        "expected 12 bytes (F32 x [3]), found 8");
  auto hole = read(make_file(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}})",
                             "xxx"));
  CHECK(hole.error().variable() == "b");
  CHECK(hole.error().message() == "data_offsets [2, 3]: a hole, the data before it ends at 1");
  auto duplicate = read(make_file(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                     "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                                  "xx"));
  CHECK(duplicate.error().code() == ErrorCode::kSafetensorsDuplicateKey);
  CHECK(duplicate.error().message() == "the name 'w' appears twice in the header");
  auto end = read(make_file(kOneF32, std::string(10, 'x')));
  CHECK(end.error().message() == "the tensors end at byte 8 of the data, which has 10 bytes (trailing bytes)");
}

TEST_CASE("the checker collects every problem, the reader stops at the first") {
  std::string file = make_file(R"({"a": {"dtype": "F8_E5M2FNUZ", "shape": [1], "data_offsets": [0, 1]},
                                  "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]},
                                  "c": {"dtype": "I64", "shape": [1], "data_offsets": [6, 10]},
                                  "__metadata__": {"n": 1}})",
                               std::string(12, 'x'));
  CHECK(all_codes(file) == std::set<ErrorCode>{ErrorCode::kSafetensorsUnknownDtype, ErrorCode::kSafetensorsOffsets,
                                               ErrorCode::kSafetensorsTensorSize, ErrorCode::kSafetensorsMetadata,
                                               ErrorCode::kSafetensorsBufferEnd});
  CHECK(all_issues(file).size() == 5);
  CHECK(read(file).error().code() == ErrorCode::kSafetensorsMetadata);  // keys are visited in sorted order
}

TEST_CASE("valid corner cases the reference accepts") {
  // Leading and trailing whitespace, an empty tensor, a scalar, metadata, unknown entry fields.
  std::string file = make_file(R"(  {"__metadata__": {"format": "pt"},
      "empty": {"dtype": "F16", "shape": [0, 3], "data_offsets": [0, 0]},
      "scalar": {"dtype": "BF16", "shape": [], "data_offsets": [0, 2], "note": "ignored"},
      "z": {"dtype": "BOOL", "shape": [2], "data_offsets": [2, 4]}}   )",
                               std::string("\x01\x02\x01\x00", 4));
  auto header = read(file);
  REQUIRE_MESSAGE(header.ok(), header.error().describe());
  CHECK(all_issues(file).empty());
  CHECK(header->metadata == std::map<std::string, std::string>{{"format", "pt"}});
  REQUIRE(header->entries.size() == 3);
  CHECK(header->entries[0].name == "empty");
  CHECK(header->entries[0].meta.byte_size() == 0);
  CHECK(header->entries[1].meta.dtype() == ckpt::DType::kBFloat16);
  CHECK(header->entries[1].meta.shape().empty());
  CHECK(header->entries[2].begin == 2);
  CHECK(header->data_start == file.size() - 4);
  CHECK(read(make_file("{}")).ok());
}

TEST_CASE("every safetensors dtype of the issue maps both ways") {
  for (std::string_view name : {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16", "F32",
                                "F64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0"}) {
    auto dtype = ckpt::dtype_from_safetensors(name);
    REQUIRE(dtype.has_value());
    CHECK(ckpt::dtype_info(*dtype).safetensors == name);
  }
  CHECK(ckpt::dtype_from_safetensors("I8") == ckpt::DType::kInt8);
  CHECK_FALSE(ckpt::dtype_from_safetensors("F8_E4M3FNUZ").has_value());
}

TEST_CASE("written files are padded, aligned, read back and refuse misuse") {
  ckpt::testing::TempDir dir;
  fs::path path = dir / "model.safetensors";
  auto writer = ckpt::create_checkpoint(path, "safetensors");
  REQUIRE(writer.ok());
  auto u8 = ckpt::VariableMeta::make(ckpt::DType::kUInt8, {3}).value();
  auto f64 = ckpt::VariableMeta::make(ckpt::DType::kDouble, {2}).value();
  std::vector<std::uint8_t> bytes = {1, 2, 3};
  std::vector<double> doubles = {0.5, -2.0};
  REQUIRE((*writer)->add("a.bytes", u8, ckpt::MemorySource(std::as_bytes(std::span(bytes)))).ok());
  REQUIRE((*writer)->add("b.doubles", f64, ckpt::MemorySource(std::as_bytes(std::span(doubles)))).ok());
  CHECK((*writer)->add("a.bytes", u8, ckpt::MemorySource(std::as_bytes(std::span(bytes)))).error().code() ==
        ErrorCode::kDuplicateName);
  CHECK((*writer)->add("c", f64, ckpt::MemorySource(std::as_bytes(std::span(bytes)))).error().code() ==
        ErrorCode::kBufferSizeMismatch);
  CHECK((*writer)->add("__metadata__", u8, ckpt::MemorySource(std::as_bytes(std::span(bytes)))).error().code() ==
        ErrorCode::kInvalidArgument);
  CHECK((*writer)->add("bad\xff", u8, ckpt::MemorySource(std::as_bytes(std::span(bytes)))).error().code() ==
        ErrorCode::kSafetensorsHeaderUtf8);
  auto c128 = ckpt::VariableMeta::make(ckpt::DType::kComplex128, {1}).value();
  CHECK((*writer)->add("z", c128, ckpt::MemorySource(std::as_bytes(std::span(doubles)))).error().code() ==
        ErrorCode::kSafetensorsUnknownDtype);
  CHECK_FALSE(fs::exists(path));
  REQUIRE((*writer)->commit().ok());
  // Only the published file: the staged data was never linked.
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);

  std::string file = ckpt::testing::read_file(path);
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, file.data(), 8);
  CHECK(header_length % 8 == 0);
  CHECK(file.size() == 8 + header_length + 19);
  // The default metadata first, then the widest elements: the doubles at 0, then the bytes.
  CHECK(file.substr(8, header_length).starts_with(
      R"({"__metadata__":{"format":"pt"},"b.doubles":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
      R"("a.bytes":{"dtype":"U8")"));
  CHECK(ckpt::detect_format(path).value() == "safetensors");

  auto reader = ckpt::open_checkpoint(path);
  REQUIRE(reader.ok());
  CHECK((*reader)->format_name() == "safetensors");
  REQUIRE((*reader)->tensors().size() == 2);
  CHECK((*reader)->tensors()[0].name == "a.bytes");
  auto source = (*reader)->open("b.doubles");
  REQUIRE(source.ok());
  CHECK((*source)->file_offset() == 8 + header_length);
  std::vector<double> back(2);
  REQUIRE((*source)->read_at(0, std::as_writable_bytes(std::span(back))).ok());
  CHECK(back == doubles);
  CHECK((*reader)->open("nope").error().code() == ErrorCode::kUnknownVariable);
  CHECK((*reader)->metadata() == ckpt::TextMetadata{{"format", "pt"}});

  CHECK(ckpt::create_checkpoint(path, "safetensors").error().code() == ErrorCode::kDestinationExists);
  ckpt::WriteOptions replace;
  replace.overwrite = true;
  auto again = ckpt::create_checkpoint(path, "safetensors", replace);
  REQUIRE(again.ok());
  REQUIRE((*again)->commit().ok());
  CHECK(ckpt::testing::read_file(path) == make_file(R"({"__metadata__":{"format":"pt"}})"));

  // Entries go over the default; text the reader would refuse is refused before writing.
  auto tagged = ckpt::create_checkpoint(path, "safetensors", replace);
  REQUIRE(tagged.ok());
  CHECK((*tagged)->stores_metadata());
  CHECK((*tagged)->set_metadata({{"bad", "\xff"}}).error().code() == ErrorCode::kSafetensorsHeaderUtf8);
  REQUIRE((*tagged)->set_metadata({{"format", "np"}, {"step", "9"}}).ok());
  REQUIRE((*tagged)->commit().ok());
  auto reread = ckpt::open_checkpoint(path);
  REQUIRE(reread.ok());
  CHECK((*reread)->metadata() == ckpt::TextMetadata{{"format", "np"}, {"step", "9"}});
  auto npz = ckpt::create_checkpoint(dir.path() / "x.npz", "npz");
  REQUIRE(npz.ok());
  CHECK_FALSE((*npz)->stores_metadata());
  CHECK((*npz)->set_metadata({{"format", "pt"}}).error().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("a real OneFlow snapshot converts to safetensors and back byte for byte") {
  fs::path snapshot = ckpt::testing::fixtures_root() / "oneflow-real" / "models_mobilenetv3_legacy_eager";
  ckpt::testing::TempDir dir;
  auto copy = [](const fs::path& from, const fs::path& to, std::string_view format) {
    auto reader = ckpt::open_checkpoint(from);
    REQUIRE(reader.ok());
    auto writer = ckpt::create_checkpoint(to, format);
    REQUIRE(writer.ok());
    for (const auto& tensor : (*reader)->tensors()) {
      auto source = (*reader)->open(tensor.name);
      REQUIRE(source.ok());
      REQUIRE((*writer)->add(tensor.name, tensor.meta, **source).ok());
    }
    REQUIRE((*writer)->commit().ok());
  };
  copy(snapshot, dir / "m.safetensors", "safetensors");
  CHECK(ckpt::validate_checkpoint(dir / "m.safetensors").issues.empty());
  copy(dir / "m.safetensors", dir / "back", "oneflow");
  auto original = ckpt::open_checkpoint(snapshot).value();
  auto back = ckpt::open_checkpoint(dir / "back").value();
  REQUIRE(back->tensors().size() == 210);
  for (const auto& tensor : original->tensors()) {
    CAPTURE(tensor.name);
    CHECK(back->find(tensor.name)->meta == tensor.meta);
    CHECK(ckpt::testing::read_file(dir / "back" / tensor.name / "out") ==
          ckpt::testing::read_file(snapshot / tensor.name / "out"));
  }
}

namespace {

// A valid file of `count` one-byte tensors.
std::string tiny_tensors(std::size_t count) {
  std::string header = "{";
  for (std::size_t i = 0; i < count; ++i) {
    header += fmt::format(R"({}"t{}":{{"dtype":"U8","shape":[1],"data_offsets":[{},{}]}})", i == 0 ? "" : ",", i, i,
                          i + 1);
  }
  header += "}";
  return make_file(header, std::string(count, '\x07'));
}

double seconds_to_read(const std::string& file, std::size_t expected_entries) {
  auto start = std::chrono::steady_clock::now();
  auto header = read(file);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(header.ok());
  CHECK(header->entries.size() == expected_entries);
  return seconds;
}

}  // namespace

// The header parser used to be quadratic in the entries (5k: 0.3 s, 40k: 63 s,
// 1M did not finish in 300 s). 100x the entries: linear is about 100-160x the
// time (caches), quadratic 10,000x; 1,000x leaves room for a loaded machine.
TEST_CASE("the header parse is linear in the number of tensors") {
  std::string small = tiny_tensors(10'000);
  std::string large = tiny_tensors(1'000'000);
  REQUIRE(large.size() < ckpt::kSafetensorsMaxHeaderBytes + 1'000'000);
  double small_seconds = seconds_to_read(small, 10'000);
  small_seconds = std::min(small_seconds, seconds_to_read(small, 10'000));  // the faster of two: less noise
  double large_seconds = seconds_to_read(large, 1'000'000);
  CAPTURE(small_seconds);
  CAPTURE(large_seconds);
  CHECK(large_seconds < 1000 * small_seconds);
  // One entry with 40,000 extra empty-object fields (25 s before): ignored fields, linear too.
  std::string fields;
  for (int i = 0; i < 40'000; ++i) fields += fmt::format(R"("x{}":{{}},)", i);
  std::string wide = make_file(R"({"w":{)" + fields + R"("dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "z");
  CHECK(seconds_to_read(wide, 1) < 200 * small_seconds);
  // Duplicates are still found in a large header.
  std::string duplicated = make_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                                     R"("a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})");
  auto refused = read(duplicated);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == ErrorCode::kSafetensorsDuplicateKey);
}
