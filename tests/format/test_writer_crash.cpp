// A save that fails at any system call leaves the destination absent or
// intact, never a checkpoint that validates with wrong data.
#include "ckpt/format/writer.hpp"

#include <doctest/doctest.h>

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validate.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

struct Save {
  std::vector<std::pair<std::string, std::vector<std::byte>>> variables;
};

Save make_save(std::uint64_t seed) {
  Save save;
  for (int i = 0; i < 3; ++i) {
    save.variables.emplace_back("v" + std::to_string(i), ckpt::testing::random_bytes(4096 * (i + 1), seed + i));
  }
  return save;
}

ckpt::Status write(const fs::path& destination, const Save& save, ckpt::WriteOptions options) {
  CKPT_ASSIGN_OR_RETURN(auto writer, ckpt::SnapshotWriter::create(destination, std::move(options)));
  for (const auto& [name, bytes] : save.variables) {
    CKPT_ASSIGN_OR_RETURN(auto meta, ckpt::VariableMeta::make(ckpt::DType::kUInt8, {static_cast<std::int64_t>(bytes.size())}));
    CKPT_TRY(writer.add(name, meta, bytes));
  }
  return writer.commit();
}

// The destination holds exactly `save`, byte for byte.
bool holds(const fs::path& destination, const Save& save) {
  if (!ckpt::validate_snapshot(destination).valid()) return false;
  auto snapshot = ckpt::Snapshot::open(destination);
  if (!snapshot.ok() || snapshot->variables().size() != save.variables.size()) return false;
  for (const auto& [name, bytes] : save.variables) {
    std::vector<std::byte> read(bytes.size());
    if (!snapshot->read(name, read).ok() || read != bytes) return false;
  }
  return true;
}

// Fails the n-th step (0-based) and counts the steps.
struct FailAt {
  int target;
  int seen = 0;
  bool operator()(ckpt::IoStep, const fs::path&) { return seen++ == target; }
};

}  // namespace

TEST_CASE("a failure at every step of a new save leaves no destination") {
  const Save save = make_save(1);
  int steps = 0;
  {
    ckpt::testing::TempDir dir;
    FailAt counter{-1};
    REQUIRE(write(dir / "snap", save, {.fault_hook = std::ref(counter)}).ok());
    steps = counter.seen;
  }
  REQUIRE(steps >= 20);  // staging mkdir, 3 x (mkdir, 2 x (create, write)), marker, syncfs, rename, parent fsync
  MESSAGE("new save: failing each of ", steps, " steps");
  for (int n = 0; n < steps; ++n) {
    CAPTURE(n);
    ckpt::testing::TempDir dir;
    FailAt fail{n};
    auto status = write(dir / "snap", save, {.fault_hook = std::ref(fail)});
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().code() == ckpt::ErrorCode::kInjectedFault);
    // The rename is the commit point; the directory fsync after it may fail
    // with the data already in place and complete.
    bool published = fs::exists(dir / "snap");
    if (published) CHECK(holds(dir / "snap", save));
    for (const auto& entry : fs::directory_iterator(dir.path())) {
      CHECK(entry.path().filename() == "snap");  // no staging leftover
    }
  }
}

TEST_CASE("a failure at every step of a replacing save keeps the old snapshot or installs the new one") {
  const Save old_save = make_save(10);
  const Save new_save = make_save(20);
  int steps = 0;
  {
    ckpt::testing::TempDir dir;
    REQUIRE(write(dir / "snap", old_save, {}).ok());
    FailAt counter{-1};
    REQUIRE(write(dir / "snap", new_save, {.overwrite = true, .fault_hook = std::ref(counter)}).ok());
    steps = counter.seen;
  }
  int kept_old = 0;
  for (int n = 0; n < steps; ++n) {
    CAPTURE(n);
    ckpt::testing::TempDir dir;
    REQUIRE(write(dir / "snap", old_save, {}).ok());
    FailAt fail{n};
    REQUIRE_FALSE(write(dir / "snap", new_save, {.overwrite = true, .fault_hook = std::ref(fail)}).ok());
    bool is_old = holds(dir / "snap", old_save);
    bool is_new = holds(dir / "snap", new_save);
    CHECK((is_old || is_new));
    kept_old += is_old;
  }
  CHECK(kept_old >= steps - 1);
  MESSAGE("replacing save: failing each of ", steps, " steps; old kept ", kept_old, ", new installed ", steps - kept_old);  // only a failure after the exchange shows the new one
}
