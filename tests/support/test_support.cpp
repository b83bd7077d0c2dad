#include "test_support.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

#include <doctest/doctest.h>

namespace ckpt::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "ckpt-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  // Tests make read-only files; make them removable first.
  for (auto it = fs::recursive_directory_iterator(path_, ignored); it != fs::recursive_directory_iterator();
       it.increment(ignored)) {
    if (!it->is_symlink(ignored)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ignored);
  }
  fs::remove_all(path_, ignored);
}

fs::path fixtures_root() {
  const char* env = std::getenv("CKPT_FIXTURES");
  if (env == nullptr) throw std::runtime_error("CKPT_FIXTURES is not set (run the tests through meson test)");
  return env;
}

void write_file(const fs::path& path, std::string_view content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_file(const fs::path& path, const std::vector<std::byte>& content) {
  write_file(path, std::string_view(reinterpret_cast<const char*>(content.data()), content.size()));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::byte> random_bytes(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> bytes(count);
  for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xff);
  return bytes;
}

std::vector<std::pair<std::string, std::string>> tree_contents(const fs::path& root) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) files.emplace_back(fs::relative(entry.path(), root).string(), read_file(entry.path()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

pickle::Value* tutorial_object(pickle::Document& doc, const pickle::Value* model, std::int64_t state_key,
                               const pickle::Value* momentum) {
  pickle::Value* slot = doc.dict();
  slot->entries.emplace_back(doc.string("momentum_buffer"), momentum);
  pickle::Value* state = doc.dict();
  state->entries.emplace_back(doc.integer(state_key), slot);
  pickle::Value* group = doc.dict();
  group->entries.emplace_back(doc.string("lr"), doc.real(0.1));
  pickle::Value* params = doc.list();
  params->items = {doc.integer(0), doc.integer(1)};
  group->entries.emplace_back(doc.string("params"), params);
  pickle::Value* groups = doc.list();
  groups->items = {group};
  pickle::Value* optimizer = doc.dict();
  optimizer->entries.emplace_back(doc.string("state"), state);
  optimizer->entries.emplace_back(doc.string("param_groups"), groups);
  pickle::Value* top = doc.dict();
  top->entries.emplace_back(doc.string("model"), model);
  top->entries.emplace_back(doc.string("optimizer"), optimizer);
  top->entries.emplace_back(doc.string("epoch"), doc.integer(3));
  return top;
}

std::vector<std::byte> read_all(const CheckpointReader& reader, std::string_view name) {
  auto source = reader.open(name);
  REQUIRE_MESSAGE(source.ok(), source.error().describe());
  std::vector<std::byte> bytes((*source)->size());
  auto status = (*source)->read_at(0, bytes);
  REQUIRE_MESSAGE(status.ok(), status.error().describe());
  return bytes;
}

std::vector<std::string> names_of(const CheckpointReader& reader) {
  std::vector<std::string> names;
  for (const auto& tensor : reader.tensors()) names.push_back(tensor.name);
  return names;
}

}  // namespace ckpt::testing
