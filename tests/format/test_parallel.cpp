#include "ckpt/format/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "ckpt/format/checkpoint.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using ckpt::ErrorCode;
using ckpt::testing::TempDir;

TEST_CASE("run_tasks runs every task once, on several threads, within the byte budget") {
  constexpr std::size_t kTasks = 200;
  for (unsigned jobs : {1u, 2u, 4u, 8u}) {
    CAPTURE(jobs);
    std::vector<std::atomic<int>> runs(kTasks);
    std::atomic<std::uint64_t> running_bytes{0}, peak_bytes{0};
    std::atomic<unsigned> running{0}, peak_running{0};
    auto bytes = [](std::size_t index) -> std::uint64_t { return 11 + index % 7; };
    auto status = ckpt::run_tasks(kTasks, {.jobs = jobs, .byte_budget = 40}, bytes, [&](std::size_t index) -> ckpt::Status {
      const std::uint64_t now = running_bytes += bytes(index);
      const unsigned threads = ++running;
      std::uint64_t seen = peak_bytes;
      while (now > seen && !peak_bytes.compare_exchange_weak(seen, now)) {}
      unsigned seen_threads = peak_running;
      while (threads > seen_threads && !peak_running.compare_exchange_weak(seen_threads, threads)) {}
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      ++runs[index];
      --running;
      running_bytes -= bytes(index);
      return {};
    });
    REQUIRE(status.ok());
    CHECK(std::all_of(runs.begin(), runs.end(), [](const auto& count) { return count == 1; }));
    CHECK(peak_bytes <= 40);
    CHECK(peak_running <= std::min(jobs, 3u));  // at least 11 bytes each: at most 3 fit in 40
    if (jobs == 1) CHECK(peak_running == 1);
  }
}

TEST_CASE("run_tasks admits a task larger than the budget when it runs alone") {
  std::atomic<int> ran{0};
  auto status = ckpt::run_tasks(
      5, {.jobs = 3, .byte_budget = 10}, [](std::size_t) -> std::uint64_t { return 100; },
      [&](std::size_t) -> ckpt::Status {
        ++ran;  // (doctest's CHECK is not for other threads)
        return {};
      });
  CHECK(status.ok());
  CHECK(ran == 5);
}

TEST_CASE("run_tasks: after a failure no task starts, and the lowest failing index is reported") {
  for (unsigned jobs : {1u, 2u, 4u}) {
    CAPTURE(jobs);
    std::mutex mutex;
    std::vector<std::size_t> started;
    auto status = ckpt::run_tasks(
        100, {.jobs = jobs, .byte_budget = 1000}, [](std::size_t) -> std::uint64_t { return 1; },
        [&](std::size_t index) -> ckpt::Status {
          {
            std::lock_guard lock(mutex);
            started.push_back(index);
          }
          if (index == 30 || index == 31) return ckpt::Error(ErrorCode::kIo, fmt::format("task {}", index));
          return {};
        });
    REQUIRE_FALSE(status.ok());
    CHECK(status.error().message() == "task 30");
    // Tasks start in index order: all before 30 ran; only the few already running past it.
    std::sort(started.begin(), started.end());
    for (std::size_t i = 0; i <= 30; ++i) CHECK(started[i] == i);
    CHECK(started.size() <= 31 + jobs);
  }
}

namespace {

struct Tensor {
  std::string name;
  ckpt::VariableMeta meta;
  std::vector<std::byte> bytes;
};

std::vector<Tensor> mixed_tensors() {
  std::vector<Tensor> tensors;
  const std::vector<std::pair<ckpt::DType, ckpt::Shape>> kinds = {
      {ckpt::DType::kFloat, {64, 33}},  {ckpt::DType::kDouble, {17}},      {ckpt::DType::kFloat16, {5, 3}},
      {ckpt::DType::kInt64, {3, 2, 2}}, {ckpt::DType::kBFloat16, {1000}}, {ckpt::DType::kUInt8, {7}},
      {ckpt::DType::kFloat, {0}},       {ckpt::DType::kFloat, {300, 300}}};
  for (std::size_t i = 0; i < 40; ++i) {
    const auto& [dtype, shape] = kinds[i % kinds.size()];
    auto meta = ckpt::VariableMeta::make(dtype, shape);
    REQUIRE(meta.ok());
    tensors.push_back({fmt::format("layer{:02}.w", (i * 7) % 40), *meta, ckpt::testing::random_bytes(meta->byte_size(), i)});
  }
  std::sort(tensors.begin(), tensors.end(), [](const Tensor& a, const Tensor& b) { return a.name < b.name; });
  return tensors;
}

// Writes `tensors` as `format`: staged one add at a time (no plan), or
// planned and added from `jobs` threads in a shuffled order.
void write(const fs::path& path, std::string_view format, const std::vector<Tensor>& tensors, unsigned jobs,
           bool planned) {
  ckpt::WriteOptions options;
  options.max_shard_bytes = 300'000;
  auto writer = ckpt::create_checkpoint(path, format, options);
  REQUIRE(writer.ok());
  if (planned) {
    std::vector<ckpt::TensorInfo> plan;
    for (const auto& tensor : tensors) plan.push_back({tensor.name, tensor.meta});
    REQUIRE((*writer)->plan(plan).ok());
    REQUIRE((*writer)->concurrent_adds());
  } else {
    CHECK_FALSE((*writer)->concurrent_adds());
  }
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = (i * 17) % order.size();  // 17 is prime to 40
  auto status = ckpt::run_tasks(
      order.size(), {.jobs = planned ? jobs : 1, .byte_budget = 1000}, [](std::size_t) -> std::uint64_t { return 0; },
      [&](std::size_t k) -> ckpt::Status {
        const Tensor& tensor = tensors[planned ? order[k] : k];
        return (*writer)->add(tensor.name, tensor.meta, ckpt::MemorySource(tensor.bytes));
      });
  REQUIRE(status.ok());
  REQUIRE((*writer)->commit().ok());
}

}  // namespace

