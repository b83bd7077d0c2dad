#include "ckpt/format/safetensors_sharded.hpp"

#include <functional>
#include <set>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/safetensors.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using ckpt::testing::TempDir;

namespace {

struct Tensor {
  std::string name;
  ckpt::DType dtype;
  ckpt::Shape shape;
  std::vector<std::byte> bytes;
};

Tensor make_tensor(std::string name, ckpt::DType dtype, ckpt::Shape shape, std::uint64_t seed) {
  auto meta = ckpt::VariableMeta::make(dtype, shape);
  REQUIRE(meta.ok());
  return {std::move(name), dtype, std::move(shape), ckpt::testing::random_bytes(meta->byte_size(), seed)};
}

// Writes `tensors`, in this order, as a set with shards of at most `max_shard_bytes`.
void write_set(const fs::path& path, const std::vector<Tensor>& tensors, std::uint64_t max_shard_bytes) {
  ckpt::WriteOptions options;
  options.max_shard_bytes = max_shard_bytes;
  auto writer = ckpt::create_checkpoint(path, "safetensors-sharded", options);
  REQUIRE(writer.ok());
  for (const auto& tensor : tensors) {
    auto meta = ckpt::VariableMeta::make(tensor.dtype, tensor.shape);
    REQUIRE((*writer)->add(tensor.name, *meta, ckpt::MemorySource(tensor.bytes)).ok());
  }
  auto committed = (*writer)->commit();
  REQUIRE_MESSAGE(committed.ok(), committed.error().describe());
}

// Four f32 tensors of 400, 800, 400 and 4000 bytes, added in that order.
std::vector<Tensor> four_tensors() {
  return {make_tensor("layer.0.weight", ckpt::DType::kFloat, {10, 10}, 1),
          make_tensor("layer.0.bias", ckpt::DType::kFloat, {200}, 2),
          make_tensor("layer.1.weight", ckpt::DType::kFloat, {100}, 3),
          make_tensor("embed", ckpt::DType::kFloat, {1000}, 4)};
}

std::set<ErrorCode> validation_codes(const fs::path& path) {
  std::set<ErrorCode> codes;
  for (const auto& issue : ckpt::validate_checkpoint(path, "safetensors-sharded").issues) codes.insert(issue.code);
  return codes;
}

ErrorCode open_code(const fs::path& path) {
  auto reader = ckpt::open_checkpoint(path);
  REQUIRE_FALSE(reader.ok());
  return reader.error().code();
}

nlohmann::json read_index(const fs::path& directory) {
  return nlohmann::json::parse(ckpt::testing::read_file(directory / "model.safetensors.index.json"));
}

void write_index(const fs::path& directory, const nlohmann::json& index) {
  ckpt::testing::write_file(directory / "model.safetensors.index.json", index.dump(2));
}

}  // namespace

