// The pickle reader and writer on OneFlow's own bytes and on round trips.
#include "ckpt/format/pickle.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "test_support.hpp"

namespace pickle = ckpt::pickle;
using pickle::Kind;

namespace {

std::vector<std::byte> file_bytes(const std::filesystem::path& path) {
  std::string text = ckpt::testing::read_file(path);
  auto bytes = ckpt::as_bytes(text);
  return {bytes.begin(), bytes.end()};
}

std::filesystem::path emulated(std::string_view name) {
  return ckpt::testing::fixtures_root() / "oneflow-emulated" / name / "pickled_data";
}

// Structural equality of two values (memo sharing aside).
bool same(const pickle::Value* a, const pickle::Value* b) {
  if (a == nullptr || b == nullptr) return a == b;
  if (a->kind != b->kind || a->boolean != b->boolean || a->integer != b->integer || a->text != b->text ||
      a->name != b->name || a->ordered != b->ordered || a->items.size() != b->items.size() ||
      a->entries.size() != b->entries.size()) {
    return false;
  }
  if (a->kind == Kind::kFloat && !(a->real == b->real || (std::isnan(a->real) && std::isnan(b->real)))) return false;
  for (std::size_t i = 0; i < a->items.size(); ++i) {
    if (!same(a->items[i], b->items[i])) return false;
  }
  for (std::size_t i = 0; i < a->entries.size(); ++i) {
    if (!same(a->entries[i].first, b->entries[i].first) || !same(a->entries[i].second, b->entries[i].second)) {
      return false;
    }
  }
  return same(a->metadata, b->metadata) && same(a->cls, b->cls) && same(a->state, b->state);
}

}  // namespace

TEST_CASE("the emulated OneFlow protocol-4 pickled_data reads as the Linear state_dict") {
  auto bytes = file_bytes(emulated("B_pickle_dir_v0.6-0.9_py38plus_proto4"));
  REQUIRE(bytes.size() == 190);
  auto document = pickle::read(bytes);
  REQUIRE_MESSAGE(document.ok(), document.error().describe());
  const pickle::Value* root = document->root();
  REQUIRE(root->kind == Kind::kDict);
  CHECK_FALSE(root->ordered);
  REQUIRE(root->find("protocol_version") != nullptr);
  CHECK(root->find("protocol_version")->integer == 1);
  const pickle::Value* data = root->find("data");
  REQUIRE(data != nullptr);
  CHECK(data->kind == Kind::kDict);
  CHECK(data->ordered);
  REQUIRE(data->metadata != nullptr);
  CHECK(data->metadata->ordered);
  CHECK(data->metadata->entries.empty());
  REQUIRE(data->entries.size() == 2);
  CHECK(data->entries[0].first->text == "weight");
  const pickle::Value* weight = data->entries[0].second;
  REQUIRE(weight->kind == Kind::kOneflowTensor);
  CHECK(weight->cls->text == "oneflow.nn");
  CHECK(weight->cls->name == "Parameter");
  CHECK(weight->oneflow_path() == "tensor_1");
  CHECK(data->entries[1].second->oneflow_path() == "tensor_2");
  // The class is one memoized object, as in Python.
  CHECK(data->entries[1].second->cls == weight->cls);
}

TEST_CASE("reading and writing back OneFlow's pickled_data gives the same bytes") {
  struct Case {
    std::filesystem::path path;
    int protocol;
  };
  auto real = ckpt::testing::fixtures_root() / "oneflow-real" / "models_dcn_frappe_pickledir_proto3" / "pickled_data";
  for (const Case& c : {Case{emulated("B_pickle_dir_v0.6-0.9_py38plus_proto4"), 4},
                        Case{emulated("B_pickle_dir_v0.6-0.9_py37_proto3"), 3},
                        Case{emulated("B_pickle_dir_v1.0_py38plus_proto4"), 4},
                        Case{emulated("B_pickle_dir_v1.0_py37_proto3"), 3}, Case{real, 3}}) {
    CAPTURE(c.path);
    auto bytes = file_bytes(c.path);
    auto document = pickle::read(bytes);
    REQUIRE_MESSAGE(document.ok(), document.error().describe());
    auto written = pickle::write(*document->root(), c.protocol);
    REQUIRE(written.ok());
    CHECK(written.value() == bytes);
  }
}