TEST_CASE("planned safetensors writers write the same bytes as staged ones, from any number of threads") {
  const auto tensors = mixed_tensors();
  for (std::string_view format : {"safetensors", "safetensors-sharded"}) {
    CAPTURE(format);
    TempDir dir;
    write(dir / "staged", format, tensors, 1, false);
    const auto expected = format == "safetensors" ? std::vector{std::pair{std::string(), ckpt::testing::read_file(dir / "staged")}}
                                                  : ckpt::testing::tree_contents(dir / "staged");
    if (format == "safetensors-sharded") CHECK(expected.size() > 3);  // several shards and the index
    for (unsigned jobs : {1u, 2u, 4u}) {
      CAPTURE(jobs);
      const fs::path path = dir / fmt::format("planned{}", jobs);
      write(path, format, tensors, jobs, true);
      const auto actual = format == "safetensors" ? std::vector{std::pair{std::string(), ckpt::testing::read_file(path)}}
                                                  : ckpt::testing::tree_contents(path);
      CHECK(actual == expected);
      auto reader = ckpt::open_checkpoint(path);
      REQUIRE(reader.ok());
      for (const auto& tensor : tensors) CHECK(ckpt::testing::read_all(**reader, tensor.name) == tensor.bytes);
    }
  }
}

TEST_CASE("a planned writer refuses what the plan did not announce and publishes nothing incomplete") {
  const auto tensors = mixed_tensors();
  std::vector<ckpt::TensorInfo> plan;
  for (const auto& tensor : tensors) plan.push_back({tensor.name, tensor.meta});
  for (std::string_view format : {"safetensors", "safetensors-sharded"}) {
    CAPTURE(format);
    TempDir dir;
    const fs::path path = dir / "out";
    auto writer = ckpt::create_checkpoint(path, format);
    REQUIRE(writer.ok());
    REQUIRE((*writer)->plan(plan).ok());
    CHECK((*writer)->plan(plan).error().code() == ErrorCode::kInvalidArgument);  // only once
    const Tensor& first = tensors.front();
    auto unknown = (*writer)->add("not.planned", first.meta, ckpt::MemorySource(first.bytes));
    CHECK(unknown.error().code() == ErrorCode::kInvalidArgument);
    auto other_meta = ckpt::VariableMeta::make(ckpt::DType::kInt8, {static_cast<std::int64_t>(first.bytes.size())});
    auto reshaped = (*writer)->add(first.name, *other_meta, ckpt::MemorySource(first.bytes));
    CHECK(reshaped.error().code() == ErrorCode::kInvalidArgument);
    REQUIRE((*writer)->add(first.name, first.meta, ckpt::MemorySource(first.bytes)).ok());
    CHECK((*writer)->add(first.name, first.meta, ckpt::MemorySource(first.bytes)).error().code() ==
          ErrorCode::kDuplicateName);
    auto commit = (*writer)->commit();
    REQUIRE_FALSE(commit.ok());
    CHECK(commit.error().variable() == tensors[1].name);  // the first never added
    writer->reset();
    CHECK_FALSE(fs::exists(path));
    CHECK(fs::is_empty(dir.path()));  // no staging left either
  }
  TempDir dir;
  auto writer = ckpt::create_checkpoint(dir / "out.safetensors", "safetensors");
  REQUIRE(writer.ok());
  std::vector<ckpt::TensorInfo> twice = {plan[0], plan[0]};
  CHECK((*writer)->plan(twice).error().code() == ErrorCode::kDuplicateName);
}