TEST_CASE("sizes are read as huggingface_hub reads max_shard_size") {
  CHECK(*ckpt::parse_byte_size("5GB") == 5'000'000'000ULL);
  CHECK(*ckpt::parse_byte_size("500MB") == 500'000'000ULL);
  CHECK(*ckpt::parse_byte_size(" 1.5gb ") == 1'500'000'000ULL);
  CHECK(*ckpt::parse_byte_size("10 KB") == 10'000ULL);
  CHECK(*ckpt::parse_byte_size("2TB") == 2'000'000'000'000ULL);
  CHECK(*ckpt::parse_byte_size("64KiB") == 65'536ULL);
  CHECK(*ckpt::parse_byte_size("1GiB") == 1'073'741'824ULL);
  CHECK(*ckpt::parse_byte_size("4096") == 4096ULL);
  CHECK(*ckpt::parse_byte_size("0.0015KB") == 1ULL);
  for (std::string_view bad : {"", "GB", "5XB", "1.2.3MB", "-5MB", "0MB", "0.0001KB", "99999999999TB"}) {
    auto size = ckpt::parse_byte_size(bad);
    CHECK_MESSAGE(!size.ok(), bad);
    if (!size.ok()) CHECK(size.error().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("the split follows huggingface_hub: in order, oversized tensors alone and before the open shard") {
  using Plan = std::vector<std::vector<std::size_t>>;
  const std::vector<std::uint64_t> docstring_example = {6, 6, 2, 6, 2, 2};  // its own example, limit 10
  CHECK(ckpt::plan_shards(docstring_example, 10) == Plan{{0}, {1, 2}, {3, 4, 5}});
  const std::vector<std::uint64_t> with_big = {1, 20, 3, 2};
  CHECK(ckpt::plan_shards(with_big, 5) == Plan{{1}, {0, 2}, {3}});
  const std::vector<std::uint64_t> exact = {5, 5};
  CHECK(ckpt::plan_shards(exact, 5) == Plan{{0}, {1}});
  CHECK(ckpt::shard_file_name(0, 1) == "model.safetensors");
  CHECK(ckpt::shard_file_name(1, 4) == "model-00002-of-00004.safetensors");
}

TEST_CASE("a written set has huggingface_hub's names and index and reads back as one checkpoint") {
  TempDir dir;
  const auto tensors = four_tensors();
  write_set(dir / "set", tensors, 1200);
  // 400 + 800 fill the first shard; 400 opens the second; 4000 is over the limit and goes alone, before it.
  std::set<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir / "set")) files.insert(entry.path().filename().string());
  CHECK(files == std::set<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors", "model.safetensors.index.json"});
  const std::string index_text = ckpt::testing::read_file(dir / "set" / "model.safetensors.index.json");
  CHECK(index_text ==
        "{\n  \"metadata\": {\n    \"total_size\": 5600\n  },\n  \"weight_map\": {\n"
        "    \"layer.0.weight\": \"model-00001-of-00003.safetensors\",\n"
        "    \"layer.0.bias\": \"model-00001-of-00003.safetensors\",\n"
        "    \"embed\": \"model-00002-of-00003.safetensors\",\n"
        "    \"layer.1.weight\": \"model-00003-of-00003.safetensors\"\n  }\n}");
  // Each shard is a safetensors file of its own, with save_torch_state_dict's metadata.
  auto shard = ckpt::FileSource::open(dir / "set" / "model-00001-of-00003.safetensors");
  REQUIRE(shard.ok());
  auto header = ckpt::read_safetensors_header(*shard);
  REQUIRE(header.ok());
  CHECK(header->entries.size() == 2);
  CHECK(header->metadata == std::map<std::string, std::string>{{"format", "pt"}});

  for (const fs::path& path : {dir / "set", dir / "set" / "model.safetensors.index.json"}) {
    CAPTURE(path);
    CHECK(*ckpt::detect_format(path) == "safetensors-sharded");
    auto reader = ckpt::open_checkpoint(path);
    REQUIRE(reader.ok());
    CHECK((*reader)->format_name() == "safetensors-sharded");
    REQUIRE((*reader)->tensors().size() == tensors.size());
    for (const auto& tensor : tensors) {
      const auto* info = (*reader)->find(tensor.name);
      REQUIRE(info != nullptr);
      CHECK(info->meta.shape() == tensor.shape);
      CHECK(ckpt::testing::read_all(**reader, tensor.name) == tensor.bytes);
    }
    auto report = ckpt::validate_checkpoint(path, "safetensors-sharded");
    CHECK(report.valid());
    CHECK(report.variables.size() == tensors.size());
  }
}

TEST_CASE("everything within the limit is one shard named model.safetensors, with an index") {
  TempDir dir;
  write_set(dir / "set", four_tensors(), ckpt::WriteOptions{}.max_shard_bytes);
  CHECK(fs::is_regular_file(dir / "set" / "model.safetensors"));
  auto index = read_index(dir / "set");
  CHECK(index["weight_map"].size() == 4);
  CHECK(index["weight_map"]["embed"] == "model.safetensors");
  auto reader = ckpt::open_checkpoint(dir / "set");
  REQUIRE(reader.ok());
  CHECK((*reader)->tensors().size() == 4);
}

TEST_CASE("non-ASCII names are escaped in the index as Python's json.dump does") {
  TempDir dir;
  write_set(dir / "set", {make_tensor("poids.\xC3\xA9t\xC3\xA9", ckpt::DType::kFloat16, {3}, 9)}, 1000);
  CHECK(ckpt::testing::read_file(dir / "set" / "model.safetensors.index.json").find("\"poids.\\u00e9t\\u00e9\"") !=
        std::string::npos);
  auto reader = ckpt::open_checkpoint(dir / "set");
  REQUIRE(reader.ok());
  CHECK((*reader)->find("poids.\xC3\xA9t\xC3\xA9") != nullptr);
}

TEST_CASE("the set appears whole or not at all: a failure before the rename leaves nothing") {
  for (ckpt::IoStep failing : {ckpt::IoStep::kCreate, ckpt::IoStep::kWrite, ckpt::IoStep::kSync, ckpt::IoStep::kRename}) {
    CAPTURE(ckpt::io_step_name(failing));
    TempDir dir;
    ckpt::WriteOptions options;
    options.max_shard_bytes = 1200;
    int index_steps = 0;
    // Fail the first `failing` step once the index is being written: every shard is staged by then.
    options.fault_hook = [&](ckpt::IoStep step, const fs::path& path) {
      if (path.filename() == "model.safetensors.index.json") ++index_steps;
      return step == failing && (index_steps > 0 || failing == ckpt::IoStep::kRename || failing == ckpt::IoStep::kSync);
    };
    auto writer = ckpt::create_checkpoint(dir / "set", "safetensors-sharded", options);
    REQUIRE(writer.ok());
    for (const auto& tensor : four_tensors()) {
      REQUIRE((*writer)->add(tensor.name, *ckpt::VariableMeta::make(tensor.dtype, tensor.shape),
                             ckpt::MemorySource(tensor.bytes)).ok());
    }
    auto committed = (*writer)->commit();
    REQUIRE_FALSE(committed.ok());
    writer->reset();
    CHECK_FALSE(fs::exists(dir / "set"));
    CHECK(fs::is_empty(dir.path()));  // no staging directory or scratch file left either
  }
}

TEST_CASE("broken sets give their codes, to the reader and the validator") {
  TempDir dir;
  const fs::path set = dir / "set";

  SUBCASE("a missing shard is named") {
    write_set(set, four_tensors(), 1200);
    fs::remove(set / "model-00002-of-00003.safetensors");
    CHECK(open_code(set) == ErrorCode::kShardedMissingShard);
    auto report = ckpt::validate_checkpoint(set, "safetensors-sharded");
    REQUIRE(report.issues.size() == 1);
    CHECK(report.issues[0].code == ErrorCode::kShardedMissingShard);
    CHECK(report.issues[0].message.find("model-00002-of-00003.safetensors") != std::string::npos);
  }
  SUBCASE("a tensor in two shards") {
    write_set(set, four_tensors(), 1200);
    // Shard 3 rewritten to hold layer.0.bias as well as its own tensor.
    TempDir other;
    auto all = four_tensors();
    write_set(other / "set", {all[1], all[2]}, 100000);
    fs::copy_file(other / "set" / "model.safetensors", set / "model-00003-of-00003.safetensors",
                  fs::copy_options::overwrite_existing);
    CHECK(open_code(set) == ErrorCode::kShardedDuplicateTensor);
    CHECK(validation_codes(set) == std::set{ErrorCode::kShardedDuplicateTensor});
  }
  SUBCASE("index edits: a wrong total_size, a tensor its file does not hold, a tensor the index leaves out") {
    struct Edit {
      std::function<void(nlohmann::json&)> apply;
      ErrorCode code;
    };
    const Edit edits[] = {
        {[](auto& index) { index["metadata"]["total_size"] = 5601; }, ErrorCode::kShardedTotalSize},
        // embed stays in shard 2, which then holds a tensor the index gives to another shard: one misplacement.
        {[](auto& index) { index["weight_map"]["embed"] = "model-00001-of-00003.safetensors"; },
         ErrorCode::kShardedMisplacedTensor},
        {[](auto& index) {
           index["weight_map"].erase("layer.0.bias");
           index["metadata"]["total_size"] = 4800;
         },
         ErrorCode::kShardedUnlistedTensor},
    };
    for (const auto& edit : edits) {
      CAPTURE(edit.code);
      fs::remove_all(set);
      write_set(set, four_tensors(), 1200);
      auto index = read_index(set);
      edit.apply(index);
      write_index(set, index);
      CHECK(open_code(set) == edit.code);
      CHECK(validation_codes(set) == std::set{edit.code});
    }
  }
  SUBCASE("every problem at once, collected") {
    write_set(set, four_tensors(), 1200);
    fs::remove(set / "model-00001-of-00003.safetensors");
    auto index = read_index(set);
    index["weight_map"]["ghost"] = "model-00002-of-00003.safetensors";
    write_index(set, index);
    CHECK(validation_codes(set) == std::set{ErrorCode::kShardedMissingShard, ErrorCode::kShardedMisplacedTensor});
  }
  SUBCASE("index defects") {
    write_set(set, four_tensors(), 1200);
    for (std::string_view text : {"[]", "{\"weight_map\": []}", "{\"weight_map\": {}}", "not json",
                                  "{\"weight_map\": {\"a\": 1}}", "{\"metadata\": {\"total_size\": -1}, \"weight_map\": {}}",
                                  "{\"weight_map\": {\"embed\": \"model-00002-of-00003.safetensors\", "
                                  "\"embed\": \"model-00001-of-00003.safetensors\"}}"}) {
      CAPTURE(text);
      ckpt::testing::write_file(set / "model.safetensors.index.json", text);
      CHECK(open_code(set) == ErrorCode::kShardedIndex);
      CHECK(validation_codes(set).contains(ErrorCode::kShardedIndex));
    }
  }
  SUBCASE("shard names that leave the directory") {
    write_set(set, four_tensors(), 1200);
    auto index = read_index(set);
    index["weight_map"]["embed"] = "../model-00002-of-00003.safetensors";
    write_index(set, index);
    CHECK(open_code(set) == ErrorCode::kUnsafeName);
    fs::create_directory(dir / "outside");
    fs::rename(set / "model-00002-of-00003.safetensors", dir / "outside" / "shard.safetensors");
    fs::create_symlink("../outside/shard.safetensors", set / "model-00002-of-00003.safetensors");
    index["weight_map"]["embed"] = "model-00002-of-00003.safetensors";
    write_index(set, index);
    CHECK(open_code(set) == ErrorCode::kEscapingSymlink);
  }
  SUBCASE("several indexes: the directory is ambiguous, each index file opens") {
    write_set(set, four_tensors(), 1200);
    fs::copy_file(set / "model.safetensors.index.json", set / "other.safetensors.index.json");
    CHECK(open_code(set) == ErrorCode::kShardedIndex);
    CHECK(ckpt::open_checkpoint(set / "other.safetensors.index.json").ok());
  }
}

TEST_CASE("the writer refuses an empty set and what safetensors cannot hold") {
  TempDir dir;
  auto writer = ckpt::create_checkpoint(dir / "set", "safetensors-sharded");
  REQUIRE(writer.ok());
  auto complex = ckpt::VariableMeta::make(ckpt::DType::kComplex128, {1});
  std::vector<std::byte> bytes(16);
  CHECK((*writer)->add("c", *complex, ckpt::MemorySource(bytes)).error().code() == ErrorCode::kSafetensorsUnknownDtype);
  CHECK((*writer)->commit().error().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(fs::exists(dir / "set"));
}
