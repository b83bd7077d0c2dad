// Helpers shared by the test executables: temporary directories, fixture
// paths, small file utilities.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/checkpoint.hpp"

#include "ckpt/format/pickle.hpp"

namespace ckpt::testing {

// A fresh directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view child) const { return path_ / child; }

 private:
  std::filesystem::path path_;
};

// tests/data, from $CKPT_FIXTURES.
std::filesystem::path fixtures_root();

void write_file(const std::filesystem::path& path, std::string_view content);
void write_file(const std::filesystem::path& path, const std::vector<std::byte>& content);
std::string read_file(const std::filesystem::path& path);

// Deterministic bytes for round trips.
std::vector<std::byte> random_bytes(std::size_t count, std::uint64_t seed);

// Every regular file under `root` (relative path -> content), for comparing trees.
std::vector<std::pair<std::string, std::string>> tree_contents(const std::filesystem::path& root);

// The tutorial's {"model": model, "optimizer": {"state": {state_key:
// {"momentum_buffer": momentum}}, "param_groups": [{"lr": 0.1, "params":
// [0, 1]}]}, "epoch": 3}, for round trips of a nested object.
pickle::Value* tutorial_object(pickle::Document& doc, const pickle::Value* model, std::int64_t state_key,
                               const pickle::Value* momentum);

// Every byte of tensor `name` (REQUIREs that it opens and reads).
std::vector<std::byte> read_all(const CheckpointReader& reader, std::string_view name);
// The reader's tensor names, in its order.
std::vector<std::string> names_of(const CheckpointReader& reader);

}  // namespace ckpt::testing