TEST_CASE("values round-trip through every protocol") {
  pickle::Document doc;
  pickle::Value* root = doc.dict();
  auto add = [&](std::string key, const pickle::Value* value) { root->entries.emplace_back(doc.string(key), value); };
  for (std::int64_t n : {std::int64_t{0}, std::int64_t{255}, std::int64_t{256}, std::int64_t{65535},
                         std::int64_t{65536}, std::int64_t{-1}, std::int64_t{-129}, std::int64_t{INT32_MAX},
                         std::int64_t{INT32_MIN}, std::int64_t{1} << 31, std::int64_t{-(std::int64_t{1} << 31) - 1},
                         std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()}) {
    add("int" + std::to_string(n), doc.integer(n));
  }
  add("float", doc.real(-2.5e-300));
  add("inf", doc.real(std::numeric_limits<double>::infinity()));
  add("none", doc.none());
  add("true", doc.boolean(true));
  add("unicode", doc.string("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  add("long string", doc.string(std::string(70'000, 'x')));
  add("bytes", doc.bytes(std::string("\x00\xff\x80 raw", 7)));
  pickle::Value* list = doc.list();
  for (int i = 0; i < 2500; ++i) list->items.push_back(doc.integer(i));  // three APPENDS batches
  add("list", list);
  add("tuple", doc.tuple({doc.integer(1), doc.string("two"), doc.none(), doc.real(4.0)}));
  add("pair", doc.tuple({doc.integer(1), doc.integer(2)}));
  add("empty tuple", doc.tuple({}));
  pickle::Value* set = doc.make(Kind::kSet);
  set->items = {doc.integer(3), doc.string("s")};
  add("set", set);
  pickle::Value* ordered = doc.dict(true);
  ordered->entries.emplace_back(doc.integer(7), doc.list());
  ordered->metadata = doc.dict(true);
  add("ordered", ordered);
  const pickle::Value* shared = doc.string("shared");
  add("shared twice", doc.tuple({shared, shared}));

  for (int protocol : {2, 3, 4}) {
    CAPTURE(protocol);
    auto bytes = pickle::write(*root, protocol);
    REQUIRE(bytes.ok());
    auto back = pickle::read(bytes.value());
    REQUIRE_MESSAGE(back.ok(), back.error().describe());
    CHECK(same(back->root(), root));
    const pickle::Value* pair = back->root()->find("shared twice");
    REQUIRE(pair != nullptr);
    CHECK(pair->items[0] == pair->items[1]);  // the memo kept the sharing
    // Writing what was read reproduces the bytes.
    auto again = pickle::write(*back->root(), protocol);
    REQUIRE(again.ok());
    CHECK(again.value() == bytes.value());
  }
  CHECK(pickle::write(*root, 5).error().code() == ckpt::ErrorCode::kInvalidArgument);
}

TEST_CASE("protocol-4 output is framed as CPython frames it") {
  pickle::Document doc;
  pickle::Value* list = doc.list();
  for (int i = 0; i < 30'000; ++i) list->items.push_back(doc.integer(i));
  auto bytes = pickle::write(*list, 4);
  REQUIRE(bytes.ok());
  const auto& b = bytes.value();
  // PROTO 4, then FRAME with an 8-byte length of at least 64 KiB.
  REQUIRE(b.size() > 11);
  CHECK(b[0] == std::byte{0x80});
  CHECK(b[1] == std::byte{4});
  CHECK(b[2] == std::byte{0x95});
  std::uint64_t first_frame = 0;
  for (int i = 0; i < 8; ++i) first_frame |= static_cast<std::uint64_t>(b[3 + i]) << (8 * i);
  CHECK(first_frame >= 64 * 1024);
  CHECK(first_frame < b.size());
  auto back = pickle::read(b);
  REQUIRE(back.ok());
  CHECK(back->root()->items.size() == 30'000);
  CHECK(back->root()->items.back()->integer == 29'999);
}
