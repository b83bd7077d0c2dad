// The README's "Using the library" snippet, included as it stands in the
// README, runs: it saves, reopens and reads back; run again where its output
// exists, it returns E103 instead of aborting.
#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/writer.hpp"

#include <filesystem>
#include <span>
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace {

// The snippet's body, with what it reads back.
ckpt::Status readme_snippet(const std::vector<float>& weights, std::vector<float>& loaded_out) {
#include "readme_snippet.inc"
  loaded_out = std::move(loaded);
  return {};
}

// Runs in `directory`, where the snippet's relative path lands.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const std::filesystem::path& directory) : previous_(std::filesystem::current_path()) {
    std::filesystem::current_path(directory);
  }
  ~WorkingDirectory() { std::filesystem::current_path(previous_); }

 private:
  std::filesystem::path previous_;
};

}  // namespace

TEST_CASE("the README snippet saves and reads back, and reports an existing destination") {
  ckpt::testing::TempDir dir;
  WorkingDirectory here(dir.path());
  std::vector<float> weights(128 * 784);
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i) * 0.5f;

  std::vector<float> loaded;
  auto first = readme_snippet(weights, loaded);
  REQUIRE_MESSAGE(first.ok(), first.error().describe());
  CHECK(loaded == weights);
  CHECK(ckpt::validate_snapshot(dir.path() / "mnist_model").valid());

  auto again = readme_snippet(weights, loaded);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code() == ckpt::ErrorCode::kDestinationExists);
}
