#include "ckpt/format/parallel.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include <sched.h>

namespace ckpt {

unsigned available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {

class TaskQueue {
 public:
  TaskQueue(std::size_t count, std::uint64_t budget, const std::function<std::uint64_t(std::size_t)>& task_bytes,
            const std::function<Status(std::size_t)>& task)
      : count_(count), budget_(budget), task_bytes_(task_bytes), task_(task) {}

  // Takes tasks until none is left or one failed.
  void work() {
    std::unique_lock lock(mutex_);
    while (true) {
      changed_.wait(lock, [&] { return stopping() || running_bytes_ == 0 || running_bytes_ + task_bytes_(next_) <= budget_; });
      if (stopping()) return;
      const std::size_t index = next_++;
      const std::uint64_t bytes = task_bytes_(index);
      running_bytes_ += bytes;
      lock.unlock();
      Status status = task_(index);
      lock.lock();
      running_bytes_ -= bytes;
      if (!status.ok() && (!failure_ || index < failed_index_)) {
        failure_ = std::move(status).error();
        failed_index_ = index;
      }
      changed_.notify_all();
    }
  }

  Status result() {
    if (failure_) return std::move(*failure_);
    return {};
  }

 private:
  bool stopping() const { return failure_.has_value() || next_ == count_; }

  const std::size_t count_;
  const std::uint64_t budget_;
  const std::function<std::uint64_t(std::size_t)>& task_bytes_;
  const std::function<Status(std::size_t)>& task_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t next_ = 0;
  std::uint64_t running_bytes_ = 0;
  std::optional<Error> failure_;
  std::size_t failed_index_ = 0;
};

}  // namespace

Status run_tasks(std::size_t count, const ParallelOptions& options,
                 const std::function<std::uint64_t(std::size_t)>& task_bytes,
                 const std::function<Status(std::size_t)>& task) {
  TaskQueue queue(count, options.byte_budget, task_bytes, task);
  const std::size_t threads = std::min<std::size_t>(std::max(1u, options.jobs), count);
  std::vector<std::jthread> helpers;
  for (std::size_t i = 1; i < threads; ++i) {
    try {
      helpers.emplace_back([&queue] { queue.work(); });
    } catch (const std::system_error&) {
      break;  // fewer threads than asked: the ones running finish the work
    }
  }
  queue.work();
  helpers.clear();  // joins
  return queue.result();
}

}  // namespace ckpt
