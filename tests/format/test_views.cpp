#include "ckpt/format/views.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include <doctest/doctest.h>

#include "test_support.hpp"

using ckpt::DType;
using ckpt::ErrorCode;
using ckpt::testing::names_of;
using ckpt::testing::read_all;

namespace {

template <class T>
std::vector<std::byte> bytes_of(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

template <class T>
std::vector<T> values_of(const std::vector<std::byte>& bytes) {
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// Tensors held in memory, behind the generic reader interface.
class MemoryCheckpoint final : public ckpt::CheckpointReader {
 public:
  void add(std::string name, DType dtype, ckpt::Shape shape, std::vector<std::byte> bytes) {
    auto meta = ckpt::VariableMeta::make(dtype, std::move(shape));
    REQUIRE(meta.ok());
    REQUIRE(meta->byte_size() == bytes.size());
    data_[name] = std::move(bytes);
    tensors_.push_back({std::move(name), *meta});
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  }
  std::string_view format_name() const override { return "memory"; }
  const std::filesystem::path& path() const override { return path_; }
  const std::vector<ckpt::TensorInfo>& tensors() const override { return tensors_; }
  ckpt::Result<std::unique_ptr<ckpt::ByteSource>> open(std::string_view name) const override {
    auto it = data_.find(std::string(name));
    if (it == data_.end()) return ckpt::Error(ErrorCode::kUnknownVariable, "not here");
    return std::unique_ptr<ckpt::ByteSource>(std::make_unique<ckpt::MemorySource>(it->second, it->first));
  }

 private:
  std::filesystem::path path_ = "<memory checkpoint>";
  std::vector<ckpt::TensorInfo> tensors_;
  std::map<std::string, std::vector<std::byte>> data_;
};


std::vector<std::byte> cast_all(const std::vector<std::byte>& bytes, DType from, DType to) {
  auto source = ckpt::cast_source(std::make_unique<ckpt::MemorySource>(bytes), from, to);
  REQUIRE(source.ok());
  std::vector<std::byte> out((*source)->size());
  REQUIRE((*source)->read_at(0, out).ok());
  return out;
}

std::uint16_t f32_to_f16(float value) {
  return values_of<std::uint16_t>(cast_all(bytes_of(std::vector{value}), DType::kFloat, DType::kFloat16))[0];
}

std::unique_ptr<MemoryCheckpoint> sample_checkpoint() {
  auto checkpoint = std::make_unique<MemoryCheckpoint>();
  checkpoint->add("decoder.bias", DType::kFloat, {2}, bytes_of(std::vector<float>{1.0f, -2.5f}));
  checkpoint->add("encoder.layer1.weight", DType::kDouble, {1}, bytes_of(std::vector<double>{0.1}));
  checkpoint->add("encoder.layer2.weight", DType::kFloat16, {1}, bytes_of(std::vector<std::uint16_t>{0x3C00}));
  checkpoint->add("step", DType::kInt64, {1}, bytes_of(std::vector<std::int64_t>{42}));
  return checkpoint;
}

}  // namespace

TEST_CASE("casts round to nearest even, keep NaN and Inf, overflow to Inf") {
  CHECK(f32_to_f16(1.0f) == 0x3C00);
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  CHECK(f32_to_f16(65504.0f) == 0x7BFF);      // the largest half
  CHECK(f32_to_f16(65519.996f) == 0x7BFF);    // below max + half an ulp
  CHECK(f32_to_f16(65520.0f) == 0x7C00);      // the tie rounds to even: Inf
  CHECK(f32_to_f16(-1e10f) == 0xFC00);
  CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3C00);         // tie, down to even
  CHECK(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02);     // tie, up to even
  CHECK(f32_to_f16(0x1p-24f) == 0x0001);                // smallest subnormal
  CHECK(f32_to_f16(0x1p-25f) == 0x0000);                // half of it: tie to even zero
  CHECK(f32_to_f16(0x1.000002p-25f) == 0x0001);         // just above half
  CHECK(f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400);     // rounds up into the normals
  CHECK(f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(f32_to_f16(-std::numeric_limits<float>::quiet_NaN()) == 0xFE00);
  // A signalling NaN comes out quiet, its leading payload bits kept.
  CHECK(f32_to_f16(std::bit_cast<float>(0x7FA00000u)) == 0x7F00);

  // One rounding from the exact value: via f32 this would tie and round down.
  const double above_tie = 1.0 + 0x1p-8 + 0x1p-30;
  CHECK(values_of<std::uint16_t>(cast_all(bytes_of(std::vector{above_tie}), DType::kDouble, DType::kBFloat16))[0] ==
        0x3F81);
  // Widening is exact, subnormals included.
  CHECK(values_of<float>(cast_all(bytes_of(std::vector<std::uint16_t>{0x0001, 0xFBFF}), DType::kFloat16,
                                  DType::kFloat)) == std::vector<float>{0x1p-24f, -65504.0f});
  CHECK(values_of<double>(cast_all(bytes_of(std::vector<std::uint16_t>{0x3F81, 0xFF80}), DType::kBFloat16,
                                   DType::kDouble)) ==
        std::vector<double>{1.0078125, -std::numeric_limits<double>::infinity()});
}

TEST_CASE("a cast source reads any window, across chunks and inside elements") {
  std::vector<float> values(200'003);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.37f - 1000.0f;
  const auto input = bytes_of(values);
  const auto whole = cast_all(input, DType::kFloat, DType::kFloat16);
  REQUIRE(whole.size() == values.size() * 2);
  for (std::size_t i = 0; i < values.size(); i += 9973) {
    CHECK(values_of<std::uint16_t>({whole.begin() + 2 * i, whole.begin() + 2 * i + 2})[0] == f32_to_f16(values[i]));
  }
  auto source = ckpt::cast_source(std::make_unique<ckpt::MemorySource>(input), DType::kFloat, DType::kFloat16);
  REQUIRE(source.ok());
  for (auto [offset, length] : std::vector<std::pair<std::size_t, std::size_t>>{
           {1, 1}, {3, 5}, {131071, 3}, {131071, 131075}, {7, whole.size() - 8}, {whole.size() - 1, 1}}) {
    std::vector<std::byte> window(length);
    REQUIRE((*source)->read_at(offset, window).ok());
    CHECK(std::equal(window.begin(), window.end(), whole.begin() + static_cast<std::ptrdiff_t>(offset)));
  }
  std::vector<std::byte> past_end(2);
  CHECK((*source)->read_at(whole.size() - 1, past_end).error().code() == ErrorCode::kDataSizeMismatch);
  CHECK((*source)->file_descriptor() == -1);  // never copied raw from the file
}

TEST_CASE("cast_source refuses non-floating types and partial elements") {
  std::vector<std::byte> three(3);
  CHECK(ckpt::cast_source(std::make_unique<ckpt::MemorySource>(three), DType::kInt32, DType::kFloat).error().code() ==
        ErrorCode::kInvalidArgument);
  CHECK(ckpt::cast_source(std::make_unique<ckpt::MemorySource>(three), DType::kFloat16, DType::kFloat)
            .error()
            .code() == ErrorCode::kDataSizeMismatch);
}

TEST_CASE("cast_view presents floating tensors as the target and leaves the rest") {
  auto view = ckpt::cast_view(sample_checkpoint(), DType::kBFloat16);
  REQUIRE(view.ok());
  const auto& reader = **view;
  CHECK(reader.format_name() == "memory");
  CHECK(reader.find("decoder.bias")->meta.dtype() == DType::kBFloat16);
  CHECK(reader.find("decoder.bias")->meta.byte_size() == 4);
  CHECK(reader.find("step")->meta.dtype() == DType::kInt64);
  CHECK(values_of<std::uint16_t>(read_all(reader, "decoder.bias")) == std::vector<std::uint16_t>{0x3F80, 0xC020});
  CHECK(values_of<std::uint16_t>(read_all(reader, "encoder.layer1.weight")) == std::vector<std::uint16_t>{0x3DCD});
  CHECK(values_of<std::int64_t>(read_all(reader, "step")) == std::vector<std::int64_t>{42});
  CHECK(reader.open("missing").error().code() == ErrorCode::kUnknownVariable);

  auto to_int = ckpt::cast_view(sample_checkpoint(), DType::kInt32);
  REQUIRE_FALSE(to_int.ok());
  CHECK(to_int.error().code() == ErrorCode::kInvalidArgument);
  CHECK(to_int.error().message().find("kInt32") != std::string::npos);
}

TEST_CASE("glob patterns follow fnmatch") {
  CHECK(ckpt::glob_match("encoder.*", "encoder.layer1.weight"));
  CHECK(ckpt::glob_match("*.weight", "a/b.weight"));
  CHECK(ckpt::glob_match("layer?.bias", "layer7.bias"));
  CHECK_FALSE(ckpt::glob_match("layer?.bias", "layer10.bias"));
  CHECK(ckpt::glob_match("layer[0-3]", "layer2"));
  CHECK_FALSE(ckpt::glob_match("layer[!0-3]", "layer2"));
  CHECK(ckpt::glob_match("a\\*", "a*"));
  CHECK_FALSE(ckpt::glob_match("a\\*", "ab"));
  CHECK_FALSE(ckpt::glob_match("encoder", "encoder.x"));  // whole names only
}

TEST_CASE("filter_view keeps what an include matches and no exclude does") {
  auto only_encoder = ckpt::filter_view(sample_checkpoint(), {"encoder.*"}, {"*layer2*"});
  REQUIRE(only_encoder.ok());
  CHECK(names_of(**only_encoder) == std::vector<std::string>{"encoder.layer1.weight"});
  CHECK((*only_encoder)->open("decoder.bias").error().code() == ErrorCode::kUnknownVariable);
  CHECK(values_of<double>(read_all(**only_encoder, "encoder.layer1.weight")) == std::vector<double>{0.1});

  auto all_but_step = ckpt::filter_view(sample_checkpoint(), {}, {"step"});
  REQUIRE(all_but_step.ok());
  CHECK(names_of(**all_but_step) ==
        std::vector<std::string>{"decoder.bias", "encoder.layer1.weight", "encoder.layer2.weight"});

  auto typo = ckpt::filter_view(sample_checkpoint(), {"*.weight", "encodr.*"}, {});
  REQUIRE_FALSE(typo.ok());
  CHECK(typo.error().code() == ErrorCode::kInvalidArgument);
  CHECK(typo.error().message() == "include pattern 'encodr.*' matches none of the 4 tensors");
}

TEST_CASE("rename_view replaces prefixes, first rule wins, stays sorted") {
  auto renamed = ckpt::rename_view(sample_checkpoint(), {{"encoder.layer1.", "z."}, {"encoder.", "enc."}, {"", "m."}});
  REQUIRE(renamed.ok());
  CHECK(names_of(**renamed) == std::vector<std::string>{"enc.layer2.weight", "m.decoder.bias", "m.step", "z.weight"});
  CHECK(values_of<double>(read_all(**renamed, "z.weight")) == std::vector<double>{0.1});
  CHECK(values_of<std::int64_t>(read_all(**renamed, "m.step")) == std::vector<std::int64_t>{42});
  CHECK((*renamed)->open("step").error().code() == ErrorCode::kUnknownVariable);

  auto clash = ckpt::rename_view(sample_checkpoint(), {{"encoder.layer1.", "w."}, {"encoder.layer2.", "w."}});
  REQUIRE_FALSE(clash.ok());
  CHECK(clash.error().code() == ErrorCode::kDuplicateName);
  CHECK(clash.error().variable() == "w.weight");
  CHECK(clash.error().message() ==
        "renaming gives both 'encoder.layer1.weight' and 'encoder.layer2.weight' this name");

  auto emptied = ckpt::rename_view(sample_checkpoint(), {{"step", ""}});
  REQUIRE_FALSE(emptied.ok());
  CHECK(emptied.error().code() == ErrorCode::kInvalidArgument);
  CHECK(emptied.error().variable() == "step");
}

TEST_CASE("rename rules parse as OLD=NEW at the first '='") {
  auto rule = ckpt::parse_rename_rule("a.=b=c.");
  REQUIRE(rule.ok());
  CHECK(rule->from == "a.");
  CHECK(rule->to == "b=c.");
  CHECK(ckpt::parse_rename_rule("=model.")->from.empty());
  auto bad = ckpt::parse_rename_rule("no-equals");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message() == "expected OLD=NEW, got 'no-equals'");
}

TEST_CASE("views compose") {
  auto cast = ckpt::cast_view(sample_checkpoint(), DType::kFloat16);
  REQUIRE(cast.ok());
  auto filtered = ckpt::filter_view(std::move(cast).value(), {"*.weight", "decoder.*"}, {});
  REQUIRE(filtered.ok());
  auto renamed = ckpt::rename_view(std::move(filtered).value(), {{"decoder.", "head."}});
  REQUIRE(renamed.ok());
  const auto& reader = **renamed;
  CHECK(names_of(reader) == std::vector<std::string>{"encoder.layer1.weight", "encoder.layer2.weight", "head.bias"});
  CHECK(reader.find("head.bias")->meta.dtype() == DType::kFloat16);
  CHECK(values_of<std::uint16_t>(read_all(reader, "head.bias")) == std::vector<std::uint16_t>{0x3C00, 0xC100});
  CHECK(values_of<std::uint16_t>(read_all(reader, "encoder.layer1.weight")) == std::vector<std::uint16_t>{0x2E66});
}

TEST_CASE("a cast keeps a pickle checkpoint's object; filters and renames are flat") {
  auto frappe = ckpt::open_checkpoint(ckpt::testing::fixtures_root() / "oneflow-real" /
                                      "models_dcn_frappe_pickledir_proto3");
  REQUIRE(frappe.ok());
  const ckpt::pickle::Value* object = (*frappe)->object();
  REQUIRE(object != nullptr);
  CHECK(ckpt::hidden_object(**frappe) == nullptr);
  auto cast = ckpt::cast_view(std::move(frappe).value(), DType::kFloat16);
  REQUIRE(cast.ok());
  CHECK((*cast)->object() == object);
  CHECK(ckpt::hidden_object(**cast) == nullptr);
  auto renamed = ckpt::rename_view(std::move(cast).value(), {{"", "m."}});
  REQUIRE(renamed.ok());
  CHECK((*renamed)->object() == nullptr);
  // What the rename hides is found through it and the cast below it.
  CHECK(ckpt::hidden_object(**renamed) == object);
  auto recast = ckpt::cast_view(std::move(renamed).value(), DType::kFloat);
  REQUIRE(recast.ok());
  CHECK((*recast)->object() == nullptr);
  CHECK(ckpt::hidden_object(**recast) == object);
}

TEST_CASE("a flat checkpoint has no object to hide") {
  auto flat = ckpt::open_checkpoint(ckpt::testing::fixtures_root() / "oneflow-emulated" / "A_legacy_v0.5_linear");
  REQUIRE(flat.ok());
  auto renamed = ckpt::rename_view(std::move(flat).value(), {{"", "m."}});
  REQUIRE(renamed.ok());
  CHECK(ckpt::hidden_object(**renamed) == nullptr);
}
